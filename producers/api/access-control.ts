import { type RequestHandler, type Response } from 'express';
import { ErrorCode, httpStatusOf } from '../../shared/errors.js';
import { type RedisClient } from '../../shared/redis/redis-client.js';
import { keyMatcher, presentedKey } from './auth.js';
import { sharedTenantSecret, tenantId } from './tenant-ids.js';

/** Options of {@link AccessControl}. */
export interface AccessControlOptions {
  /**
   * Tenant API keys (CELL0_API_KEYS). Each sees only its own jobs and cache entries. None: the work routes
   * are open and single-tenant (development). Default none.
   */
  apiKeys?: readonly string[];
  /**
   * Admin keys (CELL0_ADMIN_KEYS): the only keys that open the admin routes (Bull Board, /v1/fleet,
   * /v1/queues). A key may not be both a tenant key and an admin key. Default none.
   */
  adminKeys?: readonly string[];
  /**
   * Secret the tenant ids are derived with, HMAC-SHA256 (CELL0_TENANT_SECRET). Default: the fleet's
   * generated secret, kept in Redis under `prefix`.
   */
  tenantSecret?: string;
  /** Where the fleet's generated secret is kept; needed with apiKeys and no tenantSecret. */
  redis?: RedisClient;
  /** Queue prefix the generated secret is kept under. Default "{cell0}". */
  prefix?: string;
}

/** Who a request is, once admitted. */
export type Caller =
  /** No tenant keys configured: the single tenant of an open API. */
  { role: 'open' } | { role: 'tenant'; tenant: string } | { role: 'admin' };

/** The admin routes of the HTTP API, under /v1 (Bull Board is guarded where it is mounted). */
export const ADMIN_ROUTES = ['/fleet', '/queues'] as const;

const CALLER = 'cell0Caller';

/** The caller of every request of an open API (frozen: one object shared by all of them). */
const OPEN: Caller = Object.freeze({ role: 'open' });

/** The caller admitted by {@link AccessControl}'s middleware for this response's request. */
export function callerOf(res: Response): Caller | undefined {
  return (res.locals as Record<string, Caller | undefined>)[CALLER];
}

/** The tenant id of the admitted caller, or undefined (open mode, admin). */
export function tenantOf(res: Response): string | undefined {
  const c = callerOf(res);
  return c?.role === 'tenant' ? c.tenant : undefined;
}

/**
 * Who may call what. Tenant keys open the work routes (POST /v1/inference, /v1/search, GET /v1/jobs,
 * POST /v1/cache/false-hits) and each is known by its tenant id; admin keys open the admin routes (Bull
 * Board, GET /v1/fleet, GET /v1/queues) and nothing else; neither opens the other's routes. With no keys
 * at all everything is open (one tenant, for development); with tenant keys and no admin keys the admin
 * routes are off. Keys are compared in constant time; tenant ids are computed once per key, when the
 * secret is first known, so a request costs no hashing and no Redis command for them.
 */
export class AccessControl {
  private readonly apiKeys: readonly string[];
  private readonly adminKeys: readonly string[];
  private readonly match: (presented: string) => number;
  private readonly opts: AccessControlOptions;
  private ids: string[] | undefined;
  private loading: Promise<string[]> | undefined;

  constructor(opts: AccessControlOptions = {}) {
    this.opts = opts;
    this.apiKeys = [...(opts.apiKeys ?? [])];
    this.adminKeys = [...(opts.adminKeys ?? [])];
    for (const k of [...this.apiKeys, ...this.adminKeys])
      if (typeof k !== 'string' || k.length === 0)
        throw new TypeError('AccessControl: options "apiKeys" and "adminKeys" must hold non-empty strings');
    const admin = new Set(this.adminKeys);
    if (this.apiKeys.some((k) => admin.has(k)))
      throw new TypeError(
        'AccessControl: a key is both a tenant API key and an admin key; give admins keys of their own',
      );
    if (opts.tenantSecret !== undefined && opts.tenantSecret.length === 0)
      throw new TypeError('AccessControl: option "tenantSecret" must not be empty');
    // Tenant keys first, then admin keys: one constant-time pass over both lists.
    this.match = keyMatcher([...this.apiKeys, ...this.adminKeys]);
    if (opts.tenantSecret !== undefined) this.ids = this.apiKeys.map((k) => tenantId(opts.tenantSecret!, k));
  }

  /** True when tenant keys are configured (else the work routes are open, single-tenant). */
  get tenantKeys(): boolean {
    return this.apiKeys.length > 0;
  }

  /** How the admin routes are guarded: open (no keys at all), by admin keys, or off (tenant keys only). */
  get adminMode(): 'open' | 'keys' | 'off' {
    if (this.adminKeys.length > 0) return 'keys';
    return this.apiKeys.length > 0 ? 'off' : 'open';
  }

  /**
   * Resolves once the tenant ids are known: at once with a tenantSecret, else after reading (or creating)
   * the fleet's secret in Redis. A failure (Redis away) is not kept: the next call tries again.
   */
  async ready(): Promise<void> {
    await this.tenantIds();
  }

  /** The tenant id of `key` (undefined when it is not a tenant key); reads the secret if need be. */
  async tenantIdOf(key: string): Promise<string | undefined> {
    const i = this.apiKeys.indexOf(key);
    if (i < 0) return undefined;
    return (await this.tenantIds())[i];
  }

