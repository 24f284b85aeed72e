/*
 * bench:request-log — the CPU one request costs in the API's request-logging middleware (pino-http, as
 * createApi configures it), against a pass-through middleware that only calls next(), same process.
 *
 * Each request is a real node:http IncomingMessage / ServerResponse pair (no socket traffic) run through the
 * middleware and finished as node:http finishes a response ('finish', then 'close'); one request in 100
 * answers 500 (an error line, always written), half carry their own X-Request-Id, the rest get a UUID.
 * Lines go to a discarding stream through cell0's logger (redaction, bounds). Sides alternate A B / B A for
 * P pairs of N requests; prints the median CPU µs per request of each and their difference (the logging).
 *
 *   npm run bench:request-log -- [--requests N] [--pairs P] [--level info|debug] [--sample R] [--json]
 * --level: the logger's level (default info: success lines not written); --sample: CELL0_LOG_SAMPLE (1).
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import os from 'node:os';
import { Writable } from 'node:stream';
import { benchArgs } from './args.js';
import { requestLogger } from '../producers/api/request-logger.js';
import { createLogger, setHotPathLogSample } from '../shared/logger.js';
import { median } from './e2e-common.js';

type Middleware = (req: IncomingMessage, res: ServerResponse, next: () => void) => void;

const opts = benchArgs(
  process.argv.slice(2),
  { requests: 40_000, pairs: 7 },
  'npm run bench:request-log -- [--requests N] [--pairs P] [--level info|debug] [--sample R] [--json]',
  ['level', 'sample'],
);
const level = opts.text.level ?? 'info';
const sample = Number(opts.text.sample ?? '1');
if (!['info', 'debug'].includes(level) || !(sample >= 0 && sample <= 1)) {
  console.error('--level must be info or debug, --sample a number in [0, 1]');
  process.exit(2);
}
setHotPathLogSample(sample);

let written = 0;
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    written += chunk.length;
    cb();
  },
});
const logging: Middleware = requestLogger(createLogger({ destination: sink, level }));
const passThrough: Middleware = (_req, _res, next) => next();
const socket = new Socket();

/** CPU µs per request of `n` requests through `mw`. */
function run(mw: Middleware, n: number): number {
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const req = new IncomingMessage(socket);
    req.method = 'POST';
    req.url = '/v1/inference?trace=1';
    req.headers = { 'content-type': 'application/json' };
    if (i % 2 === 1) req.headers['x-request-id'] = `req-${i}`;
    const res = new ServerResponse(req);
    mw(req, res, () => undefined);
    res.statusCode = i % 100 === 0 ? 500 : 200;
    res.emit('finish');
    res.emit('close');
  }
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / n;
}

run(logging, 5000);
run(passThrough, 5000);
const a: number[] = [];
const b: number[] = [];
for (let p = 0; p < opts.pairs; p++) {
  if (p % 2 === 0) {
    a.push(run(passThrough, opts.requests));
    b.push(run(logging, opts.requests));
  } else {
    b.push(run(logging, opts.requests));
    a.push(run(passThrough, opts.requests));
  }
}
const result = {
  date: new Date().toISOString(),
  load: os.loadavg().map((x) => +x.toFixed(2)),
  level,
  sample,
  requests: opts.requests,
  pairs: opts.pairs,
  passThroughUs: +median(a).toFixed(3),
  loggingUs: +median(b).toFixed(3),
  requestLoggingUs: +median(b.map((x, i) => x - a[i]!)).toFixed(3),
  bytesWritten: written,
};
if (opts.json) console.log(JSON.stringify(result));
else
  console.log(
    `bench:request-log — ${result.date}, load ${result.load.join(' ')}, level ${level}, sample ${sample}, ` +
      `${opts.pairs} pairs of ${opts.requests} requests\n` +
      `  CPU µs/request: pass-through ${result.passThroughUs}, request logging ${result.loggingUs}; ` +
      `the logging's own cost ${result.requestLoggingUs} µs/request (median of the pair differences)`,
  );
