import { createHash } from 'node:crypto';
import { type QueueName } from './names.js';

/**
 * JSON with object keys sorted and no whitespace; undefined members are dropped (as JSON.stringify does).
 * Two requests that differ only in key order or formatting give the same text.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value);
    if (s === undefined) throw new TypeError(`canonicalJson: cannot encode ${typeof value}`);
    return s;
  }
  if (Array.isArray(value))
    return '[' + value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',') + ']';
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return '{' + entries.map(([k, v]) => JSON.stringify(k) + ':' + canonicalJson(v)).join(',') + '}';
}

/** Bump when the canonical form changes, so old and new requests never share an id by accident. */
const ID_VERSION = 'cell0/job/v1';
const PREFIX: Record<QueueName, string> = { inference: 'i-', search: 's-' };

/**
 * The job id of a validated, defaults-filled request: a 128-bit SHA-256 prefix of its canonical JSON.
 * Identical requests get the same id, which is what makes BullMQ store one job for all of them.
 * The letter prefix keeps ids from ever being all digits, which BullMQ refuses as custom ids.
 */
export function jobIdFor(queue: QueueName, data: unknown): string {
  const hash = createHash('sha256')
    .update(ID_VERSION)
    .update('\0')
    .update(queue)
    .update('\0')
    .update(canonicalJson(data));
  return PREFIX[queue] + hash.digest('hex').slice(0, 32);
}
