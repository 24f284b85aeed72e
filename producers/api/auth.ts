import { hash, timingSafeEqual } from 'node:crypto';

/** SHA-256 of `s` as a Buffer, in one call (no Hash object per presented key). */
const digest = (s: string): Buffer => hash('sha256', s, 'buffer');

/**
 * A matcher of keys in constant time: the presented key and every configured key are hashed to the same
 * length and all are compared (no early exit), so timing reveals neither a key nor its length. Answers the
 * index of the matching key, or -1.
 */
export function keyMatcher(keys: readonly string[]): (presented: string) => number {
  const digests = keys.map(digest);
  return (presented) => {
    const d = digest(presented);
    let found = -1;
    for (let i = 0; i < digests.length; i++) {
      const eq = timingSafeEqual(d, digests[i]!);
      found = eq ? i : found;
    }
    return found;
  };
}

/** True when the presented key is one of `keys` (see {@link keyMatcher}). */
export function keyChecker(keys: readonly string[]): (presented: string) => boolean {
  const match = keyMatcher(keys);
  return (presented) => match(presented) >= 0;
}

/** The key in `Authorization: Bearer <key>`, or in the password of Basic auth (for browsers). */
export function presentedKey(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^(Bearer|Basic)\s+(.+)$/i.exec(header.trim());
  if (!m) return undefined;
  if (m[1]!.toLowerCase() === 'bearer') return m[2]!.trim();
  const decoded = Buffer.from(m[2]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 ? decoded.slice(colon + 1) : decoded;
}
