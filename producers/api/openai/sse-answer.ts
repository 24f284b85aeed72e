import { type Response } from 'express';
import { type StreamUsage } from '../../../shared/queues/token-stream.js';
import { type OpenAIErrorBody } from './openai-errors.js';
import {
  chunkBody,
  chunkTemplates,
  finishReasonOf,
  usageChunkBody,
  type AnswerMeta,
  type ChunkTemplates,
} from './openai-shapes.js';

/**
 * Writes the SSE answer of one streaming request. Nothing is sent before the first token (or the finished
 * answer), so an error found until then — a bad model, an overloaded fleet — is an ordinary HTTP error the
 * SDKs raise as their typed errors; after it, an error is a last `data: {"error": …}` event.
 *
 * Response writes are few: the status and headers go out with the first event (no separate flush), the
 * events made inside one batch() are joined into one write, and the last events go out with the end. (Node
 * already sends the writes of one tick in one system call; what this saves is the work per write: one
 * chunk of the chunked encoding, one buffer, one pass through the stream machinery each.)
 */
export class SseAnswer {
  private started = false;
  /** Text sent so far. */
  sent = '';
  /** Shared with the other answers of the same job (see chunkTemplates). */
  private readonly chunks: ChunkTemplates;

  constructor(
    private readonly res: Response,
    private readonly meta: AnswerMeta,
    private readonly includeUsage: boolean,
  ) {
    this.chunks = chunkTemplates(meta, includeUsage);
  }

  get open(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  get begun(): boolean {
    return this.started;
  }

  /**
   * The status and headers, which go out with the first event (one write for the headers, the role chunk
   * and the first text): returns what must precede that event.
   */
  private begin(): string {
    if (this.started) return '';
    this.started = true;
    this.res.status(200);
    this.res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    this.res.setHeader('Cache-Control', 'no-cache');
    this.res.setHeader('Connection', 'keep-alive');
    this.res.setHeader('X-Accel-Buffering', 'no');
    return this.chunks.role;
  }

  /** Events held back while a batch runs, written together at its end (one write). */
  private held: string | undefined;
  private ending = false;

  /** Writes `s` (or holds it while a batch runs); `end` ends the response after it. */
  private out(s: string, end = false): void {
    if (!this.open) return;
    if (this.held !== undefined) {
      this.held += s;
      this.ending ||= end;
    } else if (end) this.res.end(s);
    else {
      this.res.write(s);
      // Out now, not at the next tick: Node corks a response's socket on a write until the next tick, and
      // when one hub wake-up delivers a job's text to many readers (identical requests joined to one job),
      // all their writes are made in one run of promise callbacks; with the cork, no reader's bytes left
      // before the last reader's had been made, so every reader waited for all of them. The socket's cork,
      // not the response's: res.uncork() without a res.cork() would leave the response corked for good.
      this.res.socket?.uncork();
    }
  }

  text(t: string): void {
    if (t.length === 0) return;
    const head = this.begin();
    this.sent += t;
    const event = this.chunks.text(t);
    this.out(head.length > 0 ? head + event : event);
  }

  /** Writes the events `f` makes in one write. */
  batch(f: () => void): void {
    if (this.held !== undefined) return f();
    this.held = '';
    try {
      f();
    } finally {
      const s = this.held;
      this.held = undefined;
      if (s.length > 0 || this.ending) this.out(s, this.ending);
    }
  }

  finish(doneReason: string | undefined, usage: StreamUsage): void {
    let s = this.begin();
    s += `data: ${JSON.stringify(chunkBody(this.meta, { finish: finishReasonOf(doneReason) }, this.includeUsage))}\n\n`;
    if (this.includeUsage) s += `data: ${JSON.stringify(usageChunkBody(this.meta, usage))}\n\n`;
    this.out(`${s}data: [DONE]\n\n`, true);
  }

  /** An error after the stream began: one error event, then the end. */
  fail(body: OpenAIErrorBody): void {
    this.out(`data: ${JSON.stringify(body)}\n\n`, true);
  }
}
