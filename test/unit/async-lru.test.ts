import { asyncLruCache } from '../../shared/cache/async-lru';
import { rejectionOf } from '../helpers/wait';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('asyncLruCache', () => {
  it('calls the function once per key and then answers from memory', async () => {
    let calls = 0;
    const f = asyncLruCache(async (x: number) => (calls++, x * 2), { maxsize: 10, ttl: 60 });
    expect(await f(2)).toBe(4);
    expect(await f(2)).toBe(4);
    expect(await f(3)).toBe(6);
    expect(calls).toBe(2);
    expect(f.stats()).toMatchObject({ hits: 1, misses: 2, shared: 0, size: 2 });
  });

  it('shares one in-flight call among concurrent callers with the same key', async () => {
    const d = deferred<string>();
    let calls = 0;
    const f = asyncLruCache(
      async (k: string) => {
        calls++;
        return d.promise.then((v) => `${k}:${v}`);
      },
      { maxsize: 10, ttl: 60 },
    );
    const all = Promise.all([f('a'), f('a'), f('a')]);
    d.resolve('x');
    expect(await all).toEqual(['a:x', 'a:x', 'a:x']);
    expect(calls).toBe(1);
    expect(f.stats().shared).toBe(2);
  });

  it('never caches a rejection: every waiter of the call gets it, the next call tries again', async () => {
    let calls = 0;
    const f = asyncLruCache(
      async () => {
        calls++;
        if (calls === 1) throw new Error('boom');
        return 'ok';
      },
      { maxsize: 10, ttl: 60 },
    );
    const [a, b] = await Promise.all([rejectionOf(f()), rejectionOf(f())]);
    expect((a as Error).message).toBe('boom');
    expect(b).toBe(a);
    expect(await f()).toBe('ok');
    expect(calls).toBe(2);
    expect(f.stats()).toMatchObject({ errors: 1, size: 1 });
  });

  it('expires entries after ttl and evicts the least recently used beyond maxsize', async () => {
    let calls = 0;
    const f = asyncLruCache(async (k: string) => (calls++, k), { maxsize: 2, ttl: 0.05 });
    await f('a');
    await f('b');
    await f('a'); // a is now the most recent
    await f('c'); // evicts b
    expect(f.stats().size).toBe(2);
    await f('a');
    expect(calls).toBe(3);
    await f('b');
    expect(calls).toBe(4);
    await new Promise((r) => setTimeout(r, 80));
    await f('a');
    expect(calls).toBe(5);
  });

  it('caches undefined results, and supports delete and clear', async () => {
    let calls = 0;
    const f = asyncLruCache(
      async (_k: string) => {
        calls++;
        return undefined;
      },
      { maxsize: 5, ttl: 60 },
    );
    await f('x');
    await f('x');
    expect(calls).toBe(1);
    expect(f.delete('x')).toBe(true);
    await f('x');
    expect(calls).toBe(2);
    f.clear();
    await f('x');
    expect(calls).toBe(3);
  });

  it('refuses bad options', () => {
    expect(() => asyncLruCache(async () => 1, { maxsize: 0, ttl: 1 })).toThrow(/maxsize/);
    expect(() => asyncLruCache(async () => 1, { maxsize: 1, ttl: -1 })).toThrow(/ttl/);
  });
});
