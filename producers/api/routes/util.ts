import { type Request, type Response } from 'express';
import { ValidationError } from '../../../shared/errors.js';

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

/** Resolves when a response that refused a write can take more (or has closed); leaves no listener behind. */
export function drained(res: Response): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** A list route's `limit` query parameter: `fallback` when absent, else an integer in 1..`max` (400 otherwise). */
export function pageLimit(value: unknown, fallback: number, max: number): number {
  const limit = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(limit) || limit < 1 || limit > max)
    throw new ValidationError([{ field: 'limit', reason: `expected an integer in 1..${max}` }]);
  return limit;
}

/**
 * OpenAI's list page: `{object: "list", data, first_id, last_id, has_more}`, from up to `limit` + 1 items
 * read (one more than the page shows, to know whether there are more).
 */
export function listPage<T extends { id: unknown }>(
  read: readonly T[],
  limit: number,
): { object: 'list'; data: T[]; first_id: unknown; last_id: unknown; has_more: boolean } {
  const data = read.slice(0, limit);
  return {
    object: 'list',
    data,
    first_id: data[0]?.id ?? null,
    last_id: data[data.length - 1]?.id ?? null,
    has_more: read.length > limit,
  };
}
