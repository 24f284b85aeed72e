import { type RequestHandler } from 'express';

/**
 * A body reader (express.json / express.text) of a route with a size limit of its own: the reader's
 * size refusal becomes `tooLarge(length)`, a typed error the one error mapper answers with this route's
 * limit (the reader's own error would be answered with the API-wide CELL0_MAX_BODY_BYTES).
 * `length` is the body's declared length when the request gave one.
 */
export function withOwnLimit(
  reader: RequestHandler,
  tooLarge: (length: number | undefined) => Error,
): RequestHandler {
  return (req, res, next) =>
    reader(req, res, (err?: unknown) => {
      const e = err as { type?: string; length?: number } | undefined;
      next(e?.type === 'entity.too.large' ? tooLarge(e.length) : err);
    });
}
