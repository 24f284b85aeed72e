import { type Request, type Response } from 'express';
import { ErrorCode } from '../../../shared/errors.js';
import { type Logger } from '../../../shared/logger.js';
import { spanEvents } from '../../../shared/tracing/tracing.js';
import { QueueName } from '../../../shared/queues/names.js';
import { type InferenceResult } from '../../../shared/queues/results.js';
import { type InferenceJobData } from '../../../shared/queues/schemas.js';
import { type TokenStreamEntry } from '../../../shared/queues/token-stream.js';
import { type Cell0Client } from '../../cell0-client.js';
import { type SubmitResult } from '../../job-submitter.js';
import { type TokenStreamReader } from '../../token-stream-hub.js';
import { failedJobError, openAIError, type OpenAIErrorBody } from './openai-errors.js';
import { CELL0_JOB_HEADER, provenanceHeaders } from './openai-headers.js';
import { type OpenAIRequestInfo } from './openai-request.js';
import { answerMeta, type OpenAIKind } from './openai-shapes.js';
import { SseAnswer } from './sse-answer.js';

/** What {@link streamAnswer} needs. */
export interface StreamContext {
  req: Request;
  res: Response;
  client: Cell0Client;
  kind: OpenAIKind;
  info: OpenAIRequestInfo;
  data: InferenceJobData;
  /** Longest wait for the job between two signs of life, ms. */
  maxWaitMs: number;
  log: Logger;
}

type Outcome = SubmitResult<InferenceResult> | { state: 'missing'; queue: QueueName; jobId: string };

/**
 * Answers a `stream: true` request. The job's token stream is opened (marking the job as streamed) before
 * the job is added or joined, so a worker writes its text from the first token; entries are forwarded as
 * they arrive. When the job finishes, whatever the stream holds beyond what was read is read at once, and
 * text the stream did not carry (a cached answer, a job that finished before this request, a job another
 * request started without streaming) is sent from the job's result: every caller receives the whole text.
 * A client that goes away closes its reader, which cancels the job when no other caller reads it.
 */
export async function streamAnswer(ctx: StreamContext): Promise<void> {
  const { res, client, info } = ctx;
  let reader: TokenStreamReader | undefined;
  let readerOpened: (() => void) | undefined;
  const opened = new Promise<void>((r) => (readerOpened = r));
  let joined: boolean | undefined;
  const ac = new AbortController();
  let gone = false;
  res.on('close', () => {
    if (res.writableEnded) return;
    gone = true;
    ac.abort();
    void reader?.close();
  });
  const jobId = client.submitter.jobIdFor(QueueName.INFERENCE, ctx.data);
  const meta = answerMeta(ctx.kind, jobId, info.model);
  const sse = new SseAnswer(res, meta, info.includeUsage);
  // Tracing on: the stages of the first token are events of the request's span (see docs/benchmarks.md).
  const mark = spanEvents();

  let outcome: Promise<Outcome> = client.submitInference(ctx.data, {
    waitMs: ctx.maxWaitMs,
    signal: ac.signal,
    jobId,
    // The marks go out on the submitter's connection just before the add, which runs after them: no
    // round trip of their own (see TokenStreamHub.openNow); on a Redis Cluster they are awaited.
    beforeAdd: async (id) => {
      const hub = client.tokenStreams();
      reader = hub.marksPrecedeAdds ? hub.openNow(id) : await hub.open(id);
      mark?.('stream reader open');
      if (gone) await reader.close();
      readerOpened?.();
    },
    onJoined: (j) => (joined = j),
  });
  try {
    // A cache hit (or an error before the job is added) settles the submission without a reader.
    const first = await Promise.race([outcome.then((r) => ({ r })), opened.then(() => undefined)]);
    if (first) return await finishFromOutcome(ctx, sse, first.r, joined);
    const r = reader!;
    const state: ReadState = { expectSeq: 0, usable: true, replay: undefined };
    let reruns = 0;
    /** Writes what the reader holds now (in one write); says when the answer is over. */
    const drain = (): 'end' | 'mismatch' | undefined => {
      for (let e = r.take(); e !== undefined; e = r.take()) {
        if (!state.usable) continue;
        if (!sse.begun) provenanceHeaders(res, jobId, undefined, joined);
        const before = sse.sent.length;
        const step = applyEntry(sse, e, state);
        if (mark && before === 0 && sse.sent.length > 0) {
          mark('first token received', r.firstTextAt);
          mark('first token sent');
        }
        if (step === 'end' && e.kind === 'end') {
          sse.finish(e.finishReason, e.usage);
          return 'end';
        }
        if (step === 'mismatch') {
          sse.fail(
            openAIError(
              502,
              'the backend call was retried (or the job run again) and its text differs from the text sent so far: send the request again',
              { code: ErrorCode.PROVIDER_ERROR },
            ),
          );
          return 'mismatch';
        }
      }
      return undefined;
    };
    /** Forwards what the reader holds now; true once the answer is over. */
    const forward = async (): Promise<boolean> => {
      let over: 'end' | 'mismatch' | undefined;
      sse.batch(() => (over = drain()));
      if (over === undefined) return false;
      await r.close({ cancel: false });
      return true;
    };
    for (;;) {
      if (await forward()) return;
      if (gone || r.closed) return;
      const o = await Promise.race([r.wait().then(() => undefined), outcome]);
      if (gone) return;
      if (o === undefined) continue;
      if (o.state === 'pending' && !o.backendUnavailable) {
        // Still running after the wait: keep reading while the caller is there, and wait again.
        outcome = client.submitter.waitFor<InferenceResult>(QueueName.INFERENCE, jobId, {
          waitMs: ctx.maxWaitMs,
          signal: ac.signal,
        });
        continue;
      }
      if (o.state === 'completed') {
        // Everything the worker wrote is in the stream by now: take the rest of it before the result.
        await r.catchUp().catch(() => undefined);
        if (await forward()) return;
      }
      if (o.state === 'failed' && o.code === ErrorCode.JOB_CANCELLED && reruns < 2) {
        // Cancelled while this caller still reads it: for a reader that left just before this caller's
        // marks withdrew the cancel (it joined the job as it stopped), or with a readers count gone wrong
        // (its marks expired under a very long stream). The caller is still here and wants its answer: the
        // job is run again (a failed job is re-run) and read on. The stopped attempt took its text with it;
        // what this caller already received must be where the re-run's text begins (see applyEntry; the
        // result's check in finishFromOutcome when the re-run is not streamed), or it gets an error event,
        // never a spliced answer.
        reruns++;
        // What the stopped attempt delivered before it stopped is this caller's text so far.
        if (await forward()) return;
        if (sse.sent.length > 0) state.replay ??= '';
        outcome = client.submitInference(ctx.data, { waitMs: ctx.maxWaitMs, signal: ac.signal, jobId });
        continue;
      }
      await r.close({ cancel: false });
      return await finishFromOutcome(ctx, sse, o, joined);
    }
  } catch (err) {
    await reader?.close({ cancel: false });
    if (!sse.begun) throw err;
    ctx.log.warn({ err, jobId }, 'stream failed after it began');
    sse.fail(openAIError(500, 'internal error', { code: ErrorCode.INTERNAL }));
  }
}

