/**
 * The stored form of one cached response: `0x01 | u32 BE length of the meta JSON | meta JSON | body`.
 * One Redis string per response, read with a single GET (MGET) and no base64 of the body.
 */

/** What is stored beside the body. */
export interface EntryMeta {
  /** Status code. */
  s: number;
  /** Response headers (lowercase names) minus hop-by-hop, per-request and cache headers. */
  h: Array<[string, string | string[]]>;
  /** Strong ETag of the body. */
  e: string;
  /** When it was stored, epoch ms (also the version the refresh lock is taken on). */
  t: number;
  /** Freshness lifetime, ms. */
  f: number;
  /** Stale-while-revalidate window after that, ms. */
  w: number;
}

/** A decoded entry. */
export interface CacheEntry extends EntryMeta {
  body: Buffer;
}

const VERSION = 1;

export function encodeEntry(meta: EntryMeta, body: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(meta));
  const head = Buffer.allocUnsafe(5);
  head[0] = VERSION;
  head.writeUInt32BE(json.length, 1);
  return Buffer.concat([head, json, body], 5 + json.length + body.length);
}

/** The entry, or undefined for anything that is not a well-formed entry of this version. */
export function decodeEntry(buf: Buffer): CacheEntry | undefined {
  if (buf.length < 5 || buf[0] !== VERSION) return undefined;
  const len = buf.readUInt32BE(1);
  if (5 + len > buf.length) return undefined;
  try {
    const meta = JSON.parse(buf.toString('utf8', 5, 5 + len)) as EntryMeta;
    if (typeof meta.s !== 'number' || !Array.isArray(meta.h) || typeof meta.t !== 'number') return undefined;
    return { ...meta, body: buf.subarray(5 + len) };
  } catch {
    return undefined;
  }
}
