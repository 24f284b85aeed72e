import { createServer, type RequestListener, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { stampAccepted } from './request-timing.js';
import { requestTurns } from './request-turns.js';

/** Options of {@link HttpServer}. */
export interface HttpServerOptions {
  host: string;
  /** 0 = any free port. */
  port: number;
  /** On close, connections still busy after this long are cut. Default 5000 ms. */
  closeGraceMs?: number;
  /**
   * Share the port with other processes (SO_REUSEPORT, Linux and some BSDs): several API processes on one
   * port, the kernel spreading connections between them. Default false.
   */
  reusePort?: boolean;
  /**
   * How long an idle keep-alive connection stays open, ms (advertised to clients as `Keep-Alive: timeout=`).
   * It must outlast the idle timeout of whatever reuses connections to this server (a reverse proxy or load
   * balancer, commonly 60 s), so that the client always gives up an idle connection first: a server that
   * closes first races a client reusing the connection, and that request fails with ECONNRESET (502 at a
   * proxy). Default 65000 ms.
   */
  keepAliveTimeoutMs?: number;
  /**
   * Requests started per turn of the event loop; more wait, in order, for the next turns, so that the replies
   * the started ones wait for are read between the others' starts (see requestTurns). 0 = no limit. Default 0.
   */
  requestsPerTurn?: number;
}

/** A node:http server with the one lifecycle shape: start() → its URL; close() idempotent. */
export class HttpServer {
  readonly server: Server;
  private readonly opts: Required<HttpServerOptions>;
  private starting: Promise<{ url: string; port: number }> | undefined;
  private closing: Promise<void> | undefined;

  constructor(handler: RequestListener, opts: HttpServerOptions) {
    this.opts = {
      closeGraceMs: 5000,
      reusePort: false,
      keepAliveTimeoutMs: 65_000,
      requestsPerTurn: 0,
      ...opts,
    };
    if (!(Number.isInteger(this.opts.keepAliveTimeoutMs) && this.opts.keepAliveTimeoutMs > 0))
      throw new TypeError(
        `HttpServer: option "keepAliveTimeoutMs" must be an integer > 0, got ${this.opts.keepAliveTimeoutMs}`,
      );
    this.server = createServer(requestTurns(handler, this.opts.requestsPerTurn));
    // When each connection was accepted (a burst of new connections waits in the kernel's accept queue: the
    // event loop accepts one connection per turn), for tracing: see request-timing.ts.
    this.server.on('connection', stampAccepted);
    // Slow or stuck clients must not hold sockets forever (slowloris); a request gets 60 s to arrive. These
    // time a request once its first byte has arrived; an idle keep-alive connection is timed by
    // keepAliveTimeout alone (the client closes it first: see keepAliveTimeoutMs).
    this.server.headersTimeout = 20_000;
    this.server.requestTimeout = 60_000;
    this.server.keepAliveTimeout = this.opts.keepAliveTimeoutMs;
  }

  /** Listens; resolves with the URL to reach it. Idempotent: every call returns the same promise. */
  start(): Promise<{ url: string; port: number }> {
    return (this.starting ??= new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      const listenOpts = { port: this.opts.port, host: this.opts.host, reusePort: this.opts.reusePort };
      this.server.listen(listenOpts, () => {
        this.server.off('error', onError);
        const port = (this.server.address() as AddressInfo).port;
        const host = this.opts.host === '0.0.0.0' || this.opts.host === '::' ? 'localhost' : this.opts.host;
        resolve({ url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, port });
      });
    }));
  }

  /** Stops accepting, lets in-flight requests finish for closeGraceMs, then cuts what is left. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      const timer = setTimeout(() => this.server.closeAllConnections(), this.opts.closeGraceMs);
      timer.unref();
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.server.closeIdleConnections();
    });
    return this.closing;
  }
}
