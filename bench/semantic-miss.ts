/*
 * bench:semantic-miss — what the semantic cache's miss path costs Redis, per unique request, as counts: R rounds
 * of B lookups started in one turn (one lookup script call; every prompt new: a miss) then the B stores of
 * their answers (~380 bytes of JSON, as bench:http's) in one turn (one store script call), in one scope, after
 * 100 rounds of warm-up. The prompts come from a fixed sequence, so two builds run the same commands.
 * Prints per request: Redis commands (INFO commandstats, scripts' own commands included), script calls and
 * their Redis time, bytes to and from Redis (INFO stats) and the process's CPU.
 *
 * Against a Redis at --port that the caller starts (and may FLUSHALL: use a private one), e.g. under callgrind
 * for repeatable instruction counts of Redis:
 *   valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=OUT redis-server --port P --save '' &
 *   node --import tsx bench/semantic-miss.ts --port P --callgrind-pid $!   # instrumentation on for the rounds
 *   redis-cli -p P shutdown nosave; grep ^totals OUT                        # instructions / (B × R)
 *
 *   node --import tsx bench/semantic-miss.ts --port P [--batch B] [--rounds R] [--max-entries M] [--dist DIR] [--callgrind-pid PID]
 * --dist DIR: the SemanticCache of another build's compiled output (its dist/ directory; default this build's).
 * --max-entries M: the scope's bound (maxEntriesPerScope, default the cache's 10,000); below the warm-up's
 * 100 × B stores, every measured store call of a full scope also evicts as many entries as it stores.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type * as Sem from '../shared/cache/semantic/index.js';
import type * as Connection from '../shared/redis/connection.js';
import type * as Client from '../shared/redis/redis-client.js';
import { benchArgs } from './args.js';

interface Modules {
  sem: typeof Sem;
  client: typeof Client;
  connection: typeof Connection;
}

function load(dist: string): Modules {
  /* eslint-disable @typescript-eslint/no-require-imports */
  return {
    sem: require(join(dist, 'shared/cache/semantic/index.js')) as Modules['sem'],
    client: require(join(dist, 'shared/redis/redis-client.js')) as Modules['client'],
    connection: require(join(dist, 'shared/redis/connection.js')) as Modules['connection'],
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
}

const VALUE = {
  jobId: 'i-cce6cb0fe3a1eb0debc4d4d84d08f261',
  result: {
    model: 'qwen2.5:0.5b',
    text: '[simulated qwen2.5:0.5b] Worker request slowly moves a still shows.',
    doneReason: 'length',
    usage: { promptTokens: 10, completionTokens: 8, totalTokens: 18 },
    timings: { ttftMs: 13.29, totalMs: 13.47, loadMs: 0, tokensPerSec: 45114.65 },
    provider: 'ollama',
    servedBy: 'vm:11073',
  },
};

async function main(): Promise<void> {
  const opts = benchArgs(
    process.argv.slice(2),
    { port: 6390, batch: 4, rounds: 300, 'callgrind-pid': 0, 'max-entries': 10_000 },
    'node --import tsx bench/semantic-miss.ts --port P [--batch B] [--rounds R] [--max-entries M] [--dist DIR] [--callgrind-pid PID]',
    ['dist'],
  );
  const dist = opts.text.dist ?? join(__dirname, '..', 'dist');
  const { sem, client: rc, connection } = load(dist);
  const url = `redis://127.0.0.1:${opts.port}`;
  const admin = new Redis(url);
  await admin.flushall();
  const client = new rc.RedisClient({ url, commandTimeoutMs: 600_000, breakerThreshold: 100_000 });
  await connection.waitUntilReady(client.connection, 10_000);
  const cache = new sem.SemanticCache<unknown>({
    redis: client,
    prefix: '{bsm}',
    ttlSeconds: 300,
    maxEntriesPerScope: opts['max-entries'],
  });
  const scope = { model: 'qwen2.5:0.5b', params: { max_tokens: 8 } };
  let seed = 1;
  const word = (): string => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed.toString(16).padStart(8, '0');
  };
  const round = async (r: number): Promise<void> => {
    const prompts: string[] = [];
    for (let i = 0; i < opts.batch; i++)
      prompts.push(`Request ${r}-${i}: tell me about ${word()}${word().slice(0, 4)} and ${i * 7919}`);
    await Promise.all(prompts.map((p) => cache.get(p, scope)));
    await Promise.all(prompts.map((p) => cache.set(p, VALUE, scope)));
  };
  for (let r = 0; r < 100; r++) await round(-1 - r);
  const stats = async (): Promise<{ calls: Map<string, [number, number]>; bytes: [number, number] }> => {
    const text = `${String(await admin.info('commandstats'))}\n${String(await admin.info('stats'))}`;
    const calls = new Map<string, [number, number]>();
    for (const m of text.matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g))
      calls.set(m[1]!, [Number(m[2]), Number(m[3])]);
    const num = (k: string): number => Number(new RegExp(`${k}:(\\d+)`).exec(text)?.[1] ?? 0);
    return { calls, bytes: [num('total_net_input_bytes'), num('total_net_output_bytes')] };
  };
  const s0 = await stats();
  const evictions0 = cache.getStats().evictions;
  const cpu0 = process.cpuUsage();
  const pid = String(opts['callgrind-pid']);
  if (pid !== '0') execFileSync('callgrind_control', ['-i', 'on', pid]);
  for (let r = 0; r < opts.rounds; r++) await round(r);
  if (pid !== '0') execFileSync('callgrind_control', ['-i', 'off', pid]);
  const cpu = process.cpuUsage(cpu0);
  const s1 = await stats();
  const n = opts.rounds * opts.batch;
  let commands = 0;
  const by: string[] = [];
  for (const [cmd, [c]] of s1.calls) {
    if (cmd === 'info') continue;
    const d = c - (s0.calls.get(cmd)?.[0] ?? 0);
    commands += d;
    if (d / n >= 0.01) by.push(`${cmd} ${(d / n).toFixed(2)}`);
  }
  const ev1 = s1.calls.get('evalsha') ?? [0, 0];
  const ev0 = s0.calls.get('evalsha') ?? [0, 0];
  const st = cache.getStats();
  console.log(
    JSON.stringify({
      dist,
      requests: n,
      batch: opts.batch,
      commandsPerRequest: +(commands / n).toFixed(2),
      scriptCallsPerRequest: +((ev1[0] - ev0[0]) / n).toFixed(3),
      scriptUsPerRequest: +((ev1[1] - ev0[1]) / n).toFixed(1),
      bytesToRedis: Math.round((s1.bytes[0] - s0.bytes[0]) / n),
      bytesFromRedis: Math.round((s1.bytes[1] - s0.bytes[1]) / n),
      processCpuUsPerRequest: Math.round((cpu.user + cpu.system) / n),
      evictionsPerRequest: +((st.evictions - evictions0) / n).toFixed(2),
      errors: st.errors,
      byCommand: by.join(', '),
    }),
  );
  await client.close();
  admin.disconnect();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
