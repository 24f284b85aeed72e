import { createHmac, randomBytes } from 'node:crypto';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import { RedisUnavailableError } from '../../shared/errors.js';

/** Bumped if the derivation changes, so ids of two derivations never meet. */
const TENANT_ID_LABEL = 'cell0/tenant/v1\0';

/**
 * The tenant id of an API key: `t-` and 24 hex digits (96 bits) of HMAC-SHA256 keyed by the fleet's
 * tenant secret. It partitions jobs (it is part of the job id) and cache entries, and it shows in job data
 * (Bull Board). Without the secret nobody can test a guessed key against it, so a weak key cannot be
 * recovered offline from what the dashboard or Redis shows.
 */
export function tenantId(secret: string, key: string): string {
  return (
    't-' +
    createHmac('sha256', secret)
      .update(TENANT_ID_LABEL + key)
      .digest('hex')
      .slice(0, 24)
  );
}

/** Where a generated tenant secret is kept: beside the queues, under their prefix (`{cell0}:tenant-secret`). */
export function tenantSecretKey(prefix: string): string {
  return `${prefix}:tenant-secret`;
}

/**
 * The fleet's generated tenant secret. The first process to ask stores 32 random bytes (SET NX, no
 * expiry); it and every other process then read the stored one, so all API processes of a fleet derive
 * the same tenant ids however their starts interleave. Two commands, once per process.
 */
export async function sharedTenantSecret(redis: RedisConnection, prefix: string): Promise<string> {
  const key = tenantSecretKey(prefix);
  await redis.set(key, randomBytes(32).toString('base64url'), 'NX');
  const secret = await redis.get(key);
  // Only a DEL between the two commands can leave nothing; the next request tries again.
  if (secret === null || secret.length === 0)
    throw new RedisUnavailableError(`the tenant secret at ${key} vanished while it was being read`);
  return secret;
}
