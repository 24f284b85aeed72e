import { BatchQueueFullError, ProviderError } from '../../shared/errors';
import { AsyncBatchProcessor } from '../../shared/batch';
import { batchedEmbed } from '../../shared/cache/semantic/batched-embed';
import { EmbeddingBatcher, shareTokens } from '../../workers/embedding';
import { type EmbedResult } from '../../workers/providers/provider';
import { rejectionOf } from '../helpers/wait';

/** A backend that records its calls; a text containing BAD makes the whole call a 400, like a real server. */
function fakeBackend(opts: { badVectorFor?: string } = {}) {
  const calls: { model: string; input: string[] }[] = [];
  return {
    calls,
    name: 'fake',
    async embed(model: string, input: string[]): Promise<EmbedResult> {
      calls.push({ model, input });
      await Promise.resolve();
      if (input.some((t) => t.includes('BAD'))) throw new ProviderError('fake', 'input refused', 400, false);
      if (model === 'gone') throw new ProviderError('fake', 'model not found', 404, false);
      return {
        model,
        embeddings: input.map((t) => (t === opts.badVectorFor ? [Number.NaN] : [t.length, 1])),
        promptTokens: input.reduce((n, t) => n + t.length, 0),
      };
    },
  };
}

describe('EmbeddingBatcher', () => {
  it('makes one backend call per model for concurrent inputs, and gives each its own vector', async () => {
    const backend = fakeBackend();
    const b = new EmbeddingBatcher({ backend, servedBy: 'w1', maxWaitMs: 5 });
    const a = ['a', 'bb', 'ccc'].map((t) => b.embed('m1', t));
    const c = ['dddd', 'e'].map((t) => b.embed('m2', t));
    const ra = await Promise.all(a);
    const rc = await Promise.all(c);
    expect(backend.calls).toEqual([
      { model: 'm1', input: ['a', 'bb', 'ccc'] },
      { model: 'm2', input: ['dddd', 'e'] },
    ]);
    expect(ra.map((r) => r.embedding)).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
    ]);
    expect(ra[0]).toMatchObject({ model: 'm1', batchSize: 3, provider: 'fake', servedBy: 'w1' });
    expect(ra.reduce((n, r) => n + r.promptTokens, 0)).toBe(6);
    expect(rc.map((r) => r.embedding)).toEqual([
      [4, 1],
      [1, 1],
    ]);
    expect(b.stats()).toMatchObject({ batches: 2, items: 5, backendCalls: 2, splits: 0 });
    await b.close();
  });

  it('splits a refused call to fail only the input at fault', async () => {
    const backend = fakeBackend();
    const b = new EmbeddingBatcher({ backend, servedBy: 'w', maxWaitMs: 5 });
    const texts = ['t0', 't1', 'BAD2', 't3', 't4'];
    const results = await Promise.allSettled(texts.map((t) => b.embed('m', t)));
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
    ]);
    const err = (results[2] as PromiseRejectedResult).reason as ProviderError;
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.status).toBe(400);
    // 5 → [3, 2] → [2, 1] of the bad half → [1, 1]: the good inputs got their vectors.
    expect(b.stats().splits).toBeGreaterThanOrEqual(2);
    expect(backend.calls[0]!.input).toEqual(texts);
  });

  it('fails every input of a call that fails as a whole (not a bad input), without splitting', async () => {
    const backend = fakeBackend();
    const b = new EmbeddingBatcher({ backend, servedBy: 'w', maxWaitMs: 5 });
    const results = await Promise.allSettled(['x', 'y'].map((t) => b.embed('gone', t)));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    expect(backend.calls).toHaveLength(1);
    expect(b.stats().splits).toBe(0);
  });

  it('fails only the input whose vector is not valid', async () => {
    const b = new EmbeddingBatcher({ backend: fakeBackend({ badVectorFor: 'nan' }), servedBy: 'w' });
    const [ok, bad] = await Promise.allSettled([b.embed('m', 'fine'), b.embed('m', 'nan')]);
    expect(ok.status).toBe('fulfilled');
    expect(bad.status).toBe('rejected');
  });

  it('fails the call when the backend returns the wrong number of vectors', async () => {
    const backend = {
      name: 'short',
      embed: async (model: string): Promise<EmbedResult> => ({ model, embeddings: [[1]] }),
    };
    const b = new EmbeddingBatcher({ backend, servedBy: 'w' });
    const results = await Promise.allSettled([b.embed('m', 'a'), b.embed('m', 'b')]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });

  it('refuses inputs beyond its bound (backpressure) with BatchQueueFullError', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const backend = {
      name: 'slow',
      embed: async (model: string, input: string[]): Promise<EmbedResult> => {
        await gate;
        return { model, embeddings: input.map(() => [1]) };
      },
    };
    const b = new EmbeddingBatcher({ backend, servedBy: 'w', maxQueuedItems: 2, maxWaitMs: 0 });
    const first = [b.embed('m', 'a'), b.embed('m', 'b')];
    expect(await rejectionOf(b.embed('m', 'c'))).toBeInstanceOf(BatchQueueFullError);
    release();
    expect(await Promise.all(first)).toHaveLength(2);
    expect(b.stats().refused).toBe(1);
  });

  it('holds a batch open while ready jobs are being taken, then sends it', async () => {
    const backend = fakeBackend();
    let ready = 3;
    const b = new EmbeddingBatcher({
      backend,
      servedBy: 'w',
      maxWaitMs: 5,
      capacity: 100,
      readyJobs: async () => ready,
    });
    const first = b.embed('m', 'a');
    // The others arrive one look after another, as a worker fetching them one at a time would hand them over.
    const rest: Promise<unknown>[] = [];
    for (const t of ['b', 'c', 'd']) {
      await new Promise((r) => setTimeout(r, 7));
      ready--;
      rest.push(b.embed('m', t));
    }
    await Promise.all([first, ...rest]);
    expect(backend.calls).toEqual([{ model: 'm', input: ['a', 'b', 'c', 'd'] }]);
  });

  it('shares a batch token count by length, adding up to the total', () => {
    expect(shareTokens(['aa', 'aaaa', 'aa'], 8)).toEqual([2, 4, 2]);
    const s = shareTokens(['a', 'bb', 'ccc'], 10);
    expect(s.reduce((x, y) => x + y, 0)).toBe(10);
    expect(shareTokens(['abcdefgh', 'x'], undefined)).toEqual([2, 1]);
    expect(shareTokens(['', ''], 3).reduce((x, y) => x + y, 0)).toBe(3);
  });
});

