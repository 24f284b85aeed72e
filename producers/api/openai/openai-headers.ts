import { type Response } from 'express';

/** Response headers saying where an answer came from. */
export const CELL0_CACHE_HEADER = 'X-Cell0-Cache';
export const CELL0_COALESCED_HEADER = 'X-Cell0-Coalesced';
export const CELL0_JOB_HEADER = 'X-Cell0-Job-Id';

/**
 * Sets the answer's provenance headers: `X-Cell0-Job-Id`, `X-Cell0-Cache` exact | semantic | miss, and on a
 * miss `X-Cell0-Coalesced` joined (another identical request's generation, running or finished within the
 * result TTL) | new (this request's own).
 */
export function provenanceHeaders(
  res: Response,
  jobId: string,
  cached: 'exact' | 'semantic' | undefined,
  joined: boolean | undefined,
): void {
  if (res.headersSent) return;
  res.setHeader(CELL0_JOB_HEADER, jobId);
  res.setHeader(CELL0_CACHE_HEADER, cached ?? 'miss');
  if (cached === undefined && joined !== undefined)
    res.setHeader(CELL0_COALESCED_HEADER, joined ? 'joined' : 'new');
}
