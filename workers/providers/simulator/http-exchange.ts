import { type IncomingMessage, type ServerResponse } from 'node:http';

/** One request and its response, as the simulator's handlers see them. */
export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** URL path without the query string. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Aborts when the client goes away before the answer is complete. */
  readonly signal: AbortSignal;
  /** performance.now() when the request arrived: where total_duration starts. */
  readonly receivedAt: number;
}

/** An error answer, thrown by handlers and sent as Ollama sends errors: `{"error": "..."}`. */
export class SimHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'SimHttpError';
  }
}

function writable(res: ServerResponse): boolean {
  return !res.writableEnded && !res.destroyed;
}

export function sendJson(ex: Exchange, status: number, body: unknown): void {
  if (!writable(ex.res)) return;
  const text = JSON.stringify(body);
  ex.res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  ex.res.end(text);
}

export function sendText(ex: Exchange, status: number, text: string): void {
  if (!writable(ex.res)) return;
  ex.res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  ex.res.end(text);
}

/**
 * Sends an Ollama error. Once a stream has started the status can no longer change, so (like Ollama) the
 * error goes out as a last NDJSON line.
 */
export function sendError(ex: Exchange, status: number, message: string): void {
  if (!writable(ex.res)) return;
  if (ex.res.headersSent) {
    ex.res.end(JSON.stringify({ error: message }) + '\n');
    return;
  }
  sendJson(ex, status, { error: message });
}

/**
 * Reads the body as a JSON object. Over `maxBytes` → 413 (the rest is drained so the connection stays
 * usable); empty → 400 "missing request body"; not JSON or not an object → 400.
 */
export function readJsonBody(ex: Exchange, maxBytes: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const declared = Number(ex.req.headers['content-length']);
    let tooLarge = Number.isFinite(declared) && declared > maxBytes;
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = (): void => reject(new SimHttpError(499, 'client closed the request'));
    ex.signal.addEventListener('abort', onAbort, { once: true });
    ex.req.on('data', (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > maxBytes) {
        tooLarge = true;
        chunks.length = 0;
      } else {
        chunks.push(chunk);
      }
    });
    ex.req.on('error', (err) => {
      ex.signal.removeEventListener('abort', onAbort);
      reject(err);
    });
    ex.req.on('end', () => {
      ex.signal.removeEventListener('abort', onAbort);
      if (tooLarge) {
        reject(new SimHttpError(413, `request body too large (limit ${maxBytes} bytes)`));
        return;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim().length === 0) {
        reject(new SimHttpError(400, 'missing request body'));
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        reject(new SimHttpError(400, `invalid JSON: ${err instanceof Error ? err.message : String(err)}`));
        return;
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        reject(new SimHttpError(400, 'invalid request body: expected a JSON object'));
        return;
      }
      resolve(parsed as Record<string, unknown>);
    });
  });
}
