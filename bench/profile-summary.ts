/*
 * Where a cell0 process spends its CPU: reads a V8 CPU profile (`bench:http -- --cpu-prof DIR`, or any
 * `node --cpu-prof` output) and prints the share of the busy samples (idle and module loading left out) by
 * component, and how much of each share is socket write system calls.
 *
 *   node --import tsx bench/profile-summary.ts [--top N] FILE.cpuprofile [...]
 *
 * --top N also prints, under each component, its N functions with the most self time (the sampled frame
 * itself: function, file and line), which is what "other" and the spread components are made of.
 *
 * A sample goes to the first component of the list below that has a frame anywhere on its stack, so a
 * library called by cell0's code counts as that library (ioredis under the semantic cache counts as the
 * semantic cache, since that comes first), and middleware that merely calls next() does not swallow the
 * routes behind it (the HTTP server comes late). Shares are of samples, not wall time. Request logging is
 * the exception: its middleware (pino-http) is on the stack of every route it calls next() into, so a sample
 * counts as request logging only when a request-logging frame comes before any router or route frame on
 * the way from the sampled frame down (its own work, and the pino calls it makes).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber?: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
}

const IDLE = /^\(idle\)/;
const STARTUP = /modules\/cjs\/loader|modules\/esm\/(translators|module_job)/;
const WRITE_SYSCALL = /^(writeUtf8String|writev|writeBuffer|writeString|writeLatin1String) /;

const REQUEST_LOGGING = /node_modules\/pino-http\/|producers\/api\/request-logger\.js/;
const ROUTING = /node_modules\/(express|router)\/|producers\/api\/(routes|create-api)/;

/** Whether the request-logging middleware itself is running (not a route it passed the request on to). */
function inRequestLogging(stack: string[]): boolean {
  for (const f of stack) {
    if (REQUEST_LOGGING.test(f)) return true;
    if (ROUTING.test(f)) return false;
  }
  return false;
}

const COMPONENTS: [string, RegExp][] = [
  ['garbage collector', /^\(garbage collector\)/],
  ['log (pino, sonic-boom)', /shared\/logger\.js|node_modules\/(pino|sonic-boom|@pinojs)\//],
  ['semantic cache', /shared\/cache\/semantic\/|producers\/cache-answers|cache\/inference-key/],
  ['validation (zod, schemas)', /node_modules\/zod\/|queues\/schemas\.js/],
  ['job ids', /queues\/job-id\.js/],
  ['BullMQ', /node_modules\/bullmq\//],
  ['backend call (undici, Ollama client)', /providers\/ollama\/|node_modules\/undici\/|shared\/http\/pool/],
  ['breaker (opossum)', /node_modules\/opossum\/|shared\/circuit-breaker|redis\/redis-client\.js/],
  ['ioredis, Redis socket writes', /node_modules\/(ioredis|redis-parser)\/|shared\/redis\/connection\.js/],
  ['cell0 queue code (submit, wait, worker)', /producers\/(job-|submit-|reply-)|workers\//],
  [
    'HTTP server (node:http, express, routes)',
    /node_modules\/(express|router|body-parser|raw-body)\/|node:_http_|producers\/api\//,
  ],
  ['metrics', /shared\/metrics\//],
];

function frame(n: ProfileNode): string {
  const f = n.callFrame;
  return `${f.functionName || '(anonymous)'} ${f.url}`;
}

/** A sampled frame's name for the --top lists: function, the file's path from its package or folder, line. */
function selfName(n: ProfileNode | undefined): string {
  if (!n) return '(unknown)';
  const f = n.callFrame;
  const url = f.url.replace(/^file:\/\//, '');
  const i = url.lastIndexOf('node_modules/');
  const short = i >= 0 ? url.slice(i + 'node_modules/'.length) : url.replace(/^.*\/(dist|src)\//, '');
  return `${f.functionName || '(anonymous)'} ${short}${short && f.lineNumber !== undefined ? `:${f.lineNumber + 1}` : ''}`;
}

function summarize(file: string, top: number): void {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const hits = new Map<number, number>();
  for (const s of p.samples) hits.set(s, (hits.get(s) ?? 0) + 1);

  let busy = 0;
  let idle = 0;
  const share = new Map<string, { all: number; writes: number; self: Map<string, number> }>();
  for (const [id, count] of hits) {
    const stack: string[] = [];
    for (let n = byId.get(id); n; n = byId.get(parent.get(n.id) ?? -1)) stack.push(frame(n));
    if (IDLE.test(stack[0] ?? '')) {
      idle += count;
      continue;
    }
    if (stack.some((f) => STARTUP.test(f))) continue;
    busy += count;
    const name = inRequestLogging(stack)
      ? 'request logging (pino-http)'
      : (COMPONENTS.find(([, re]) => stack.some((f) => re.test(f)))?.[0] ?? 'other');
    const s = share.get(name) ?? { all: 0, writes: 0, self: new Map<string, number>() };
    s.all += count;
    const self = selfName(byId.get(id));
    s.self.set(self, (s.self.get(self) ?? 0) + count);
    if (WRITE_SYSCALL.test(stack[0] ?? '')) s.writes += count;
    share.set(name, s);
  }
  const pct = (x: number) => `${((100 * x) / busy).toFixed(1)}%`.padStart(6);
  console.log(
    `${file}\n  busy samples ${busy} (idle ${idle}: ${((100 * idle) / (busy + idle)).toFixed(0)}% of the rest)`,
  );
  for (const [name, s] of [...share].sort((a, b) => b[1].all - a[1].all)) {
    console.log(`  ${pct(s.all)}  ${name}${s.writes > 0 ? ` (socket writes ${pct(s.writes).trim()})` : ''}`);
    for (const [fn, c] of [...s.self].sort((a, b) => b[1] - a[1]).slice(0, top))
      console.log(`          ${pct(c)}  ${fn}`);
  }
}

const args = process.argv.slice(2);
let top = 0;
const t = args.indexOf('--top');
if (t >= 0) {
  top = Number(args[t + 1]);
  args.splice(t, 2);
}
if (args.length === 0 || !(Number.isInteger(top) && top >= 0)) {
  console.error('usage: node --import tsx bench/profile-summary.ts [--top N] FILE.cpuprofile [...]');
  process.exit(2);
}
for (const f of args) summarize(f, top);
