import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenLocal } from './listen';

/* The part of a fake search API that is the same for every provider: requests recorded, faults injected. */

/** One request a fake server received. */
export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
}

/** What a fake answers instead of its normal answer, for as many requests as it is set for. */
export type FakeFault =
  /** An error status with a body (default: the API's usual error body) and headers. */
  | { kind: 'status'; status: number; body?: string; headers?: Record<string, string> }
  /** The normal answer, after a delay. */
  | { kind: 'slow'; delayMs: number }
  /** 200 with a body that is not JSON. */
  | { kind: 'not-json' }
  /** The connection is dropped without an answer. */
  | { kind: 'reset' };

/** How a fake answers: normally, and with the faults whose body is the provider's own. */
export interface FakeAnswers {
  /** The normal answer of one request. */
  answer(req: IncomingMessage, res: ServerResponse, path: string, query: Record<string, string>): void;
  /** The answer of a `status` fault, in the provider's error shape. */
  status(res: ServerResponse, fault: Extract<FakeFault, { kind: 'status' }>): void;
  /** The answer of a `not-json` fault: a 200 whose body is not JSON. */
  notJson(res: ServerResponse): void;
}

/** A running fake: its base URL, the requests it got, its fault switch. */
export interface FaultServer {
  url: string;
  requests: RecordedRequest[];
  /** Answers the next `times` requests (default: all) with `fault` instead; undefined clears it. */
  setFault(fault: FakeFault | undefined, times?: number): void;
  close(): Promise<void>;
}

/** Starts a fake on 127.0.0.1 that records every request and answers it as `answers` say. */
export async function startFaultServer(answers: FakeAnswers): Promise<FaultServer> {
  const requests: RecordedRequest[] = [];
  let fault: FakeFault | undefined;
  let faultTimes = 0;
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://fake');
    const query = Object.fromEntries(u.searchParams.entries());
    requests.push({ method: req.method ?? 'GET', path: u.pathname, query, headers: req.headers });
    const f = faultTimes > 0 ? fault : undefined;
    if (f !== undefined) faultTimes--;
    if (f === undefined) return answers.answer(req, res, u.pathname, query);
    switch (f.kind) {
      case 'status':
        return answers.status(res, f);
      case 'slow': {
        const timer = setTimeout(() => answers.answer(req, res, u.pathname, query), f.delayMs);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      case 'not-json':
        return answers.notJson(res);
      case 'reset':
        return req.socket.destroy();
    }
  });
  const { url, close } = await listenLocal(server);
  return {
    url,
    requests,
    setFault(f, times = Number.POSITIVE_INFINITY) {
      fault = f;
      faultTimes = f === undefined ? 0 : times;
    },
    close,
  };
}
