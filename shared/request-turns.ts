import { type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import { stampArrived } from './request-timing.js';

/**
 * Starts at most `perTurn` HTTP requests per turn of the event loop; requests beyond that wait, in arrival
 * order, for the next turns (0: no limit, `handler` itself is returned).
 *
 * Why: a burst of requests arrives in one poll phase, and Node runs every ready socket's callback in that
 * phase before it looks at a socket again. A request's own next step (its cache lookup's reply, its job's
 * add, the in-process worker's fetch of the job, the backend's answer) is a reply on a socket too, so without
 * a limit it waits for the setup CPU of every request that arrived with it (100 requests: 20–50 ms here)
 * before each of its hops. Started a few per turn, the earlier requests' replies are read between the later
 * requests' starts: the first ones reach their backend while the rest are being set up, and with identical
 * requests (one generation for all) the backend's time to first token overlaps the others' setup. The CPU
 * spent is the same; only the order changes.
 *
 * A request whose connection closed while it waited is dropped (nothing could answer it). The wait is not in
 * the request's own timings (logging, metrics), which start when the handler is called; each request is
 * stamped on arrival (see request-timing.ts), so that tracing can show it.
 */
export function requestTurns(handler: RequestListener, perTurn: number): RequestListener {
  if (!(Number.isInteger(perTurn) && perTurn >= 0))
    throw new TypeError(`requestTurns: perTurn must be an integer >= 0, got ${perTurn}`);
  if (perTurn === 0) return handler;
  const waiting: [IncomingMessage, ServerResponse][] = [];
  /** Requests started since the last turn began. */
  let started = 0;
  let scheduled = false;
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    // An immediate scheduled from within the check phase runs in the next turn, after that turn's poll phase.
    setImmediate(turn);
  };
  const turn = () => {
    scheduled = false;
    started = 0;
    while (started < perTurn && waiting.length > 0) {
      const [req, res] = waiting.shift()!;
      if (req.socket.destroyed) continue;
      started++;
      schedule();
      handler(req, res);
    }
    if (waiting.length > 0) schedule();
  };
  return (req, res) => {
    stampArrived(req);
    if (waiting.length === 0 && started < perTurn) {
      started++;
      // The count starts over at the next turn.
      schedule();
      handler(req, res);
      return;
    }
    waiting.push([req, res]);
    schedule();
  };
}
