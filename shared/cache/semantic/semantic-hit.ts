import { type Logger } from '../../logger.js';
import { type CacheMatchConfidence } from './confidence.js';
import { type SemanticHit } from './semantic-cache-options.js';
import { type SemanticCounters } from './semantic-counters.js';

/**
 * The answer of a stored row (value JSON, prompt, stored at), counted as a hit at its level; undefined
 * (counted as an error, logged) when the value is not readable JSON.
 */
export function hitFrom<T>(
  row: [string, string, string],
  entryId: string,
  confidence: CacheMatchConfidence,
  similarity: number,
  counters: SemanticCounters,
  log: Logger,
): SemanticHit<T> | undefined {
  let value: T;
  try {
    value = JSON.parse(row[0]) as T;
  } catch (err) {
    counters.errors++;
    log.warn({ err, entryId }, 'semantic cache: unreadable entry');
    return undefined;
  }
  counters.hit(confidence);
  return {
    value,
    confidence,
    similarity: Math.round(similarity * 1e4) / 1e4,
    entryId,
    prompt: row[1],
    storedAt: Number(row[2]),
  };
}

/**
 * True when two normalised prompts differ, but only in white space (what the regex `\s` matches): a layout
 * the exact key keeps. Compared in place, skipping white space on both sides: no copy of either prompt
 * without it (the lookup asks this for each candidate).
 */
export function layoutOnlyDifference(a: string, b: string): boolean {
  if (a === b) return false;
  let i = 0;
  let j = 0;
  for (;;) {
    while (i < a.length && isSpace(a.charCodeAt(i))) i++;
    while (j < b.length && isSpace(b.charCodeAt(j))) j++;
    if (i === a.length || j === b.length) return i === a.length && j === b.length;
    if (a.charCodeAt(i) !== b.charCodeAt(j)) return false;
    i++;
    j++;
  }
}

/** The UTF-16 code units that the regex `\s` matches (all of them in the BMP, none a surrogate). */
function isSpace(c: number): boolean {
  if (c < 128) return c === 32 || (c >= 9 && c <= 13);
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}
