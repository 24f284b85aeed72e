import { randomBytes } from 'node:crypto';

/** The Redis the test run uses (REDIS_URL, or the private server started by the global setup). */
export function testRedisUrl(): string {
  const url = process.env.CELL0_TEST_REDIS_URL;
  if (!url) throw new Error('CELL0_TEST_REDIS_URL is not set: run the tests through jest (global setup)');
  return url;
}

/** A queue prefix no other test uses: its own {hash tag}. */
export function uniquePrefix(label = 't'): string {
  return `{${label}-${randomBytes(5).toString('hex')}}`;
}
