import { Writable } from 'node:stream';
import { createLogger } from '../../shared/logger';

describe('logger', () => {
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
    const out = lines.join('');
    for (const secret of ['sk-live-123', 'sk-live-456', 'hunter2', 'Basic abc', 'k1'])
      expect(out).not.toContain(secret);
    expect(out).toContain('[redacted]');
    expect(out).toContain('"queue":"inference"');
    expect(out).toContain('"jobId":"i-1"');
  });
});