  /**
   * Guards the work routes: the caller must present a tenant key as `Authorization: Bearer <key>` (401
   * otherwise; 403 for an admin key). Its tenant id is then available through {@link tenantOf}. Open when
   * no tenant keys are configured. A request an earlier guard admitted (an admin route) passes through.
   */
  tenantRoute(): RequestHandler {
    if (this.apiKeys.length > 0 && this.opts.tenantSecret === undefined && !this.opts.redis)
      throw new TypeError('AccessControl: tenant keys need option "tenantSecret" or "redis"');
    // Not async: a request costs no promise once the tenant ids are known (the usual case).
    return (req, res, next) => {
      if (callerOf(res)) return next();
      if (this.apiKeys.length === 0) return admit(res, OPEN, next);
      const header = req.headers.authorization;
      const key = /^bearer\s/i.test(header?.trim() ?? '') ? presentedKey(header) : undefined;
      const i = key === undefined ? -1 : this.match(key);
      if (i < 0) return unauthorized(res, key !== undefined, 'Bearer realm="cell0"');
      if (i >= this.apiKeys.length)
        return forbidden(
          res,
          'an admin key does not open the work routes; send a tenant API key (CELL0_API_KEYS)',
        );
      const ids = this.ids;
      if (ids) return admit(res, { role: 'tenant', tenant: ids[i]! }, next);
      // express 5 sends a rejected handler's error to next(err), as it did when this handler was async.
      return this.tenantIds().then((read) => admit(res, { role: 'tenant', tenant: read[i]! }, next));
    };
  }

  /**
   * Guards an admin route: the caller must present an admin key (401 otherwise; 403 for a tenant key).
   * `basic` also takes HTTP Basic auth with the key as password and asks browsers for it (Bull Board).
   * Open when no keys at all are configured; off (403) when tenant keys are and admin keys are not.
   */
  adminRoute(opts: { basic?: boolean } = {}): RequestHandler {
    const challenge = opts.basic
      ? 'Basic realm="cell0 admin", charset="UTF-8"'
      : 'Bearer realm="cell0 admin"';
    return (req, res, next) => {
      if (callerOf(res)?.role === 'admin') return next();
      const mode = this.adminMode;
      if (mode === 'open') return admit(res, { role: 'admin' }, next);
      if (mode === 'off')
        return forbidden(
          res,
          'admin routes are off: tenant API keys are set (CELL0_API_KEYS) and no admin key is; set CELL0_ADMIN_KEYS to open them',
        );
      const header = req.headers.authorization;
      const key = opts.basic || /^bearer\s/i.test(header?.trim() ?? '') ? presentedKey(header) : undefined;
      const i = key === undefined ? -1 : this.match(key);
      if (i < 0) return unauthorized(res, key !== undefined, challenge);
      if (i < this.apiKeys.length)
        return forbidden(
          res,
          'a tenant API key does not open admin routes; send an admin key (CELL0_ADMIN_KEYS)',
        );
      admit(res, { role: 'admin' }, next);
    };
  }

  /** Lines for the start banner: how callers are told apart, and how to change it. */
  describe(): string[] {
    const admin = '/v1/fleet, /v1/queues, /admin/queues, /admin/fleet';
    const secret =
      this.opts.tenantSecret !== undefined
        ? 'tenant ids keyed by CELL0_TENANT_SECRET'
        : "tenant ids keyed by the fleet's secret in Redis";
    switch (this.adminMode) {
      case 'open':
        return [
          'auth       none: open, single tenant (every caller sees every job and the dashboard);',
          '           set CELL0_API_KEYS (tenants) and CELL0_ADMIN_KEYS (dashboard, fleet) to close it',
        ];
      case 'off':
        return [
          `auth       ${this.apiKeys.length} tenant API key(s), ${secret};`,
          `           admin routes (${admin}) are off: set CELL0_ADMIN_KEYS to open them`,
        ];
      default:
        return [
          this.apiKeys.length > 0
            ? `auth       ${this.apiKeys.length} tenant API key(s), ${secret}; ${this.adminKeys.length} admin key(s) for ${admin}`
            : `auth       work routes open (single tenant, no CELL0_API_KEYS); ${this.adminKeys.length} admin key(s) for ${admin}`,
        ];
    }
  }

  private tenantIds(): Promise<string[]> {
    if (this.ids) return Promise.resolve(this.ids);
    this.loading ??= (async () => {
      const redis = this.opts.redis;
      if (!redis) throw new TypeError('AccessControl: tenant keys need option "tenantSecret" or "redis"');
      const secret = await redis.run((r) => sharedTenantSecret(r, this.opts.prefix ?? '{cell0}'));
      this.ids = this.apiKeys.map((k) => tenantId(secret, k));
      return this.ids;
    })().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }
}

function admit(res: Response, caller: Caller, next: () => void): void {
  (res.locals as Record<string, Caller>)[CALLER] = caller;
  next();
}

function unauthorized(res: Response, presented: boolean, challenge: string): void {
  res.setHeader('WWW-Authenticate', challenge);
  res.status(httpStatusOf(ErrorCode.UNAUTHORIZED)).json({
    error: {
      code: ErrorCode.UNAUTHORIZED,
      message: presented ? 'invalid API key' : 'missing API key: send Authorization: Bearer <key>',
    },
  });
}

function forbidden(res: Response, message: string): void {
  res.status(httpStatusOf(ErrorCode.FORBIDDEN)).json({ error: { code: ErrorCode.FORBIDDEN, message } });
}
