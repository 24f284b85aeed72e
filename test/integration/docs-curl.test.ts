import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { spawnCell0, type Cell0Process } from '../helpers/cli';
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis-server';

/*
 * The curl examples of README.md and docs/*.md, run against a started fleet, so the documentation cannot
 * silently go wrong. Every `curl` line of a ```sh block runs as written (through sh), with only its
 * host:port rewritten: localhost:3000 to the test's API, localhost:11435 to its simulator. It must answer
 * 200, or the status a `# → 202` comment line right after it names. When a ```json block follows the
 * ```sh block directly, the answer of the block's last curl must have its shape: every documented key, with
 * a value of the same JSON type, and the same value for the keys that do not vary between runs (EXACT).
 * A curl that sends `Authorization: Bearer <key>` goes to a second API started with those keys.
 */

const ROOT = join(__dirname, '..', '..');
const run = promisify(execFile);

/** Keys whose documented value must be the actual one: ids are hashes of the request, the rest is stable. */
const EXACT = new Set(['jobId', 'queue', 'status', 'cached', 'code', 'provider', 'model', 'type', 'query']);

interface DocCurl {
  file: string;
  line: number;
  command: string;
  status: number;
  /** The documented answer (the ```json block after the curl), when there is one. */
  expected?: unknown;
  bearer?: string;
}

const DOC_FILES = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

