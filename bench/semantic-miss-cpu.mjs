// A fixed workload of the semantic cache's miss path, shaped like bench:http's requests: unique prompts
// ("Request T-i: tell me about <12 hex> and <i·7919>", one model, one max_tokens), each looked up (a miss)
// then stored, CONC at a time, through SemanticCache's real get/set against Redis. The scope is filled with
// PREFILL such entries first, then WARM requests warm the code, then N requests are measured. With
// CALLGRIND=1 (under valgrind --tool=callgrind --instr-atstart=no) only the measured requests are counted
// (callgrind_control -i on/off around them; TRUST_MS=3600000 below keeps the kept records as they are natively).
// Prints one JSON line: process CPU per request, hits, misses.
// usage: node bench/semantic-miss-cpu.mjs DIST REDIS_URL PREFIX PREFILL WARM N CONC
import { execFile } from 'node:child_process';
import { clearInterval, setInterval } from 'node:timers';
import { httpPrompt, seededHex } from './http-prompts.mjs';

const [dist, url, prefix] = process.argv.slice(2, 5);
const [prefill, warm, n, conc] = process.argv.slice(5, 9).map(Number);
const { SemanticCache } = await import(`${dist}/shared/cache/semantic/semantic-cache.js`);
const { RedisClient } = await import(`${dist}/shared/redis/redis-client.js`);
const { waitUntilReady } = await import(`${dist}/shared/redis/connection.js`);
const client = new RedisClient({ url, commandTimeoutMs: 30_000, breakerThreshold: 1000 });
await waitUntilReady(client.connection, 10_000);
// the API's cache (lookups) and the worker's (stores), as in `cell0 start`: two caches, one embedder and one
// local state (band mirrors, kept records: shared/cache/from-config.ts), so a store's own band stream entry
// is applied from its reply to the mirror the lookups rank from. SHARED=0: a local state each (as before).
const { SemanticLocalState } = await import(`${dist}/shared/cache/semantic/local-state.js`);
const localState = process.env.SHARED === '0' ? undefined : new SemanticLocalState();
// TRUST_MS=N: the candidate records kept for N ms instead of RECORD_TRUST_MS (20 s). Under valgrind a request
// takes ~30 ms, so 20 s is a few hundred requests and most kept records are read and worked out again in
// the measured window, which natively (20 s: ~100,000 requests of this bench) they are not. Safe here: this
// bench never drops an entry, so no slot changes hands.
if (localState && process.env.TRUST_MS) {
  const { LookupRecords } = await import(`${dist}/shared/cache/semantic/lookup-records.js`);
  localState.records = new LookupRecords(Number(process.env.TRUST_MS));
}
const lookups = new SemanticCache({ redis: client, prefix, ttlSeconds: 3600, localState });
const stores = new SemanticCache({
  redis: client,
  prefix,
  ttlSeconds: 3600,
  embedder: lookups.embedder,
  localState,
});
const scope = { model: 'sim-model', params: { max_tokens: 32 } };
const hex = seededHex();
const prompt = (tag, i) => httpPrompt(hex, tag, i);
let hits = 0;
async function run(tag, count) {
  let next = 0;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < count) {
        const i = next++;
        const p = prompt(tag, i);
        if (await lookups.get(p, scope)) hits++;
        else
          await stores.set(
            p,
            { jobId: `job-${tag}-${i}`, result: { text: `answer ${i}`, model: 'sim-model' } },
            scope,
          );
      }
    }),
  );
}
await run('fill', prefill);
await run('warm', warm);
hits = 0;
const mirrorBefore = { ...lookups.mirror?.stats };
// the band stream event lines the lookups' replies carry (read back from Redis), whatever the build: counted
// around the mirror's apply (SemanticCache's private field), measured requests only
let linesRead = 0;
const mirror = lookups.mirror;
if (mirror && typeof mirror.apply === 'function') {
  const apply = mirror.apply.bind(mirror);
  mirror.apply = (keys, text) => {
    for (let at = 0; at < text.length; at = text.indexOf('\n', at) + 1 || text.length) {
      const c = text.charCodeAt(at);
      if (c === 0x2b || c === 0x2d) linesRead++;
    }
    return apply(keys, text);
  };
}
// callgrind_control is answered only while this process runs code: not from inside a blocking call, so the
// child is waited for with the event loop ticking.
const toggle = async (on) => {
  if (process.env.CALLGRIND !== '1') return;
  const tick = setInterval(() => {}, 1);
  await new Promise((resolve) =>
    execFile('callgrind_control', ['-i', on ? 'on' : 'off', String(process.pid)], () => resolve()),
  );
  clearInterval(tick);
};
// a full collection first (node --expose-gc), so that the measured requests do not pay for the fill's
globalThis.gc?.();
// bytes to and from Redis (INFO stats; the whole server's: meaningful when this process is its only client)
const netBytes = async () => {
  const info = await client.connection.info('stats');
  const of = (name) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
  return { to: of('total_net_input_bytes'), from: of('total_net_output_bytes') };
};
const net0 = await netBytes();
await toggle(true);
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await run('measure', n);
const cpu = process.cpuUsage(cpu0);
const wall = performance.now() - t0;
await toggle(false);
const net1 = await netBytes();
const stats = lookups.getStats();
// the lookups' mirror's counts per measured request (builds without them print none): event lines read back
// by the lookups and applied of them, own store entries applied from their replies at once and later
const mirrorStats = lookups.mirror?.stats
  ? Object.fromEntries(
      Object.entries(lookups.mirror.stats).map(([k, v]) => [k, (v - (mirrorBefore[k] ?? 0)) / n]),
    )
  : undefined;
console.log(
  JSON.stringify({
    requests: n,
    hits,
    cpuUs: (cpu.user + cpu.system) / n,
    wallUs: (wall * 1000) / n,
    search: stats.search ?? stats,
    linesReadBack: linesRead / n,
    bytesToRedis: (net1.to - net0.to) / n,
    bytesFromRedis: (net1.from - net0.from) / n,
    ...(mirrorStats ? { mirror: mirrorStats } : {}),
  }),
);
await client.close();
process.exit(0);
