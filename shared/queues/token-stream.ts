/*
 * Token streams: how a running inference job's text travels from the worker to the callers streaming it.
 *
 * A caller that wants a job's tokens marks the job (`wanted`) before it adds or joins it, and counts itself
 * in `readers` (once per producer process). A worker checks the mark when an attempt starts; when it is set,
 * it appends the attempt's text to a Redis Stream per job as the backend produces it: a `start` entry, text
 * entries (several tokens each when they arrive faster than one round trip), then an `end` entry with the
 * finish reason and usage, written before the job completes. The stream is bounded (MAXLEN) and expires,
 * so an abandoned one costs nothing for long. Readers read it from the start, so one that joins late still
 * receives every token. When the last reader goes away before the end, it sets `cancel`; the worker sees it
 * with its next write (or when the attempt starts) and stops the job, deleting the mark and the stream in one
 * step, so a caller that asks again never reads the stopped attempt's text. A reader's marks delete `cancel`
 * (an attempt that has not seen it goes on), and it reads the stream only once its marks are in Redis.
 *
 * In `cell0 start` a worker hands its writes to the readers of its own process (LocalStreamReaders), and a
 * job's first attempt stays out of Redis while they are its only readers: a reading process that is not the
 * job's first reader adds a remote-reader entry to the stream with its marks, and the writer, told of it by
 * its process's hub, writes the attempt from its first entry and goes on writing (see TokenStreamWriter).
 */

import { queueKey } from './names.js';

/** The Redis keys of one job's token stream. All share the queue prefix's {hash tag}. */
export interface TokenStreamKeys {
  /** The Redis Stream of entries. */
  stream: string;
  /** Set by a caller that will read the stream; the worker streams only when it is there. */
  wanted: string;
  /** Producer processes reading the stream now. */
  readers: string;
  /** Set when the last reader left before the end: the worker stops the job. */
  cancel: string;
  /**
   * The queue's marks gate (one key per queue, not per job): set, for at least as long as the mark lives,
   * with every `wanted` or `cancel` mark. While it is absent no job of the queue has a mark, and a worker
   * reading marks behind its fetches (active-marks.lua) reads nothing per job.
   */
  gate: string;
}

/** Keys of job `jobId`'s token stream in queue `queue` under `prefix`. */
export function tokenStreamKeys(prefix: string, queue: string, jobId: string): TokenStreamKeys {
  const base = `${queueKey(prefix, queue)}:${jobId}`;
  return {
    stream: `${base}:cell0-tokens`,
    wanted: `${base}:cell0-tokens-wanted`,
    readers: `${base}:cell0-tokens-readers`,
    cancel: `${base}:cell0-cancel`,
    gate: marksGateKey(prefix, queue),
  };
}

/** The marks gate of queue `queue` under `prefix` (see {@link TokenStreamKeys.gate}). */
export function marksGateKey(prefix: string, queue: string): string {
  return `${queueKey(prefix, queue)}:cell0-marks`;
}

/** Usage as the end entry carries it. */
export interface StreamUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

/** One entry of a token stream. */
export type TokenStreamEntry =
  /** An attempt begins; text entries after it belong to that attempt. */
  | { kind: 'start'; attempt: number }
  /** Text in order; `seq` counts text entries from 0 within the attempt (a gap means trimmed entries). */
  | { kind: 'text'; seq: number; text: string }
  | { kind: 'end'; finishReason: string; model: string; usage: StreamUsage };

/**
 * The fields of a remote-reader entry: added to a job's stream by the marks of a reading process that is
 * not the first (shared/lua/token-stream-open.lua), it tells a writer that keeps the stream out of Redis
 * while its own process's readers are the only ones that another process reads it. Not a
 * {@link TokenStreamEntry}: readers skip it ({@link decodeEntry} gives undefined).
 */
export function isRemoteReaderEntry(fields: readonly string[]): boolean {
  return fields.length === 2 && fields[0] === 'k' && fields[1] === 'r';
}

/** The field/value list of an entry, for XADD. */
export function encodeEntry(e: TokenStreamEntry): string[] {
  switch (e.kind) {
    case 'start':
      return ['k', 's', 'a', String(e.attempt)];
    case 'text':
      return ['k', 't', 'n', String(e.seq), 't', e.text];
    case 'end':
      return ['k', 'e', 'f', e.finishReason, 'm', e.model, 'u', JSON.stringify(e.usage)];
  }
}

