/*
 * One process of bench:ratelimit: acquires from the fleet-wide bucket as fast as it can for --seconds and
 * calls the simulator once per grant (so the server counts what it really receives). Prints one JSON line:
 * { grants: [Redis-clock ms of each grant], done: [local ms when each call was answered], refused, calls,
 * errors }.
 */
import { Redis } from 'ioredis';
import { HttpPoolRegistry } from '../shared/http/pool.js';
import { RateLimitedError } from '../shared/errors.js';
import { RedisTokenBucketRateLimiter } from '../shared/rate-limit/token-bucket.js';
import { sleep } from '../shared/sleep.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!, process.argv[i + 1] ?? '');
const redisUrl = args.get('--redis')!;
const prefix = args.get('--prefix')!;
const rate = Number(args.get('--rate'));
const capacity = Number(args.get('--capacity'));
const seconds = Number(args.get('--seconds'));
const target = args.get('--target')!;
const startAt = Number(args.get('--start-at'));
const inFlight = Number(args.get('--in-flight') ?? '4');

async function main(): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const limiter = new RedisTokenBucketRateLimiter({
    name: 'bench',
    rate,
    capacity,
    redis,
    prefix,
    maxWaitMs: 2000,
  });
  const pools = new HttpPoolRegistry();
  const pool = pools.get(target);
  const grants: number[] = [];
  const done: number[] = [];
  let refused = 0;
  let calls = 0;
  let errors = 0;
  // All processes start at the same wall-clock moment.
  await sleep(startAt - Date.now());
  const end = Date.now() + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (Date.now() < end) {
      try {
        const permit = await limiter.acquire(1);
        grants.push(permit.grantedAt);
        try {
          await pool.call({
            provider: 'bench',
            method: 'POST',
            path: '/api/embed',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'all-minilm', input: 'x' }),
            timeoutMs: 10_000,
            read: async (res) => res.body.dump(),
            onHttpError: (status) => new Error(`HTTP ${status}`),
          });
          calls++;
          done.push(Date.now());
        } catch {
          errors++;
        }
      } catch (err) {
        if (!(err instanceof RateLimitedError)) throw err;
        // What a worker does with a refusal: come back when the bucket says (the job waits meanwhile).
        refused++;
        await sleep(Math.min(err.retryAfterMs, 1000));
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, () => loop()));
  process.stdout.write(JSON.stringify({ grants, done, refused, calls, errors }) + '\n');
  await pools.close();
  await redis.quit();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