describe('AsyncBatchProcessor holdOpen', () => {
  it('keeps a partition open while holdOpen says so, and sends it when it says no or throws', async () => {
    const sizes: number[] = [];
    let looks = 0;
    const p = new AsyncBatchProcessor<number, number>({
      handler: async (items) => {
        sizes.push(items.length);
        return items;
      },
      maxWaitMs: 2,
      holdOpen: (_key, _size, waitedMs) => {
        looks++;
        if (looks > 3) throw new Error('no more');
        return waitedMs < 1000;
      },
    });
    const a = p.add(1);
    await new Promise((r) => setTimeout(r, 5));
    const b = p.add(2);
    expect(await Promise.all([a, b])).toEqual([1, 2]);
    expect(sizes).toEqual([2]);
    expect(looks).toBe(4);
  });
});

describe('batchedEmbed (the semantic cache embedders)', () => {
  it('turns concurrent embed calls into one provider call, each caller getting its own vectors', async () => {
    const calls: string[][] = [];
    const fn = batchedEmbed(async (texts) => {
      calls.push(texts);
      return texts.map((t) => [t.length]);
    });
    const [x, y] = await Promise.all([fn(['a', 'bb']), fn(['ccc'])]);
    expect(x).toEqual([[1], [2]]);
    expect(y).toEqual([[3]]);
    expect(calls).toEqual([['a', 'bb', 'ccc']]);
    expect(fn.stats()).toMatchObject({ batches: 1, items: 3 });
  });

  it('fails every caller of a provider call that returns the wrong number of vectors', async () => {
    const fn = batchedEmbed(async () => [[1]]);
    const r = await Promise.allSettled([fn(['a']), fn(['b'])]);
    expect(r.map((s) => s.status)).toEqual(['rejected', 'rejected']);
  });
});
