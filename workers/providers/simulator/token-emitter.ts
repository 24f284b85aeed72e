import { performance } from 'node:perf_hooks';
import { type SimModel } from './catalog.js';
import { type GpuSlot } from './gpu-model.js';
import { type Exchange, sendJson } from './http-exchange.js';
import { fixedPace, gpuPace, type Pace } from './pace.js';
import { nsOf, type SimContext } from './sim-context.js';
import { contextIds } from './text.js';

/** Streams wake at most this often and send every token due since the last wake. */
const TICK_MS = 15;
/** With the GPU profile, a generation re-reads its shared speed at least this often. */
const GPU_RECHECK_MS = 100;

export type GenerationKind = 'generate' | 'chat';

/** A generation request after validation. */
export interface GenerationPlan {
  kind: GenerationKind;
  /** The model name as the request spelled it (echoed back, as Ollama does). */
  requestedName: string;
  model: SimModel;
  stream: boolean;
  keepAliveMs: number;
  tokens: string[];
  doneReason: string;
  promptText: string;
  promptEvalCount: number;
  priorContext: number[];
  numCtx: number | undefined;
}

/** When the tokens of `plan` are due, counted from the end of the model load. */
function paceOf(ctx: SimContext, plan: GenerationPlan, loadEnd: number, slot: GpuSlot | undefined): Pace {
  if (slot === undefined || ctx.gpu === undefined)
    return fixedPace(loadEnd + ctx.opts.ttftMs, ctx.opts.tokensPerSec);
  return gpuPace(loadEnd + ctx.opts.ttftMs + ctx.gpu.prefillMs(plan.promptEvalCount), slot);
}

/**
 * Produces the tokens on schedule: the first at load end + ttftMs, then one every 1/tokensPerSec. A
 * stream wakes at most every TICK_MS and sends all tokens due, so high rates cost no timer per token.
 * Resolves when the answer is complete or the client has gone.
 */
export function emitTokens(
  ctx: SimContext,
  ex: Exchange,
  plan: GenerationPlan,
  t0: number,
  loadMs: number,
  slot?: GpuSlot,
): Promise<void> {
  const loadEnd = performance.now();
  const pace = paceOf(ctx, plan, loadEnd, slot);
  const firstDue = pace.firstDue;
  const total = plan.tokens.length;
  const dueAt = (now: number): number => Math.min(total, pace.due(now));

  return new Promise<void>((resolve) => {
    let sent = 0;
    let firstSentAt: number | undefined;
    let cancelTimer: () => void = () => undefined;

    const onAbort = (): void => {
      cancelTimer();
      // A non-streamed answer was being generated all along; count what would have been produced.
      if (!plan.stream) ctx.counters.tokensGenerated += dueAt(performance.now());
      resolve();
    };
    ex.signal.addEventListener('abort', onAbort, { once: true });

    const finish = (now: number): void => {
      ex.signal.removeEventListener('abort', onAbort);
      const first = plan.stream ? (firstSentAt ?? now) : firstDue;
      const interval = pace.msPerToken();
      const text = plan.tokens.join('');
      const stats = {
        done: true,
        done_reason: plan.doneReason,
        ...(plan.kind === 'generate'
          ? { context: [...plan.priorContext, ...contextIds(plan.promptText), ...contextIds(text)] }
          : {}),
        total_duration: nsOf(now - t0),
        load_duration: nsOf(loadMs),
        prompt_eval_count: plan.promptEvalCount,
        // The first token's own compute time is part of eval, as in Ollama's accounting.
        prompt_eval_duration: nsOf(first - loadEnd - interval),
        eval_count: total,
        eval_duration: nsOf(now - first + interval),
      };
      const head = { model: plan.requestedName, created_at: new Date().toISOString() };
      if (plan.stream) {
        const last =
          plan.kind === 'generate' ? { response: '' } : { message: { role: 'assistant', content: '' } };
        ex.res.end(JSON.stringify({ ...head, ...last, ...stats }) + '\n');
      } else {
        ctx.counters.tokensGenerated += total;
        const whole =
          plan.kind === 'generate' ? { response: text } : { message: { role: 'assistant', content: text } };
        sendJson(ex, 200, { ...head, ...whole, ...stats });
      }
      resolve();
    };

    const step = (): void => {
      if (ex.signal.aborted) return;
      const now = performance.now();
      const due = dueAt(now);
      if (plan.stream && due > sent) {
        if (!ex.res.headersSent) ex.res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        const createdAt = new Date().toISOString();
        let lines = '';
        for (let i = sent; i < due; i++) {
          const token = plan.tokens[i] ?? '';
          const piece =
            plan.kind === 'generate'
              ? { response: token }
              : { message: { role: 'assistant', content: token } };
          lines +=
            JSON.stringify({ model: plan.requestedName, created_at: createdAt, ...piece, done: false }) +
            '\n';
        }
        ex.res.write(lines);
        ctx.counters.tokensGenerated += due - sent;
        sent = due;
        firstSentAt ??= now;
      }
      if (due >= total) {
        finish(now);
        return;
      }
      let wait: number;
      if (!plan.stream) wait = pace.timeOf(total, now) - now;
      else if (sent === 0) wait = firstDue - now;
      else wait = Math.max(TICK_MS, pace.timeOf(sent + 1, now) - now);
      // A shared speed changes as other requests come and go: look again at least this often.
      if (slot !== undefined) wait = Math.min(wait, GPU_RECHECK_MS);
      cancelTimer = ctx.setTimer(step, Math.max(0, wait));
    };
    step();
  });
}
