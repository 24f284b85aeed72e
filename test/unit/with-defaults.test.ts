import { Breaker } from '../../shared/circuit-breaker';
import { withDefaults } from '../../shared/with-defaults';
import { LoadShedder } from '../../producers/load-shedder';

describe('withDefaults', () => {
  const DEFAULTS = { a: 1, b: 'x', c: true };

  test('given values override defaults; undefined ones keep the default', () => {
    expect(withDefaults<typeof DEFAULTS>(DEFAULTS, { a: 2, b: undefined })).toEqual({
      a: 2,
      b: 'x',
      c: true,
    });
  });

  test('falsy values that are not undefined still override (0, "", false, null)', () => {
    const d = { n: 5, s: 'y', f: true, o: {} as object | null };
    expect(withDefaults<typeof d>(d, { n: 0, s: '', f: false, o: null })).toEqual({
      n: 0,
      s: '',
      f: false,
      o: null,
    });
  });

  test('no options at all gives a copy of the defaults; neither input is mutated', () => {
    const given = { a: 3 };
    const merged = withDefaults<typeof DEFAULTS>(DEFAULTS, given);
    const none = withDefaults<typeof DEFAULTS>(DEFAULTS, undefined);
    expect(none).toEqual(DEFAULTS);
    expect(none).not.toBe(DEFAULTS);
    merged.a = 9;
    expect(DEFAULTS.a).toBe(1);
    expect(given).toEqual({ a: 3 });
  });
});

/** Classes that used to spread their options straight over the defaults: undefined replaced the default. */
describe('options given as undefined keep the default', () => {
  test('Breaker', () => {
    const b = new Breaker({ name: 'x', failureThreshold: undefined, resetTimeoutMs: undefined });
    try {
      expect(b.state).toBe('closed');
    } finally {
      b.close();
    }
  });

  test('LoadShedder', () => {
    expect(
      () =>
        new LoadShedder({
          queues: () => ({}),
          fleet: async () => [],
          maxQueueDepth: undefined,
          retryAfterMs: undefined,
          refreshMs: undefined,
        }),
    ).not.toThrow();
  });

  test('bad options still fail in the constructor, naming the option', () => {
    expect(() => new Breaker({ name: 'x', failureThreshold: 0 })).toThrow(/"failureThreshold"/);
    expect(() => new LoadShedder({ queues: () => ({}), fleet: async () => [], retryAfterMs: -1 })).toThrow(
      /"retryAfterMs"/,
    );
  });
});
