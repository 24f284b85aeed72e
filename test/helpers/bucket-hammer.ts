/*
 * A separate process for the fleet-wide token-bucket test. Reads its orders from the environment, connects,
 * prints "ready", waits for a line "go" on stdin (so that several processes start together whatever their
 * start-up time), then loops acquire() on one RedisTokenBucketRateLimiter (CONCURRENCY loops at once) for
 * DURATION_MS, and prints one JSON line: { grantedAt: number[], reservedAt: number[] (Redis-clock ms, from the
 * limiter's permit:granted events), refused: number }.
 *
 * REDIS_URL, PREFIX, NAME, RATE, CAPACITY, DURATION_MS are required; CONCURRENCY defaults to 2.
 */
import { closeRedis, createRedisConnection } from '../../shared/redis/connection';
import { RateLimitedError } from '../../shared/errors';
import { RedisTokenBucketRateLimiter } from '../../shared/rate-limit/token-bucket';
import { sleep } from '../../shared/sleep';

function required(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`bucket-hammer: ${name} is required`);
  return v;
}

async function main(): Promise<void> {
  // One Redis or a Cluster (a redis-cluster:// URL), as the test run has it.
  const redis = createRedisConnection({
    url: required('REDIS_URL'),
    role: 'worker',
    connectionName: 'test:hammer',
  });
  const limiter = new RedisTokenBucketRateLimiter({
    redis,
    prefix: required('PREFIX'),
    name: required('NAME'),
    rate: Number(required('RATE')),
    capacity: Number(required('CAPACITY')),
  });
  const durationMs = Number(required('DURATION_MS'));
  const concurrency = Number(process.env.CONCURRENCY ?? '2');
  await redis.ping();
  const go = new Promise<void>((resolve, reject) => {
    let input = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => {
      input += d;
      if (input.includes('go\n')) resolve();
    });
    process.stdin.on('end', () => reject(new Error('bucket-hammer: stdin closed before "go"')));
  });
  process.stdout.write('ready\n');
  await go;
  process.stdin.destroy();
  const stopAt = Date.now() + durationMs;

  const grantedAt: number[] = [];
  const reservedAt: number[] = [];
  limiter.on('permit:granted', (g) => {
    grantedAt.push(g.grantedAt);
    reservedAt.push(g.reservedAt);
  });
  let refused = 0;
  const loop = async (): Promise<void> => {
    while (Date.now() < stopAt) {
      try {
        // Never wait past the end: a grant after STOP_AT would not be counted by the parent's window.
        const permit = await limiter.acquire(1, { timeoutMs: Math.max(0, stopAt - Date.now()) });
        permit.release();
      } catch (err) {
        if (!(err instanceof RateLimitedError)) throw err;
        refused++;
        await sleep(5);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  process.stdout.write(JSON.stringify({ grantedAt, reservedAt, refused }) + '\n');
  await closeRedis(redis);
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exit(1);
});
