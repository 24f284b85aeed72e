import { type Request, type Response } from 'express';

/** A JSON object (not null, not an array). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** At most 80 characters of an echoed path segment. */
export function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

/**
 * Answers `body` as JSON with `status`, as express's `res.status(status).json(body)` does for a POST in
 * createApi's app (no ETag, no JSON settings): the same status, `Content-Type: application/json;
 * charset=utf-8`, `Content-Length` and bytes, without express's content-type handling (mime and charset
 * parsing per answer), its freshness check or its HEAD and 204/304 branches. A request that is not a POST, or
 * an answer whose Content-Type was set before, goes through express as before.
 */
export function sendJson(req: Request, res: Response, status: number, body: unknown): void {
  if (req.method !== 'POST' || res.getHeader('Content-Type') !== undefined) {
    res.status(status).json(body);
    return;
  }
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text, 'utf8'));
  res.end(text, 'utf8');
}
