import { createHash, timingSafeEqual } from 'node:crypto';
import { type RequestHandler } from 'express';
import { ErrorCode } from '../../shared/errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * A checker of API keys in constant time: the presented key and every configured key are hashed to the
 * same length and all are compared (no early exit), so timing reveals neither a key nor its length.
 */
export function keyChecker(keys: readonly string[]): (presented: string) => boolean {
  const digests = keys.map(digest);
  return (presented) => {
    const d = digest(presented);
    let ok = false;
    for (const k of digests) ok = timingSafeEqual(d, k) || ok;
    return ok;
  };
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

/**
 * Requires a configured API key when `keys` is not empty. `basic` also accepts HTTP Basic auth with the
 * key as password and asks browsers for it (Bull Board is opened in a browser).
 */
export function requireApiKey(keys: readonly string[], opts: { basic?: boolean } = {}): RequestHandler {
  if (keys.length === 0) return (_req, _res, next) => next();
  const check = keyChecker(keys);
  return (req, res, next) => {
    const key = presentedKey(req.headers.authorization);
    if (key !== undefined && (opts.basic || /^bearer/i.test(req.headers.authorization ?? '')) && check(key))
      return next();
    res.setHeader(
      'WWW-Authenticate',
      opts.basic ? 'Basic realm="cell0", charset="UTF-8"' : 'Bearer realm="cell0"',
    );
    res.status(401).json({
      error: {
        code: ErrorCode.UNAUTHORIZED,
        message: key === undefined ? 'missing API key: send Authorization: Bearer <key>' : 'invalid API key',
      },
    });
  };
}

/**
 * The tenant namespace of an authenticated request: `key-` and 16 hex of SHA-256 over the presented key
 * (never the key itself), followed by `:<namespace>` when the request named one. Without configured keys
 * the request's own namespace (or none) is kept. Caches and jobs are partitioned by it, so two API keys
 * never see each other's cached answers.
 */
export function tenantNamespace(
  keysConfigured: boolean,
  authorization: string | undefined,
  requested: string | undefined,
): string | undefined {
  if (!keysConfigured) return requested;
  const key = presentedKey(authorization);
  if (key === undefined) return requested;
  const tenant = `key-${digest(key).toString('hex').slice(0, 16)}`;
  return requested === undefined ? tenant : `${tenant}:${requested}`;
}