function extractCurls(file: string): DocCurl[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const fences = [...text.matchAll(/^```([^\n]*)\n([\s\S]*?)^```[ \t]*$/gm)].map((m) => ({
    lang: m[1]!.trim(),
    body: m[2]!,
    start: m.index,
    end: m.index + m[0].length,
    line: text.slice(0, m.index).split('\n').length + 1,
  }));
  const out: DocCurl[] = [];
  fences.forEach((fence, i) => {
    if (!['sh', 'bash', 'shell'].includes(fence.lang)) return;
    // Logical lines: a trailing backslash continues the command on the next line.
    const logical: { text: string; line: number }[] = [];
    let pending: { text: string; line: number } | undefined;
    fence.body.split('\n').forEach((raw, j) => {
      const line = fence.line + j;
      if (pending) pending.text += ' ' + raw.trim();
      else pending = { text: raw.trim(), line };
      if (pending.text.endsWith('\\')) pending.text = pending.text.slice(0, -1).trimEnd();
      else {
        logical.push(pending);
        pending = undefined;
      }
    });
    const curls: DocCurl[] = [];
    logical.forEach((l, k) => {
      if (!/^curl\s/.test(l.text)) return;
      const status = /^#\s*(?:→|->)\s*(\d{3})\b/.exec(logical[k + 1]?.text ?? '');
      const bearer = /authorization:\s*bearer\s+([^'"\s]+)/i.exec(l.text);
      curls.push({
        file,
        line: l.line,
        command: l.text,
        status: status ? Number(status[1]) : 200,
        ...(bearer ? { bearer: bearer[1]! } : {}),
      });
    });
    const next = fences[i + 1];
    if (curls.length > 0 && next?.lang === 'json' && text.slice(fence.end, next.start).trim() === '') {
      try {
        curls[curls.length - 1]!.expected = JSON.parse(next.body);
      } catch (err) {
        throw new Error(`${file}:${next.line}: the json block after a curl is not valid JSON`, {
          cause: err,
        });
      }
    }
    out.push(...curls);
  });
  return out;
}

const CURLS = DOC_FILES.flatMap(extractCurls);

/** Where the documented answer and the actual one disagree, one line per difference. */
function shapeProblems(actual: unknown, documented: unknown, path = '$', key = ''): string[] {
  const kind = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
  if (kind(actual) !== kind(documented))
    return [`${path}: documented ${kind(documented)}, got ${kind(actual)} ${JSON.stringify(actual)}`];
  if (Array.isArray(documented)) {
    const a = actual as unknown[];
    if (a.length < documented.length)
      return [`${path}: documented ${documented.length} elements, got ${a.length}`];
    return documented.flatMap((d, i) => shapeProblems(a[i], d, `${path}[${i}]`));
  }
  if (kind(documented) === 'object') {
    const a = actual as Record<string, unknown>;
    return Object.entries(documented as Record<string, unknown>).flatMap(([k, d]) =>
      k in a ? shapeProblems(a[k], d, `${path}.${k}`, k) : [`${path}.${k}: documented, missing`],
    );
  }
  if (EXACT.has(key) && actual !== documented)
    return [`${path}: documented ${JSON.stringify(documented)}, got ${JSON.stringify(actual)}`];
  return [];
}

/** Runs a documented curl through sh against `api` / `sim` (host:port); returns its status and body. */
async function runCurl(c: DocCurl, api: string, sim: string): Promise<{ status: number; body: string }> {
  const command = c.command
    .replace(/(?:https?:\/\/)?(?:localhost|127\.0\.0\.1):3000\b/g, `http://${api}`)
    .replace(/(?:https?:\/\/)?(?:localhost|127\.0\.0\.1):11435\b/g, `http://${sim}`);
  if (command === c.command)
    throw new Error(`${c.file}:${c.line}: the curl calls neither localhost:3000 nor localhost:11435`);
  // The status goes after the body on a line of its own (-w); options may follow the URL in curl.
  const { stdout } = await run('/bin/sh', ['-c', command.replace(/^curl\b/, "curl -w '\\n%{http_code}'")], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '' },
    timeout: 90_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const cut = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
}

describe('the curl examples of README.md and docs/', () => {
  it('README.md shows inference and search with their answers', () => {
    const readme = CURLS.filter((c) => c.file === 'README.md');
    expect(readme.filter((c) => /\/v1\/inference/.test(c.command) && c.expected).length).toBeGreaterThan(0);
    expect(readme.filter((c) => /\/v1\/search/.test(c.command) && c.expected).length).toBeGreaterThan(0);
  });

  describe('against a started fleet', () => {
    let redis: PrivateRedis | undefined;
    let dataDir: string | undefined;
    const procs: Cell0Process[] = [];
    let api = '';
    let keyedApi = '';
    let sim = '';

    beforeAll(async () => {
      try {
        await run('curl', ['--version']);
      } catch {
        throw new Error('curl is not on the PATH: the documentation examples are curl commands');
      }
      redis = await startPrivateRedis();
      dataDir = mkdtempSync(join(tmpdir(), 'cell0-docs-'));
      const fleet = spawnCell0(['start'], {
        REDIS_URL: redis.url,
        CELL0_PORT: '0',
        CELL0_SIM_PORT: '0',
        CELL0_DATA_DIR: dataDir,
        CELL0_LOG_LEVEL: 'warn',
        // A busy test machine must not pause the worker (the examples would answer 202 or 503).
        CELL0_MAX_CPU_PERCENT: '100',
        CELL0_MAX_MEMORY_PERCENT: '100',
        CELL0_MAX_DISK_PERCENT: '0',
      });
      procs.push(fleet);
      const keys = [...new Set(CURLS.flatMap((c) => (c.bearer ? [c.bearer] : [])))];
      const keyed =
        keys.length > 0
          ? spawnCell0(['api'], {
              REDIS_URL: redis.url,
              CELL0_PORT: '0',
              CELL0_API_KEYS: keys.join(','),
              CELL0_LOG_LEVEL: 'warn',
            })
          : undefined;
      if (keyed) procs.push(keyed);
      const hostPort = (m: RegExpMatchArray) => new URL(m[1]!).host;
      api = hostPort(await fleet.waitFor(/api\s+(http:\/\/\S+)/, 150_000));
      sim = hostPort(await fleet.waitFor(/simulator\s+(http:\/\/\S+)/));
      if (keyed) keyedApi = hostPort(await keyed.waitFor(/api\s+(http:\/\/\S+)/, 150_000));
    }, 180_000);

    afterAll(async () => {
      for (const p of procs) p.kill('SIGTERM');
      await Promise.all(
        procs.map((p) => {
          const force = setTimeout(() => p.kill('SIGKILL'), 45_000);
          return p.exited.finally(() => clearTimeout(force));
        }),
      );
      await redis?.destroy();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }, 60_000);

    it.each(CURLS.map((c) => [`${c.file}:${c.line} ${c.command.slice(0, 90)}`, c] as const))(
      '%s',
      async (_name, c) => {
        const { status, body } = await runCurl(c, c.bearer ? keyedApi : api, sim);
        const where = `${c.file}:${c.line}`;
        expect({ where, status, body: status === c.status ? '' : body }).toEqual({
          where,
          status: c.status,
          body: '',
        });
        if (c.expected !== undefined) {
          let actual: unknown;
          try {
            actual = JSON.parse(body);
          } catch {
            throw new Error(`${where}: the answer is not JSON: ${body.slice(0, 200)}`);
          }
          expect({ where, problems: shapeProblems(actual, c.expected) }).toEqual({ where, problems: [] });
        }
      },
      90_000,
    );
  });
});
