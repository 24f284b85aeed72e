/**
 * Single flight of cache lookups within one process, by job id. A request whose job id matches a request
 * whose lookup is under way waits for that lookup instead of running its own, and one whose lookup missed
 * while that request's job is still being added or run skips the lookup: identical requests have identical
 * cache keys, so its own lookup would miss too (or find the answer the job is about to give), and its submit
 * joins the job in flight. A stampede of N identical requests then costs one lookup per process, not N:
 * each lookup is a Redis round trip plus the semantic cache's embedding, serial CPU in front of every
 * request's first token.
 */
export class LookupFlights<R> {
  private readonly flights = new Map<string, { lookup: Promise<R | undefined>; holders: number }>();

  /** Requests sharing a lookup now (for tests and metrics). */
  get size(): number {
    return this.flights.size;
  }

  /**
   * The cache's answer for `jobId` (the lookup of the request in flight with that id, or `lookup()` when
   * there is none), else the answer of `submit()`. The flight lasts until the last request holding it is
   * answered.
   */
  async run<T extends R>(
    jobId: string,
    lookup: () => Promise<R | undefined>,
    submit: () => Promise<T>,
  ): Promise<R> {
    let flight = this.flights.get(jobId);
    if (flight) flight.holders++;
    else {
      flight = { lookup: lookup(), holders: 1 };
      this.flights.set(jobId, flight);
    }
    try {
      const hit = await flight.lookup;
      if (hit !== undefined) return hit;
      return await submit();
    } finally {
      if (--flight.holders === 0 && this.flights.get(jobId) === flight) this.flights.delete(jobId);
    }
  }
}
