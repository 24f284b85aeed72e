import { type Command } from 'ioredis';
import {
  CacheMatchConfidence,
  SemanticCache,
  type SemanticHit,
  type SemanticScope,
} from '../../shared/cache/semantic';
import { type RedisConnection } from '../../shared/redis/cluster';
import { type RedisClient } from '../../shared/redis/redis-client';
import { closeTestClients, onCluster, openTestClients, uniquePrefix } from '../helpers/redis';

/**
 * The lookups a process starts within one turn of the event loop go to Redis in one lookup script call,
 * and their candidate records in one HMGET per scope (lookup-batch.ts); the answers are those of the same
 * lookups made one at a time.
 */
const SCOPE_A: SemanticScope = { model: 'llama3.1:8b', params: { max_tokens: 8 } };
const SCOPE_B: SemanticScope = { model: 'llama3.1:8b', params: { max_tokens: 8 }, tenant: 'tenant-b' };

/** Prompts shaped like bench:http's: they share most words, so a new one has candidates but no match. */
const benchPrompt = (tag: string, i: number): string =>
  `Request ${tag}-${i}: tell me about ${(i * 2654435761).toString(16).slice(-12)} and ${i * 7919}`;

const STORED: [string, string][] = [
  ['How do I reset my password?', 'Use the reset link.'],
  ['What is the capital of France?', 'Paris.'],
  ['Explain how a hash map works in simple terms', 'Buckets and a hash function.'],
  ['Write a haiku about the sea', 'Waves fold into foam.'],
  ['How many legs does a spider have?', 'Eight.'],
];

/** A hit as plain data, to compare lookups made in a batch with the same made alone. */
const shape = (h: SemanticHit<string> | undefined) =>
  h && { value: h.value, confidence: h.confidence, similarity: h.similarity, entryId: h.entryId };

