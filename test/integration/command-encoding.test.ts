import { Command, type Redis } from 'ioredis';
import {
  encodeBufferCommandsInOneWrite,
  encodeMixed,
  ioredisToWritable,
} from '../../shared/redis/command-encoding';
import { closeRedis, waitUntilReady } from '../../shared/redis/connection';
import { testRedisConnection, uniquePrefix } from '../helpers/redis';

/*
 * encodeBufferCommandsInOneWrite: a command with a Buffer argument is encoded byte for byte as ioredis
 * encodes it, with one string write into the output per run of text (not three native calls per argument).
 */

/** A command of ioredis's, its arguments made ready to encode as ioredis makes them before sending. */
function command(name: string, args: (string | Buffer | number)[]): Command {
  const c = new Command(name, args);
  (c as unknown as { stringifyArguments(): void }).stringifyArguments();
  return c;
}

/** The encoding of `c` by ioredis's own encoder. */
function ioredisEncoding(c: Command): string | Buffer {
  return ioredisToWritable().call(c as never);
}

const texts = [
  '',
  'x',
  '{cell0}:inference:wait',
  'ünïcödé ✓ 漢字',
  'emoji 😀 pair',
  'lone \ud83d surrogate',
  '\r\n$3\r\n',
  'y'.repeat(300),
];
const buffers = [
  Buffer.alloc(0),
  Buffer.from([0]),
  Buffer.from([0x85, 0xa5, 0xff, 0x80, 0xc3, 0x28, 0x0d, 0x0a]),
  Buffer.from('plain text in a buffer'),
  Buffer.alloc(1000, 0xfe),
];

/** A deterministic mix of texts, numbers and buffers, `n` long. */
function mix(seed: number, n: number): (string | Buffer | number)[] {
  let s = seed;
  const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
  return Array.from({ length: n }, () => {
    const r = next() % 10;
    if (r < 5) return texts[next() % texts.length]!;
    if (r < 6) return (next() % 100000) - 500;
    return buffers[next() % buffers.length]!;
  });
}

describe('command encoding', () => {
  beforeAll(() => encodeBufferCommandsInOneWrite());

  it('encodes commands with Buffer arguments byte for byte as ioredis does', () => {
    const cases: (string | Buffer | number)[][] = [
      [Buffer.from('only')],
      [Buffer.alloc(0)],
      ['a', Buffer.from('b')],
      [Buffer.from('a'), 'b', Buffer.from('c')],
      [Buffer.from('a'), Buffer.from('b'), Buffer.alloc(0), Buffer.from('ü')],
    ];
    for (let seed = 1; seed <= 200; seed++) cases.push(mix(seed, 1 + (seed % 60)));
    let withBuffers = 0;
    for (const args of cases) {
      for (const name of ['evalsha', 'set', 'cell0FinishBatch:6.7.0']) {
        const c = command(name, args);
        const ours = c.toWritable(undefined as never);
        const theirs = ioredisEncoding(c);
        if ((c as unknown as { bufferMode?: boolean }).bufferMode) {
          withBuffers++;
          expect(Buffer.isBuffer(ours)).toBe(true);
        }
        expect(Buffer.from(ours as never).equals(Buffer.from(theirs as never))).toBe(true);
      }
    }
    expect(withBuffers).toBeGreaterThan(500);
  });

  it('leaves commands without a Buffer, and arguments it does not know, to ioredis', () => {
    const plain = command('set', ['k', 'ünï', 5]);
    expect(plain.toWritable(undefined as never)).toBe(ioredisEncoding(plain));
    expect(typeof plain.toWritable(undefined as never)).toBe('string');
    expect(encodeMixed('set', [Buffer.from('k'), new Uint8Array([1, 2])])).toBeUndefined();
  });

  it('writes one run of text per Buffer into the output (ioredis: a write per piece of every argument)', () => {
    // A batched finish of 8 jobs: 14 keys, then per job 8 texts and one Buffer (its packed options).
    const args: (string | Buffer)[] = Array.from({ length: 14 }, (_, i) => `{cell0}:inference:k${i}`);
    for (let j = 0; j < 8; j++)
      args.push(`job-${j}`, '1796466908152', 'returnvalue', '{"text":"ü"}', 'completed', '1', 'p', '');
    for (let j = 0; j < 8; j++) args.push(Buffer.from([0x85, j]));
    const c = command('evalsha', args);
    const write = jest.spyOn(Buffer.prototype, 'write');
    try {
      c.toWritable(undefined as never);
      const ours = write.mock.calls.length;
      write.mockClear();
      ioredisEncoding(c);
      const theirs = write.mock.calls.length;
      expect(ours).toBeLessThanOrEqual(8 + 1);
      expect(theirs).toBeGreaterThanOrEqual(args.length);
    } finally {
      write.mockRestore();
    }
  });

  it('Redis gets the same values: Buffer arguments of a script call and of a plain command', async () => {
    const conn = testRedisConnection('encoding');
    try {
      await waitUntilReady(conn, 5000);
      const redis = conn as Redis;
      const key = `${uniquePrefix('encoding')}:k`;
      const binary = Buffer.from([0x85, 0xa5, 0xff, 0x00, 0x0d, 0x0a, 0x80]);
      await redis.set(key, binary);
      expect((await redis.getBuffer(key))!.equals(binary)).toBe(true);
      const echoed = (await (
        redis as unknown as { evalBuffer: (...a: unknown[]) => Promise<unknown> }
      ).evalBuffer(
        'return {ARGV[1], ARGV[2], ARGV[3], ARGV[4], KEYS[1]}',
        1,
        key,
        'ünï ✓',
        binary,
        Buffer.alloc(0),
        '😀',
      )) as Buffer[];
      expect(echoed.map((b) => b.toString('hex'))).toEqual(
        [Buffer.from('ünï ✓'), binary, Buffer.alloc(0), Buffer.from('😀'), Buffer.from(key)].map((b) =>
          b.toString('hex'),
        ),
      );
      await redis.del(key);
    } finally {
      await closeRedis(conn);
    }
  });
});
