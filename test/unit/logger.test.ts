import { Writable } from 'node:stream';
import { spawnSync } from 'node:child_process';
import {
  createLogger,
  LOG_LINE_LIMIT,
  LOG_STRING_LIMIT,
  LogSampler,
  routeConsoleToLogger,
  sampleHotPathLine,
  setHotPathLogSample,
} from '../../shared/logger';

describe('logger', () => {
  it("refuses a destination string other than 'batched' (pino would write to a file of that name)", () => {
    const bad = { destination: 'stdout' } as unknown as Parameters<typeof createLogger>[0];
    expect(() => createLogger(bad)).toThrow(
      /option "destination" must be a stream or 'batched', got 'stdout'/,
    );
    // The batching destination's earlier name still selects it.
    const old = { destination: 'async' } as unknown as Parameters<typeof createLogger>[0];
    expect(typeof createLogger(old).info).toBe('function');
  });

  it('redacts keys, passwords and Authorization headers wherever they appear', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const log = createLogger({ destination: sink });
    log.info(
      {
        req: { headers: { authorization: 'Bearer sk-live-123' } },
        apiKey: 'sk-live-456',
        redis: { password: 'hunter2' },
        queue: 'inference',
      },
      'x',
    );
    log
      .child({ jobId: 'i-1' })
      .info({ headers: { authorization: 'Basic abc' }, config: { apiKeys: ['k1', 'k2'] } }, 'y');
    // At any depth, in any case, and in a child's bindings (and its children's).
    log.info(
      { a: { b: { c: { apiKey: 'deep-key' } } }, hdrs: [{ 'X-Api-Key': 'xk-1', Cookie: 'sid=1' }] },
      'z',
    );
    log
      .child({ db: { password: 'pw-child' }, Token: 'tok-child' })
      .child({ tenantSecret: 'ts-grandchild' })
      .info({ adminKeys: ['ak-1'] }, 'w');
    const out = lines.join('');
    for (const secret of [
      'sk-live-123',
      'sk-live-456',
      'hunter2',
      'Basic abc',
      'k1',
      'deep-key',
      'xk-1',
      'sid=1',
      'pw-child',
      'tok-child',
      'ts-grandchild',
      'ak-1',
    ])
      expect(out).not.toContain(secret);
    expect(out).toContain('[redacted]');
    expect(out).toContain('"queue":"inference"');
    expect(out).toContain('"jobId":"i-1"');
  });
});

describe('logger bounds', () => {
  const capture = () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    return { lines, log: createLogger({ destination: sink }) };
  };

  it('drops the arguments of a failed Redis command and bounds every string, message and line', () => {
    const { lines, log } = capture();
    const payload = 'SECRET-PROMPT-'.repeat(3000); // 42 KB
    // What ioredis rejects with when Redis refuses a script for memory: its args hold the job data.
    const reply = Object.assign(new Error("OOM command not allowed when used memory > 'maxmemory'."), {
      name: 'ReplyError',
      command: { name: 'evalsha', args: ['sha', '8', payload] },
    });
    log.error({ err: reply, path: '/v1/inference' }, 'unhandled error');
    log.error(reply);
    log.warn({ data: { prompt: payload } }, payload);
    log.info({ many: Array.from({ length: 5000 }, (_, i) => ({ i, text: payload.slice(0, 1500) })) }, 'x');
    log.error({ err: new Error(payload) });
    expect(lines).toHaveLength(5);
    for (const l of lines) {
      expect(l.length).toBeLessThanOrEqual(LOG_LINE_LIMIT);
      expect(() => JSON.parse(l)).not.toThrow();
    }
    const first = JSON.parse(lines[0]!) as { err: { type: string; command: unknown; message: string } };
    expect(first.err).toMatchObject({ type: 'ReplyError', command: { name: 'evalsha' } });
    expect(lines[0]).not.toContain('SECRET-PROMPT');
    expect(lines[1]).not.toContain('SECRET-PROMPT');
    // A payload passed as a field or a message is cut to the string bound.
    expect(lines[2]!.length).toBeLessThan(3 * LOG_STRING_LIMIT);
    expect(lines[4]!.length).toBeLessThan(4 * LOG_STRING_LIMIT);
  });

  it('routes console output through the logger as JSON', () => {
    const { lines, log } = capture();
    const undo = routeConsoleToLogger(log);
    try {
      console.warn('IMPORTANT! Eviction policy is allkeys-lru. It should be "noeviction"');
      console.error(new Error('connect ECONNREFUSED 127.0.0.1:1'));
    } finally {
      undo();
    }
    expect(lines.map((l) => JSON.parse(l) as { level: number; msg: string })).toMatchObject([
      { level: 40, msg: 'IMPORTANT! Eviction policy is allkeys-lru. It should be "noeviction"' },
      { level: 50, msg: 'connect ECONNREFUSED 127.0.0.1:1' },
    ]);
  });
});

describe('hot-path log sampling', () => {
  afterEach(() => setHotPathLogSample(1));

  it('passes the given fraction of lines, evenly spread', () => {
    const count = (rate: number, n: number) => {
      const s = new LogSampler(rate);
      let taken = 0;
      for (let i = 0; i < n; i++) if (s.take()) taken++;
      return taken;
    };
    expect(count(1, 1000)).toBe(1000);
    expect(count(0, 1000)).toBe(0);
    expect(count(0.01, 1000)).toBe(10);
    expect(count(0.25, 1000)).toBe(250);
    const quarter = new LogSampler(0.25);
    expect([1, 2, 3, 4, 5, 6, 7, 8].map(() => quarter.take())).toEqual([
      false,
      false,
      false,
      true,
      false,
      false,
      false,
      true,
    ]);
    expect(() => new LogSampler(1.5)).toThrow(RangeError);
    expect(() => new LogSampler(Number.NaN)).toThrow(RangeError);
  });

  it('is set per process (CELL0_LOG_SAMPLE)', () => {
    setHotPathLogSample(0);
    expect([1, 2, 3].some(() => sampleHotPathLine())).toBe(false);
    setHotPathLogSample(0.5);
    expect([1, 2, 3, 4].filter(() => sampleHotPathLine())).toHaveLength(2);
  });

  it('the batched destination writes every line in order, and an error logged just before exit is not lost', () => {
    const script = [
      "const { createLogger } = require('./shared/logger');",
      "const log = createLogger({ destination: 'batched' });",
      "for (let i = 0; i < 200; i++) log.info({ i }, 'line');",
      "log.error({ code: 'X' }, 'the last word');",
      'process.exit(3);',
    ].join('\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
      cwd: `${__dirname}/../..`,
      encoding: 'utf8',
    });
    expect(r.status).toBe(3);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; level: number });
    expect(lines).toHaveLength(201);
    expect(lines[200]).toMatchObject({ msg: 'the last word', level: 50 });
  });
});