describe('SemanticCache lookups of one event-loop turn', () => {
  const prefix = uniquePrefix('semlb');
  const base = `${prefix.replace(/[{}]/g, '')}:sem`;
  let raw: RedisConnection;
  let client: RedisClient;
  let n = 0;
  const make = (at = ++n): SemanticCache<string> =>
    new SemanticCache<string>({ redis: client, prefix: `{${prefix.replace(/[{}]/g, '')}-${at}}` });

  beforeAll(async () => {
    ({ raw, client } = await openTestClients());
  });

  afterAll(() => closeTestClients({ raw, client }, `${base.slice(0, -4)}*`));

  /** The commands `fn` sends on the client's connection (names, lower case), once it has settled. */
  const commandsOf = async <T>(fn: () => Promise<T>): Promise<{ names: string[]; result: T }> => {
    const conn = client.connection;
    const names: string[] = [];
    const send = conn.sendCommand.bind(conn);
    const spy = jest.spyOn(conn, 'sendCommand').mockImplementation((cmd: Command, ...rest) => {
      names.push(cmd.name.toLowerCase());
      return send(cmd, ...rest);
    });
    try {
      return { names, result: await fn() };
    } finally {
      spy.mockRestore();
    }
  };

  it('sends the misses of one turn in one lookup call and one records read', async () => {
    const cache = make();
    // stored by another process (a cache of its own on the same prefix): the records of a process's own
    // stores are kept as written, never read
    const writer = make(n);
    for (let i = 0; i < 200; i++) await writer.set(benchPrompt('stored', i), `answer ${i}`, SCOPE_A);
    // 200 misses one at a time: the candidate records are then read with a plain HMGET (the script reads
    // them while similarity hits are common)
    for (let i = 0; i < 200; i++) expect(await cache.get(benchPrompt('warm', i), SCOPE_A)).toBeUndefined();
    const prompts = Array.from({ length: 12 }, (_, i) => benchPrompt('asked', i));
    const { names, result } = await commandsOf(() => Promise.all(prompts.map((p) => cache.get(p, SCOPE_A))));
    expect(result).toEqual(prompts.map(() => undefined));
    expect(cache.getStats().errors).toBe(0);
    // every one of them read candidate records: a miss with candidates, not an empty search
    expect(cache.getStats().search.meanDistinctCandidates).toBeGreaterThan(0);
    if (onCluster()) return; // a Cluster's connections do not hold their writes: each lookup goes alone
    expect(names.sort()).toEqual(['evalsha', 'hmget']);
  });

  it('answers a turn of exact hits, similarity hits and misses in two scopes as one at a time', async () => {
    const cache = make();
    for (const [p, v] of STORED) {
      await cache.set(p, `${v} (a)`, SCOPE_A);
      await cache.set(p, `${v} (b)`, SCOPE_B);
    }
    for (let i = 0; i < 30; i++) await cache.set(benchPrompt('stored', i), `answer ${i}`, SCOPE_A);
    const asked: [string, SemanticScope][] = [];
    for (const scope of [SCOPE_A, SCOPE_B]) {
      asked.push(
        ['How do I reset my password?', scope], // exact
        ['  how do i RESET my password ', scope], // exact after normalisation
        ['how can I reset my password', scope], // similar
        ['What is the capital city of France?', scope], // similar
        ['Write a haiku about the mountains', scope], // a different ask: refused or missed
        ['Which is the largest planet of the solar system?', scope], // nothing like it
        [benchPrompt('stored', 3), scope], // exact in A only
        [benchPrompt('asked', 1), scope], // candidates, no match
        ['How do I reset my password?\u0007', scope], // a control character: exact only
      );
    }
    const alone: ReturnType<typeof shape>[] = [];
    for (const [p, s] of asked) alone.push(shape(await cache.get(p, s)));
    // the same answers when they all start in one turn, twice (the second time with the LRU marks of the first)
    for (let round = 0; round < 2; round++) {
      const together = await Promise.all(asked.map(([p, s]) => cache.get(p, s)));
      expect(together.map(shape)).toEqual(alone);
    }
    expect(alone.filter((h) => h?.confidence === CacheMatchConfidence.EXACT).length).toBeGreaterThanOrEqual(
      5,
    );
    expect(
      alone.filter((h) => h !== undefined && h.confidence !== CacheMatchConfidence.EXACT).length,
    ).toBeGreaterThan(0);
    expect(alone.filter((h) => h === undefined).length).toBeGreaterThan(0);
    expect(cache.getStats().errors).toBe(0);
  });

  it('sends the exact-only lookups of one turn in one call that reads their entries, with the answers of one at a time', async () => {
    const cache = new SemanticCache<string>({
      redis: client,
      prefix: `{${prefix.replace(/[{}]/g, '')}-${++n}}`,
      defaultMinConfidence: CacheMatchConfidence.EXACT,
      index: false,
    });
    for (const [p, v] of STORED) {
      await cache.set(p, `${v} (a)`, SCOPE_A);
      await cache.set(p, `${v} (b)`, SCOPE_B);
    }
    const asked: [string, SemanticScope][] = [];
    for (const scope of [SCOPE_A, SCOPE_B])
      asked.push(
        ['How do I reset my password?', scope], // exact
        ['  how do i RESET my password ', scope], // exact after normalisation
        ['how can I reset my password', scope], // similar only: a miss at EXACT
        [benchPrompt('asked', 1), scope], // nothing like it
      );
    const alone: ReturnType<typeof shape>[] = [];
    for (const [p, s] of asked) alone.push(shape(await cache.get(p, s)));
    expect(alone.map((h) => h?.value)).toEqual([
      'Use the reset link. (a)',
      'Use the reset link. (a)',
      undefined,
      undefined,
      'Use the reset link. (b)',
      'Use the reset link. (b)',
      undefined,
      undefined,
    ]);
    const { names, result } = await commandsOf(() => Promise.all(asked.map(([p, s]) => cache.get(p, s))));
    expect(result.map(shape)).toEqual(alone);
    expect(cache.getStats().errors).toBe(0);
    if (onCluster()) return; // a Cluster's connections do not hold their writes: each lookup goes alone
    expect(names).toEqual(['evalsha']);
  });

  it('answers every lookup of a turn as a miss when the call fails, and the next turn again', async () => {
    const cache = make();
    await cache.set('How do I reset my password?', 'Use the reset link.', SCOPE_A);
    // the scope's band mirror built first (semantic-mirror.ts): the next command is the turn's lookup call
    await cache.get('What is a spider?', SCOPE_A);
    const spy = jest.spyOn(client.connection, 'sendCommand');
    spy.mockImplementationOnce((...args) => {
      const cmd = args[0];
      cmd.reject(new Error('ERR injected'));
      return cmd.promise;
    });
    const prompts = ['How do I reset my password?', 'how do i reset my password', 'What is a spider?'];
    const failed = await Promise.all(prompts.map((p) => cache.get(p, SCOPE_A)));
    spy.mockRestore();
    if (onCluster()) {
      // a Cluster's lookups go alone, one call each: only the lookup whose call failed is a miss
      expect(failed.map((h) => h?.value)).toEqual([undefined, 'Use the reset link.', undefined]);
    } else {
      expect(failed).toEqual([undefined, undefined, undefined]);
    }
    expect(cache.getStats().errors).toBe(onCluster() ? 1 : 3);
    expect((await cache.get('How do I reset my password?', SCOPE_A))?.value).toBe('Use the reset link.');
  });
});
