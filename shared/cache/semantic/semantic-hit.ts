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

/** True when two normalised prompts differ, but only in white space: a layout the exact key keeps. */
export function layoutOnlyDifference(a: string, b: string): boolean {
  return a !== b && a.replace(/\s+/g, '') === b.replace(/\s+/g, '');
}
