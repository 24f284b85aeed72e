import { sleep } from '../../shared/sleep';

/** The rejection of a promise that must reject; fails the test if it resolves. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

/** Polls `cond` every 10 ms until it holds; throws after `timeoutMs` saying what was awaited. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what?: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what ?? cond.toString()}`);
    await sleep(10);
  }
}
