import { LookupFlights } from '../../producers/lookup-flights';

/** A promise settled from outside. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('LookupFlights', () => {
  it('runs one lookup for identical requests in flight; on a miss each request submits', async () => {
    const flights = new LookupFlights<string>();
    const lookup = deferred<string | undefined>();
    let lookups = 0;
    const job = deferred<string>();
    let submits = 0;
    const call = () =>
      flights.run(
        'job-a',
        () => {
          lookups++;
          return lookup.promise;
        },
        () => {
          submits++;
          return job.promise;
        },
      );
    const first = [call(), call(), call()];
    expect(lookups).toBe(1);
    lookup.resolve(undefined);
    await new Promise((r) => setImmediate(r));
    expect(submits).toBe(3);
    // The first lookup missed and its job is still running: a request arriving now skips the lookup.
    const late = call();
    await new Promise((r) => setImmediate(r));
    expect(lookups).toBe(1);
    expect(submits).toBe(4);
    job.resolve('answer');
    expect(await Promise.all([...first, late])).toEqual(['answer', 'answer', 'answer', 'answer']);
    expect(flights.size).toBe(0);
    // Once every request of the flight is answered, the next one looks up again (the answer is cached now).
    expect(
      await flights.run(
        'job-a',
        () => Promise.resolve('cached'),
        () => Promise.resolve('job'),
      ),
    ).toBe('cached');
  });

  it('gives every request of the flight the hit, without a submit', async () => {
    const flights = new LookupFlights<string>();
    const submit = jest.fn(() => Promise.resolve('job'));
    const lookup = jest.fn(() => Promise.resolve<string | undefined>('hit'));
    const got = await Promise.all([flights.run('j', lookup, submit), flights.run('j', lookup, submit)]);
    expect(got).toEqual(['hit', 'hit']);
    expect(lookup).toHaveBeenCalledTimes(1);
    expect(submit).not.toHaveBeenCalled();
  });

  it('keeps different job ids apart', async () => {
    const flights = new LookupFlights<string>();
    const lookup = jest.fn(() => Promise.resolve<string | undefined>(undefined));
    await Promise.all([
      flights.run('a', lookup, () => Promise.resolve('a')),
      flights.run('b', lookup, () => Promise.resolve('b')),
    ]);
    expect(lookup).toHaveBeenCalledTimes(2);
  });

  it('passes a failed lookup to every request of the flight and forgets it', async () => {
    const flights = new LookupFlights<string>();
    const lookup = deferred<string | undefined>();
    const submit = jest.fn(() => Promise.resolve('job'));
    const both = [
      flights.run('j', () => lookup.promise, submit),
      flights.run('j', () => lookup.promise, submit),
    ];
    lookup.reject(new Error('redis down'));
    for (const p of both) await expect(p).rejects.toThrow('redis down');
    expect(submit).not.toHaveBeenCalled();
    expect(flights.size).toBe(0);
  });
});
