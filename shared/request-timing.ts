import { type IncomingMessage } from 'node:http';
import { type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/*
 * When a request's connection was accepted and when Node had parsed its head, as `performance.now()`
 * readings: what comes before a request's handler runs (its connection waiting in the kernel's accept queue,
 * the read and parse of its head, its wait for a request turn: see requestTurns), which the request's own
 * timings and its server span, taken once the handler runs, do not see. Tracing puts them on the request's
 * span as events (`connection accepted`, `request arrived`: docs/observability.md).
 */

const ACCEPTED = Symbol('cell0.acceptedAt');
const ARRIVED = Symbol('cell0.arrivedAt');

type Stamped<T> = T & { [ACCEPTED]?: number; [ARRIVED]?: number };

/** Marks `socket` as accepted now (a server's 'connection' listener). */
export function stampAccepted(socket: Socket): void {
  (socket as Stamped<Socket>)[ACCEPTED] = performance.now();
}

/** Marks `req` as parsed now (its head read: the server's 'request' event). */
export function stampArrived(req: IncomingMessage): void {
  (req as Stamped<IncomingMessage>)[ARRIVED] = performance.now();
}

/** When the request's connection was accepted (undefined: not stamped, e.g. a server of another kind). */
export function acceptedAt(req: IncomingMessage): number | undefined {
  return (req.socket as Stamped<Socket> | null)?.[ACCEPTED];
}

/** When the request's head had been parsed (undefined: not stamped). */
export function arrivedAt(req: IncomingMessage): number | undefined {
  return (req as Stamped<IncomingMessage>)[ARRIVED];
}
