import { hash } from 'node:crypto';
import { type QueueName } from './names.js';

/**
 * JSON with object keys sorted and no whitespace; undefined members are dropped (as JSON.stringify does).
 * Two requests that differ only in key order or formatting give the same text.
 */
export function canonicalJson(value: unknown): string {
  // Fast path: data whose keys are already in order at every level (the request schemas declare their
  // fields alphabetically, so every validated request is) is canonical as JSON.stringify writes it.
  return isSortedDeep(value) ? JSON.stringify(value) : slowCanonicalJson(value);
}

/** True when every object in `v` lists its keys in ascending order and holds no undefined member. */
function isSortedDeep(v: unknown): boolean {
  if (v === null || typeof v !== 'object')
    return v !== undefined && typeof v !== 'function' && typeof v !== 'symbol';
  if (Array.isArray(v)) {
    for (const x of v) if (x === undefined || !isSortedDeep(x)) return false;
    return true;
  }
  if (Object.getPrototypeOf(v) !== Object.prototype && Object.getPrototypeOf(v) !== null) return false;
  let prev: string | undefined;
  for (const k in v) {
    if (prev !== undefined && !(prev < k)) return false;
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined || !isSortedDeep(x)) return false;
    prev = k;
  }
  return true;
}

function slowCanonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value);
    if (s === undefined) throw new TypeError(`canonicalJson: cannot encode ${typeof value}`);
    return s;
  }
  // Plain loops rather than entries/filter/map: this runs on every request.
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      const v: unknown = value[i];
      out += v === undefined ? 'null' : slowCanonicalJson(v);
    }
    return out + ']';
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += JSON.stringify(k) + ':' + slowCanonicalJson(v);
  }
  return out + '}';
}

/** Bump when the canonical form changes, so old and new requests never share an id by accident. */
const ID_VERSION = 'cell0/job/v1';
const PREFIX: Record<QueueName, string> = { inference: 'i-', search: 's-', embedding: 'e-' };
/** The letter a job id of `queue` starts with (before its dash). */
export function jobIdLetter(queue: QueueName): string {
  return PREFIX[queue].slice(0, 1);
}
/** Hex digits of the hash in a job id. */
const ID_HEX = 32;
const ID_RE: Record<QueueName, RegExp> = {
  inference: new RegExp(`^i-[0-9a-f]{${ID_HEX}}$`),
  search: new RegExp(`^s-[0-9a-f]{${ID_HEX}}$`),
  embedding: new RegExp(`^e-[0-9a-f]{${ID_HEX}}$`),
};

/**
 * The job id of a validated, defaults-filled request: a 128-bit SHA-256 prefix of its canonical JSON.
 * Identical requests get the same id, which is what makes BullMQ store one job for all of them.
 * The letter prefix keeps ids from ever being all digits, which BullMQ refuses as custom ids.
 */
export function jobIdFor(queue: QueueName, data: unknown): string {
  return (
    PREFIX[queue] +
    hash('sha256', ID_VERSION + '\0' + queue + '\0' + canonicalJson(identityOf(data))).slice(0, ID_HEX)
  );
}

/**
 * True when `id` has the form of a job id of `queue` (its letter, a dash and 32 lower-case hex digits).
 * Ids from outside (an HTTP path, a caller's handle) are checked with it before any Redis key is built
 * from them: BullMQ keeps a queue's own records beside its jobs (`<queue>:id`, `:meta`, `:events`, …),
 * and an id naming one of those would otherwise be read as a job.
 */
export function isJobId(queue: QueueName, id: string): boolean {
  return typeof id === 'string' && ID_RE[queue]?.test(id) === true;
}

/**
 * The part of a request that identifies its job. Of the cache controls only `namespace` does (a tenant's
 * jobs are its own); noCache, noStore and ttlSeconds steer the caches, so requests that differ only in
 * them share one job. A request without cache controls is returned as is (its id is unchanged).
 */
export function identityOf(data: unknown): unknown {
  if (typeof data !== 'object' || data === null) return data;
  const cache = (data as { cache?: { namespace?: string } }).cache;
  if (cache === undefined) return data;
  const { cache: _controls, ...rest } = data as Record<string, unknown>;
  return cache.namespace === undefined ? rest : { cache: { namespace: cache.namespace }, ...rest };
}