/** Where a reader is in the stream. */
export interface ReadState {
  /** The seq of the next text entry. */
  expectSeq: number;
  /** False after a gap: the rest comes from the job's result. */
  usable: boolean;
  /**
   * After a restart (a retried backend call, a re-run job) that began when text had been sent: the new
   * attempt's text so far, which must reproduce what was sent before anything more goes out. Undefined
   * while the attempt's text is exactly what was sent (the normal case: no copy, no comparison).
   */
  replay: string | undefined;
}

/** What one entry does to the answer (and to the reader's place). Exported for its unit test. */
export function applyEntry(sse: SseAnswer, e: TokenStreamEntry, state: ReadState): 'ok' | 'end' | 'mismatch' {
  switch (e.kind) {
    case 'start':
      // A new attempt: its text starts over, and must reproduce what was sent before it continues it.
      state.expectSeq = 0;
      if (sse.sent.length > 0) state.replay = '';
      return 'ok';
    case 'text': {
      // Entries trimmed away (MAXLEN) before this reader got them: the result fills in at the end.
      if (e.seq !== state.expectSeq) {
        state.usable = false;
        return 'ok';
      }
      state.expectSeq = e.seq + 1;
      if (state.replay === undefined) {
        sse.text(e.text);
        return 'ok';
      }
      const replay = state.replay + e.text;
      const sent = sse.sent;
      if (replay.length <= sent.length) {
        if (!sent.startsWith(replay)) return 'mismatch';
        state.replay = replay;
        return 'ok';
      }
      if (!replay.startsWith(sent)) return 'mismatch';
      // Caught up: what was sent is reproduced; the rest goes out, and the attempt is in step again.
      state.replay = undefined;
      sse.text(replay.slice(sent.length));
      return 'ok';
    }
    case 'end':
      // An attempt that ended without reproducing all that was sent cannot finish this answer.
      return state.replay === undefined || state.replay === sse.sent ? 'end' : 'mismatch';
  }
}

/** Ends the answer from the job's outcome: the text not sent yet, or the error. */
async function finishFromOutcome(
  ctx: StreamContext,
  sse: SseAnswer,
  o: Outcome,
  joined: boolean | undefined,
): Promise<void> {
  const { res } = ctx;
  if (o.state === 'completed') {
    provenanceHeaders(res, o.jobId, o.cached, o.joined ?? joined);
    const text = o.result.text;
    if (!text.startsWith(sse.sent) && sse.sent.length > 0) {
      sse.fail(
        openAIError(
          502,
          'the text streamed so far does not match the finished answer: send the request again',
          { code: ErrorCode.PROVIDER_ERROR },
        ),
      );
      return;
    }
    // The rest of the text and the end in one write (a cached answer: the whole answer in one).
    sse.batch(() => {
      if (text.startsWith(sse.sent)) sse.text(text.slice(sse.sent.length));
      sse.finish(o.result.doneReason, o.result.usage);
    });
    return;
  }
  let err: { status: number; body: OpenAIErrorBody; retryAfter?: number };
  if (o.state === 'failed') err = failedJobError(o.code, o.message);
  else if (o.state === 'missing')
    err = {
      status: 502,
      body: openAIError(502, `job ${o.jobId} is gone`, { code: ErrorCode.JOB_NOT_FOUND }),
    };
  else if (o.backendUnavailable)
    err = {
      status: 503,
      body: openAIError(
        503,
        `the backend (${o.backendUnavailable.backends.join(', ')}) is down on every worker; job ${o.jobId} is queued`,
        { code: ErrorCode.BACKEND_UNAVAILABLE },
      ),
      retryAfter: Math.max(1, Math.ceil(o.backendUnavailable.retryAfterMs / 1000)),
    };
  else
    err = {
      status: 504,
      body: openAIError(504, `no answer for job ${o.jobId}`, { code: ErrorCode.WAIT_TIMEOUT }),
    };
  if (sse.begun) return sse.fail(err.body);
  if (!sse.open) return;
  res.setHeader(CELL0_JOB_HEADER, o.jobId);
  if (err.retryAfter !== undefined) res.setHeader('Retry-After', String(err.retryAfter));
  res.status(err.status).json(err.body);
}
