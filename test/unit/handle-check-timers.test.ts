import { TimerTracker } from '../helpers/handle-check-environment';

/**
 * The test environment names the setter of a timer a test file left pending (CI once failed on "Timeout ×1"
 * with nothing to tell whose). Checked on a global object of its own, so the file's own timers are not in it.
 */
describe('the handle check’s timer tracker', () => {
  const fresh = () => {
    const g: Record<string, unknown> = { setTimeout, setInterval, clearTimeout, clearInterval };
    const tracker = new TimerTracker();
    tracker.install(g);
    type SetT = (fn: () => void, ms: number) => NodeJS.Timeout;
    type ClearT = (t: NodeJS.Timeout) => void;
    return {
      tracker,
      setT: g.setTimeout as SetT,
      setI: g.setInterval as SetT,
      clearT: g.clearTimeout as ClearT,
      clearI: g.clearInterval as ClearT,
      g,
    };
  };

  function leaveATimer(setT: (fn: () => void, ms: number) => NodeJS.Timeout): NodeJS.Timeout {
    return setT(() => undefined, 60_000);
  }

  it('names a pending timer with its delay and the function that set it', () => {
    const { tracker, setT, clearT } = fresh();
    const t = leaveATimer(setT);
    const leaked = tracker.describeLeaked();
    expect(leaked).toHaveLength(1);
    clearT(t);
    // The first frame is the call in leaveATimer (V8 names it after the callee), the next its caller.
    expect(leaked[0]).toMatch(
      /^60000 ms timeout set at \S+ \(\S*handle-check-timers\.test\.ts:\d+:\d+\) < \S*leaveATimer /,
    );
    expect(tracker.describeLeaked()).toEqual([]);
  });

  it('forgets a timeout once it fired, and does not count an unref()’d one', async () => {
    const { tracker, setT } = fresh();
    await new Promise<void>((resolve) => setT(resolve, 1));
    expect(tracker.describeLeaked()).toEqual([]);
    const t = setT(() => undefined, 60_000).unref();
    expect(tracker.describeLeaked()).toEqual([]);
    clearTimeout(t); // stopped outside the tracker: seen as destroyed
    t.ref();
    expect(tracker.describeLeaked()).toEqual([]);
  });

  it('keeps an interval until it is cleared', async () => {
    const { tracker, setI, clearI } = fresh();
    let ticks = 0;
    let tick!: () => void;
    const twice = new Promise<void>((r) => (tick = r));
    const i = setI(() => {
      if (++ticks === 2) tick();
    }, 1);
    await twice;
    expect(tracker.describeLeaked()).toEqual([expect.stringMatching(/^1 ms interval set at /)]);
    clearI(i);
    expect(tracker.describeLeaked()).toEqual([]);
  });

  it('puts the real functions back, and util.promisify(setTimeout) still works while installed', async () => {
    const { tracker, g } = fresh();
    const { promisify } = await import('node:util');
    const wait = promisify(g.setTimeout as typeof setTimeout);
    await expect(wait(1, 'v')).resolves.toBe('v');
    tracker.uninstall(g);
    expect(g.setTimeout).toBe(setTimeout);
    expect(g.clearInterval).toBe(clearInterval);
  });
});