/** An entry from XREAD/XRANGE's field list; undefined for anything not written by {@link encodeEntry}. */
export function decodeEntry(fields: readonly string[]): TokenStreamEntry | undefined {
  // A lookup per field rather than a Map per entry: an entry has two to four fields, and every reader
  // process decodes every entry of every stream it reads.
  const get = (name: string): string | undefined => {
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
    return undefined;
  };
  switch (get('k')) {
    case 's':
      return { kind: 'start', attempt: Number(get('a') ?? 0) };
    case 't': {
      const seq = Number(get('n'));
      const text = get('t');
      return Number.isInteger(seq) && text !== undefined ? { kind: 'text', seq, text } : undefined;
    }
    case 'e': {
      let usage: StreamUsage = { promptTokens: 0, completionTokens: 0, totalTokens: 0 };
      try {
        usage = { ...usage, ...(JSON.parse(get('u') ?? '{}') as Partial<StreamUsage>) };
      } catch {
        // A malformed usage is reported as zeros rather than losing the end of the stream.
      }
      return { kind: 'end', finishReason: get('f') ?? 'stop', model: get('m') ?? '', usage };
    }
    default:
      return undefined;
  }
}

/** Compares two stream entry ids ("ms-seq"): negative when a < b, 0 when equal, positive when a > b. */
export function compareStreamIds(a: string, b: string): number {
  if (a === b) return 0;
  const ad = a.indexOf('-');
  const bd = b.indexOf('-');
  const am = Number(ad < 0 ? a : a.slice(0, ad));
  const bm = Number(bd < 0 ? b : b.slice(0, bd));
  if (am !== bm) return am - bm;
  return (ad < 0 ? 0 : Number(a.slice(ad + 1))) - (bd < 0 ? 0 : Number(b.slice(bd + 1)));
}

/**
 * The token stream readers of a process, as the token stream writers of a worker in the same process see
 * them (`cell0 start`: the API's TokenStreamHub). A writer hands each write's entries to them as it sends the
 * write, so a reader here has them without waiting for Redis and its blocking read; the entries still go to
 * the job's Redis Stream as before, for the readers of other processes, late joiners and replays.
 */
export interface LocalStreamReaders {
  /**
   * Entries about to be written to job `jobId`'s stream `stream` by `writer` (one write, in order): handed
   * to this process's readers of that stream now when they have every entry before them: `after` is the id
   * of the writer's last entry stored in the stream, or null when this write empties the stream first (a
   * new attempt, whose start entry voids what came before). Returns what to tell once Redis has answered,
   * or undefined when no reader here took them (they then come from Redis, as before).
   *
   * `onRemote`, from a writer that keeps its writes out of Redis while the readers here are the stream's
   * only readers: called once should the hub find a reader of the stream in another process (the
   * remote-reader entry its marks add, token-stream-open.lua); the writer then writes the stream to Redis
   * from its first entry. Until then the hub keeps reading the stream from Redis for that entry alone.
   */
  writing(
    jobId: string,
    stream: string,
    writer: object,
    entries: readonly TokenStreamEntry[],
    after: string | null,
    onRemote?: () => void,
  ): LocalStreamWrite | undefined;
  /**
   * `writer`'s attempt is over and nothing of its is in flight: this process's readers it fed read the
   * stream from Redis again, after the writer's last stored entry (a retry elsewhere, say).
   */
  released(jobId: string, writer: object): void;
}

/** What a {@link LocalStreamReaders} is told of one write it took, once Redis has answered. */
export interface LocalStreamWrite {
  /** A reader in another process is known to read the stream: it must be written to Redis. */
  readonly remote: boolean;
  /** Stored: `lastId` is the id of the write's last entry (undefined for a write without entries). */
  stored(lastId: string | undefined): void;
  /**
   * Not stored: `maybe` false when Redis refused it (a cancel honoured), true when it is not known (the
   * call failed): the readers then skip the write's entries should they find them in the stream.
   */
  notStored(maybe: boolean): void;
}

/** True when two entries are the same (a copy of a handed-over entry read back from Redis). */
export function sameEntry(a: TokenStreamEntry, b: TokenStreamEntry): boolean {
  switch (a.kind) {
    case 'start':
      return b.kind === 'start' && b.attempt === a.attempt;
    case 'text':
      return b.kind === 'text' && b.seq === a.seq && b.text === a.text;
    case 'end':
      return b.kind === 'end' && b.finishReason === a.finishReason && b.model === a.model;
  }
}
