import { ValidationError } from '../../errors.js';
import { type Logger } from '../../logger.js';
import { type RedisClient } from '../../redis/redis-client.js';
import { scanEveryMaster } from '../../redis/cluster.js';
import { ScopeKeys, scopeHash, shortHash, type SemanticScope } from './scope.js';
import { CLEAR_CHUNK, commands, SLOT_HOLD_MS } from './semantic-scripts.js';

/** What the whole-scope operations of SemanticCache need. */
export interface MaintenanceContext {
  redis: RedisClient;
  /** Key base (the prefix without braces). */
  base: string;
  /** The embedding space (name/dims) in scope hashes. */
  space: string;
  log: Logger;
}

/** The set of scope hashes stored for a model (read by invalidate() and the sweep). */
export function modelIndexKey(base: string, model: string): string {
  return `${base}:model:{m-${shortHash(model)}}`;
}

/** The set of scope hashes stored for a tenant (read by invalidate()). */
export function tenantIndexKey(base: string, tenant: string): string {
  return `${base}:tenant:{t-${shortHash(tenant)}}`;
}

/**
 * Removes every entry whose scope matches all given fields: `{ model }` = every entry of the model (all
 * tenants, parameters, system prompts), `{ tenant }` = every entry of the tenant, `{ model, tenant }` =
 * both. A full scope (one that has `params`, `system` or `context`) removes exactly that scope. Returns
 * how many live entries were removed. Rejects with the RedisClient's typed errors (RedisUnavailableError,
 * BreakerOpenError) when Redis fails, and with a ValidationError for an empty match. Entries stored
 * while it runs may survive it.
 */
export async function invalidateScopes(
  ctx: MaintenanceContext,
  match: Partial<Pick<SemanticScope, 'model' | 'tenant'>> | SemanticScope,
): Promise<number> {
  const m = match ?? {};
  const full =
    typeof m.model === 'string' &&
    ((m as SemanticScope).params !== undefined ||
      (m as SemanticScope).system !== undefined ||
      (m as SemanticScope).context !== undefined);
  const model = m.model || undefined;
  const tenant = m.tenant || undefined;
  if (model === undefined && tenant === undefined)
    throw new ValidationError([{ field: 'match', reason: 'give a model and/or a tenant (or a full scope)' }]);

  let scopes: string[];
  if (full) {
    scopes = [scopeHash(m as SemanticScope, ctx.space)];
  } else {
    const [byModel, byTenant] = await Promise.all([
      model === undefined ? undefined : ctx.redis.run((r) => r.smembers(modelIndexKey(ctx.base, model))),
      tenant === undefined ? undefined : ctx.redis.run((r) => r.smembers(tenantIndexKey(ctx.base, tenant))),
    ]);
    if (byModel && byTenant) {
      const t = new Set(byTenant);
      scopes = byModel.filter((s) => t.has(s));
    } else scopes = byModel ?? byTenant ?? [];
  }

  let removed = 0;
  for (const hash of scopes) {
    const keys = new ScopeKeys(ctx.base, hash);
    // One script call per chunk: Redis runs a script alone, so each call stays short.
    for (let round = 0; round < 1_000_000; round++) {
      const [n, left] = await ctx.redis.run((r) =>
        commands(r).cell0SemanticDrop(
          ...keys.containers(),
          keys.entryPrefix,
          keys.bandPrefix,
          'all',
          SLOT_HOLD_MS,
          CLEAR_CHUNK,
        ),
      );
      removed += Number(n);
      if (Number(left) === 0) break;
    }
  }
  if (scopes.length > 0) {
    await Promise.all([
      model === undefined
        ? undefined
        : ctx.redis.run((r) => r.srem(modelIndexKey(ctx.base, model), ...scopes)),
      tenant === undefined
        ? undefined
        : ctx.redis.run((r) => r.srem(tenantIndexKey(ctx.base, tenant), ...scopes)),
    ]);
  }
  ctx.log.info({ model, tenant, scopes: scopes.length, removed }, 'semantic cache invalidated');
  return removed;
}

/**
 * Removes the index records of expired entries in every scope (set() does it lazily, 64 at a time, but
 * only in scopes that are still written to). Run by the fleet's scheduled cleanup job. Walks the model
 * index sets with SCAN, so it costs nothing when there is nothing to clean; at most `maxScopes` scopes
 * per call. Returns the records removed and the scopes visited. Rejects with the RedisClient's typed
 * errors when Redis fails.
 */
export async function sweepExpiredScopes(
  ctx: MaintenanceContext,
  opts: { maxScopes?: number } = {},
): Promise<{ removed: number; scopes: number }> {
  const maxScopes = opts.maxScopes ?? 10_000;
  const seen = new Set<string>();
  let removed = 0;
  // The model indexes of every master (on a cluster each scope, and each index, has a slot of its own).
  const indexKeys: string[] = [];
  await ctx.redis.run((r) =>
    scanEveryMaster(r, `${ctx.base}:model:*`, 200, (keys) => indexKeys.push(...keys)),
  );
  for (const indexKey of indexKeys) {
    if (seen.size >= maxScopes) break;
    const scopes = await ctx.redis.run((r) => r.smembers(indexKey));
    for (const hash of scopes) {
      if (seen.has(hash) || seen.size >= maxScopes) continue;
      seen.add(hash);
      const keys = new ScopeKeys(ctx.base, hash);
      for (let round = 0; round < 10_000; round++) {
        const [n, left] = await ctx.redis.run((r) =>
          commands(r).cell0SemanticDrop(
            ...keys.containers(),
            keys.entryPrefix,
            keys.bandPrefix,
            'expired',
            SLOT_HOLD_MS,
            CLEAR_CHUNK,
          ),
        );
        removed += Number(n);
        if (Number(left) === 0) break;
      }
    }
  }
  if (removed > 0) ctx.log.info({ removed, scopes: seen.size }, 'semantic cache: expired records removed');
  return { removed, scopes: seen.size };
}

/**
 * Live entries over every scope (for the entries gauge): the model index sets walked with SCAN, one ZCOUNT
 * of each scope's expiry set past Redis's clock, so entries expired but not yet swept are not counted.
 * At most `maxScopes` scopes. Rejects with the RedisClient's typed errors when Redis fails.
 */
export async function countLiveEntries(ctx: MaintenanceContext, maxScopes = 10_000): Promise<number> {
  const [sec, micro] = await ctx.redis.run((r) => r.time());
  const now = Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
  const seen = new Set<string>();
  let n = 0;
  // The model indexes of every master; on a cluster each scope has a slot of its own, so the counts go as
  // separate commands (sent together) rather than one pipeline.
  const indexKeys: string[] = [];
  await ctx.redis.run((r) =>
    scanEveryMaster(r, `${ctx.base}:model:*`, 200, (keys) => indexKeys.push(...keys)),
  );
  for (const indexKey of indexKeys) {
    if (seen.size >= maxScopes) break;
    const fresh = (await ctx.redis.run((r) => r.smembers(indexKey))).filter((h) => !seen.has(h));
    for (const h of fresh) seen.add(h);
    if (fresh.length === 0) continue;
    const counts = await ctx.redis.run((r) =>
      Promise.allSettled(fresh.map((h) => r.zcount(new ScopeKeys(ctx.base, h).exp, `(${now}`, '+inf'))),
    );
    for (const c of counts) if (c.status === 'fulfilled') n += Number(c.value);
  }
  return n;
}
