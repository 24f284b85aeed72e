import { ClosedError } from '../errors.js';
import { HttpPoolRegistry, originOf, type HttpPool, type HttpPoolOptions } from './pool.js';

/**
 * A backend's base URL bound to the {@link HttpPool} of its origin: the pool comes from the registry a
 * client is given (shared with the other clients of the worker), else from a registry of the endpoint's
 * own, closed by close(). Holds the client's closed state, so calls after close() are refused.
 */
export class HttpEndpoint {
  /** The pool of the base URL's origin. */
  readonly pool: HttpPool;
  /** The base URL's path prefix (a reverse proxy's mount point, an API version) without trailing slash. */
  readonly basePath: string;
  private readonly ownRegistry: HttpPoolRegistry | undefined;
  private closing: Promise<void> | undefined;

  /**
   * `poolOptions` apply when this creates the origin's pool; an existing pool of `pools` keeps its own.
   * Throws ConfigError when `baseUrl` is not an http(s) URL.
   */
  constructor(baseUrl: string, pools?: HttpPoolRegistry, poolOptions?: HttpPoolOptions) {
    const origin = originOf(baseUrl);
    this.basePath = new URL(baseUrl).pathname.replace(/\/+$/, '');
    const registry = pools ?? new HttpPoolRegistry();
    this.ownRegistry = pools === undefined ? registry : undefined;
    this.pool = registry.get(origin, poolOptions);
  }

  /** The server's origin (scheme://host:port). */
  get origin(): string {
    return this.pool.origin;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Throws ClosedError naming `what` (the client) once close() was called. */
  assertOpen(what: string): void {
    if (this.closing !== undefined) throw new ClosedError(what);
  }

  /**
   * Marks the endpoint closed. Closes the pool only when the endpoint made its own registry (once calls in
   * flight have finished); a registry passed in belongs to whoever passed it. Idempotent: every call
   * returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.ownRegistry?.close() ?? Promise.resolve();
    return this.closing;
  }
}

/** `text` as a URL when it is an http:// or https:// one, else undefined. */
export function parseHttpUrl(text: unknown): URL | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}
