import { ProviderError, ProviderUnavailableError } from '../../shared/errors';
import { inferenceRequestSchema } from '../../shared/queues/schemas';
import { BackendGuard } from '../../workers/providers/backend-guard';
import { ConcurrencyLimiter, GradientLimit } from '../../workers/providers/adaptive-limit';
import { NoopInferenceBackend } from '../../workers/providers/noop-provider';
import { type InferenceBackend } from '../../workers/providers/provider';
import { InferenceRouter } from '../../workers/providers/routing';
import { rejectionOf } from '../helpers/wait';

function backend(name: string): InferenceBackend & { calls: string[] } {
  const noop = new NoopInferenceBackend();
  const calls: string[] = [];
  return {
    name,
    calls,
    run: async (job, ctx) => {
      calls.push(job.model);
      return { ...(await noop.run(job)), provider: name, text: ctx.signal.aborted ? 'aborted' : name };
    },
    close: async () => undefined,
  };
}

const job = (model: string) => inferenceRequestSchema.parse({ model, prompt: 'hi' });
const ctx = { signal: new AbortController().signal };

describe('InferenceRouter', () => {
  it('sends each model to the first route that matches, in order', async () => {
    const a = backend('a');
    const b = backend('b');
    const router = new InferenceRouter([
      { pattern: 'qwen2.5:*', backend: a },
      { pattern: 'qwen*', backend: b },
      { pattern: '*', backend: a },
    ]);
    expect((await router.run(job('qwen2.5:7b'), ctx)).provider).toBe('a');
    expect((await router.run(job('qwen3:8b'), ctx)).provider).toBe('b');
    expect((await router.run(job('llama3.2'), ctx)).provider).toBe('a');
    expect(a.calls).toEqual(['qwen2.5:7b', 'llama3.2']);
    expect(router.backends()).toHaveLength(2);
  });

  it('fails a model no route matches with PROVIDER_UNAVAILABLE, naming the model', async () => {
    const router = new InferenceRouter([{ pattern: 'gpt-*', backend: backend('a') }]);
    const err = await rejectionOf(Promise.resolve().then(() => router.run(job('llama3.2'), ctx)));
    expect(err).toBeInstanceOf(ProviderUnavailableError);
    expect((err as Error).message).toContain('"llama3.2"');
  });

  it('runs routed calls through the route guard', async () => {
    const guard = new BackendGuard({ name: 'g', retry: { maxRetries: 0 } });
    const router = new InferenceRouter([{ pattern: '*', backend: backend('a'), guard }]);
    await router.run(job('m'), ctx);
    expect(guard.metrics().breaker.calls).toBe(1);
    expect(guard.metrics().breaker.successes).toBe(1);
    guard.close();
  });

  it("reports a streamed call's first token to its permit (the limit's slow start), once per call", async () => {
    const algorithm = new GradientLimit({ initial: 1, max: 64 });
    const seen: { latency: number; inFlight: number }[] = [];
    const firstOutput = algorithm.firstOutput.bind(algorithm);
    algorithm.firstOutput = (s) => (seen.push(s), firstOutput(s));
    const guard = new BackendGuard({
      name: 'g',
      retry: { maxRetries: 0 },
      concurrency: new ConcurrencyLimiter({ name: 'g', algorithm }),
    });
    const streaming: InferenceBackend = {
      name: 's',
      run: async (j, c) => {
        for (const t of ['a', 'b', 'c']) c.onToken?.(t);
        return { ...(await new NoopInferenceBackend().run(j)), provider: 's' };
      },
      close: async () => undefined,
    };
    const router = new InferenceRouter([{ pattern: '*', backend: streaming, guard }]);
    const tokens: string[] = [];
    await router.run(job('m'), { ...ctx, onToken: (t) => tokens.push(t) });
    expect(tokens).toEqual(['a', 'b', 'c']);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.inFlight).toBe(1);
    // Let through alone, its prompt first token raised the limit to 2 x 1.
    expect(guard.concurrency!.limit).toBe(2);
    // An unstreamed call reports none.
    await router.run(job('m'), ctx);
    expect(seen).toHaveLength(1);
    guard.close();
  });

  it("samples the limit with the time the backend reports for a call's successful try, when it reports one", async () => {
    let now = 0;
    const algorithm = new GradientLimit({ initial: 4, max: 64 });
    const samples: number[] = [];
    const update = algorithm.update.bind(algorithm);
    algorithm.update = (s) => (samples.push(s.rtt), update(s));
    const guard = new BackendGuard({
      name: 'g',
      retry: { maxRetries: 1, baseDelayMs: 1, maxDelayMs: 1 },
      concurrency: new ConcurrencyLimiter({ name: 'g', algorithm, now: () => now }),
    });
    /** Each try takes 80 ms here; `reports[i]` is what try i says the backend spent (undefined: nothing). */
    let reports: (number | undefined)[] = [];
    let fail = 0;
    let tries = 0;
    const timed: InferenceBackend = {
      name: 't',
      run: async (j, c) => {
        const reported = reports[tries++];
        now += 80;
        if (reported !== undefined) c.onBackendTime?.(reported);
        if (fail-- > 0) throw new ProviderError('t', '/x: 500', 500, true, { kind: 'http' });
        const r = await new NoopInferenceBackend().run(j);
        return { ...r, provider: 't', usage: { promptTokens: 1, completionTokens: 8, totalTokens: 9 } };
      },
      close: async () => undefined,
    };
    const router = new InferenceRouter([{ pattern: '*', backend: timed, guard }]);
    const passedOn: number[] = [];
    const withReport = { ...ctx, onBackendTime: (ms: number) => passedOn.push(ms) };

    // The backend says 8 ms for 8 tokens: the sample is 1 ms per token, not the 10 seen here.
    reports = [8];
    await router.run(job('m'), withReport);
    // A backend that reports nothing: this process's time, 80 ms for 8 tokens.
    reports = [];
    tries = 0;
    await router.run(job('m'), withReport);
    // A failed try's report is not the retry's: the retry reports nothing, so its own time is the sample.
    reports = [4];
    tries = 0;
    fail = 1;
    await router.run(job('m'), withReport);
    expect(samples).toEqual([1, 10, 10]);
    // The caller's own onBackendTime still hears every report.
    expect(passedOn).toEqual([8, 4]);
    guard.close();
  });
});
