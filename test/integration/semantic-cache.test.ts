import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { type RedisConnection } from '../../shared/redis/cluster';
import {
  CacheMatchConfidence,
  DEFAULT_THRESHOLDS,
  FunctionEmbedder,
  HashedNgramEmbedder,
  LexicalEmbedder,
  SemanticCache,
  withModelCache,
  type SemanticCacheOptions,
  type SemanticScope,
} from '../../shared/cache/semantic';
import { LSH_BANDS, LSH_ROWS } from '../../shared/cache/semantic/lsh';
import { PromptMemo } from '../../shared/cache/semantic/prompt-memo';
import { keyBase, ScopeKeys } from '../../shared/cache/semantic/scope';
import { BandMirror } from '../../shared/cache/semantic/semantic-mirror';
import { GUARD_TRIES, SLOT_HOLD_MS } from '../../shared/cache/semantic/semantic-scripts';
import { ConfigError, ValidationError } from '../../shared/errors';
import { closeRedis, waitUntilReady } from '../../shared/redis/connection';
import { luaScript } from '../../shared/redis/lua-scripts';
import { RedisClient } from '../../shared/redis/redis-client';
import {
  closeTestClients,
  keysMatching,
  openTestClients,
  testRedisConnection,
  testRedisUrl,
  uniquePrefix,
} from '../helpers/redis';
import { startPrivateRedis } from '../helpers/redis-server';
import { rejectionOf, until } from '../helpers/wait';

const SCOPE: SemanticScope = { model: 'llama3.1:8b', params: { temperature: 0.2 }, tenant: 'tenant-a' };

/** Keys matching `pattern` on every master (each scope is a slot of its own on a cluster). */
const keysUnder = keysMatching;

describe('SemanticCache (on Redis)', () => {
  const prefix = uniquePrefix('sem');
  const base = `${prefix.replace(/[{}]/g, '')}:sem`;
  let raw: RedisConnection;
  let client: RedisClient;
  let n = 0;
  const bases = new Map<SemanticCache<string>, string>();
  // Each test gets its own prefix below `prefix`'s base, so counts and keys never mix.
  const make = (opts: Partial<Omit<SemanticCacheOptions, 'redis'>> = {}): SemanticCache<string> => {
    const p = `{${prefix.replace(/[{}]/g, '')}-${++n}}`;
    const cache = new SemanticCache<string>({ redis: client, prefix: p, ...opts });
    bases.set(cache, keyBase(p));
    return cache;
  };
  const baseOf = (cache: SemanticCache<string>): string => bases.get(cache)!;
  // Entries expire by Redis's clock (TIME in the scripts): a test waits until that clock has passed an
  // entry's latest possible expiry (a store's TIME is at most the TIME read after it returned), never for a
  // fixed time, so a stalled host cannot make it look too early.
  const redisNow = async (): Promise<number> => {
    const [sec, micro] = await raw.time();
    return Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
  };
  const redisPast = async (ms: number): Promise<void> =>
    until(async () => (await redisNow()) > ms, 30_000, `Redis's clock to pass ${ms}`);

  beforeAll(async () => {
    ({ raw, client } = await openTestClients());
  });

  afterAll(() => closeTestClients({ raw, client }, `${base.slice(0, -4)}*`));

  it('answers the same prompt (after normalisation) with EXACT', async () => {
    const cache = make();
    await cache.set('How do I reset my password?', 'Use the reset link.', SCOPE);
    for (const p of [
      'How do I reset my password?',
      '  how do i RESET my password ',
      'How do I reset my password!',
    ]) {
      const hit = await cache.get(p, SCOPE);
      expect(hit).toMatchObject({
        value: 'Use the reset link.',
        confidence: CacheMatchConfidence.EXACT,
        similarity: 1,
        prompt: 'How do I reset my password?',
      });
      expect(hit!.storedAt).toBeGreaterThan(Date.now() - 60_000);
      expect(hit!.entryId).toMatch(/^[0-9a-f]{32}:\d+$/);
    }
    expect(
      await cache.get('How do I reset my password?', SCOPE, { minConfidence: CacheMatchConfidence.EXACT }),
    ).toMatchObject({ confidence: 'exact' });
  });

  // Levels measured with the hashed n-gram embedder (its similarities are the ones the comments give).
  it('answers a paraphrase with its similarity level, and respects minConfidence', async () => {
    const cache = make({ embedder: new HashedNgramEmbedder() });
    await cache.set('How do I reset my password?', 'Use the reset link.', SCOPE);
    const high = await cache.get('How can I reset my password?', SCOPE);
    expect(high).toMatchObject({ value: 'Use the reset link.', confidence: CacheMatchConfidence.HIGH });
    expect(high!.similarity).toBeGreaterThanOrEqual(0.9);
    expect(high!.similarity).toBeLessThan(1);

    // 0.85: MEDIUM; not served at the default minimum (HIGH)
    expect(await cache.get('how to reset my password', SCOPE)).toBeUndefined();
    const medium = await cache.get('how to reset my password', SCOPE, {
      minConfidence: CacheMatchConfidence.MEDIUM,
    });
    expect(medium).toMatchObject({ confidence: CacheMatchConfidence.MEDIUM });
    expect(
      await cache.get('How can I reset my password?', SCOPE, { minConfidence: CacheMatchConfidence.EXACT }),
    ).toBeUndefined();
    expect(
      await cache.get('Explain quantum entanglement simply', SCOPE, {
        minConfidence: CacheMatchConfidence.LOW,
      }),
    ).toBeUndefined();

    const lowCache = make({
      embedder: new HashedNgramEmbedder(),
      defaultMinConfidence: CacheMatchConfidence.MEDIUM,
    });
    await lowCache.set('How do I reset my password?', 'x', SCOPE);
    expect(await lowCache.get('how to reset my password', SCOPE)).toMatchObject({ confidence: 'medium' });
  });

  it('by default (lexical embedder) answers a paraphrase with synonyms and another question frame at HIGH', async () => {
    const cache = make();
    expect(cache.embedder).toBeInstanceOf(LexicalEmbedder);
    expect(cache.thresholds).toEqual(DEFAULT_THRESHOLDS);
    await cache.set('How do I fix a wobbly table leg?', 'Tighten the bolts.', SCOPE);
    expect(await cache.get('What is the way to repair a wobbly table leg?', SCOPE)).toMatchObject({
      value: 'Tighten the bolts.',
      confidence: CacheMatchConfidence.HIGH,
      prompt: 'How do I fix a wobbly table leg?',
    });
    // the guard still refuses what changes the question, at any level
    expect(
      await cache.get('How do I fix a wobbly chair leg?', SCOPE, { minConfidence: CacheMatchConfidence.LOW }),
    ).toBeUndefined();
    expect(cache.getStats().semanticHits.high).toBe(1);
  });

  it('never compares vectors of two embedders: another embedder (or lexicon version) is another scope', async () => {
    const p = `{${prefix.replace(/[{}]/g, '')}-embedders}`;
    const hashed = new SemanticCache<string>({
      redis: client,
      prefix: p,
      embedder: new HashedNgramEmbedder(),
    });
    const lexical = new SemanticCache<string>({ redis: client, prefix: p });
    try {
      await hashed.set('How do I reset my password?', 'old vectors', SCOPE);
      // not even the exact prompt: the scope hash holds the embedder's name, which holds the lexicon version
      expect(await lexical.get('How do I reset my password?', SCOPE)).toBeUndefined();
      expect(lexical.entryIdOf('How do I reset my password?', SCOPE)).not.toBe(
        hashed.entryIdOf('How do I reset my password?', SCOPE),
      );
      expect(await hashed.get('How do I reset my password?', SCOPE)).toMatchObject({ value: 'old vectors' });
    } finally {
      await hashed.invalidate({ model: SCOPE.model });
      await lexical.invalidate({ model: SCOPE.model });
    }
  });

  it('never answers across scopes: tenants, models, temperatures, system prompts', async () => {
    const cache = make();
    const prompt = 'Write a haiku about the autumn ocean at night';
    const paraphrase = 'Can you write a haiku about the autumn ocean at night';
    await cache.set(prompt, 'stored', SCOPE);
    expect(await cache.get(paraphrase, SCOPE)).toMatchObject({ value: 'stored' });
    const others: SemanticScope[] = [
      { ...SCOPE, tenant: 'tenant-b' },
      { ...SCOPE, tenant: undefined },
      { ...SCOPE, model: 'mistral:7b' },
      { ...SCOPE, params: { temperature: 0.9 } },
      { ...SCOPE, params: { temperature: 0.2, seed: 7 } },
      { ...SCOPE, system: 'You are a pirate.' },
      { ...SCOPE, context: [{ role: 'user', content: 'earlier turn' }] },
    ];
    for (const scope of others) {
      expect(await cache.get(prompt, scope, { minConfidence: CacheMatchConfidence.LOW })).toBeUndefined();
      expect(await cache.get(paraphrase, scope, { minConfidence: CacheMatchConfidence.LOW })).toBeUndefined();
    }
    // Same scope written differently: key order and undefined/empty members do not matter.
    expect(
      await cache.get(prompt, {
        tenant: 'tenant-a',
        params: { temperature: 0.2, top_k: undefined },
        model: 'llama3.1:8b',
        system: '',
      }),
    ).toMatchObject({ confidence: 'exact' });
  });

  it('keeps every key of a scope in one hash slot ({scope hash} tag)', async () => {
    const cache = make({ maxEntriesPerScope: 2 });
    for (const p of ['a first prompt about cats', 'a second prompt about dogs', 'a third prompt about birds'])
      await cache.set(p, 'v', SCOPE);
    const keys = await keysUnder(raw, `${baseOf(cache)}:{*`);
    expect(keys.length).toBeGreaterThan(5);
    const tags = new Set(keys.map((k) => /\{([^}]+)\}/.exec(k)![1]));
    expect(tags.size).toBe(1);
  });

  describe('the guard', () => {
    // Thresholds low enough that each pair scores as "similar": the guard alone decides.
    const loose = { high: 0.75, medium: 0.7, low: 0.6 };
    const pairs: [string, string, string][] = [
      [
        'reversal',
        'book cheap flights from Paris to Rome next week',
        'book cheap flights from Rome to Paris next week',
      ],
      [
        'negation',
        'is it safe to drink tap water in the city',
        'is it not safe to drink tap water in the city',
      ],
      [
        'numbers',
        'how many calories are in 100 grams of cooked rice',
        'how many calories are in 250 grams of cooked rice',
      ],
      [
        'entities',
        'summarize the quarterly report of Acme Corp for investors',
        'summarize the quarterly report of Globex Corp for investors',
      ],
    ];

    it.each(pairs)('refuses a %s as a hit, and counts it', async (_kind, stored, asked) => {
      const cache = make({ thresholds: loose });
      await cache.set(stored, 'answer', SCOPE);
      expect(await cache.get(asked, SCOPE)).toBeUndefined();
      expect(cache.getStats().guardRejections).toBe(1);
      // exact hits are never guarded
      expect(await cache.get(stored, SCOPE)).toMatchObject({ confidence: 'exact' });
    });

    it.each(pairs)('can be turned off (%s then hits)', async (_kind, stored, asked) => {
      const cache = make({ thresholds: loose, guard: false });
      await cache.set(stored, 'answer', SCOPE);
      expect(await cache.get(asked, SCOPE)).toMatchObject({ value: 'answer', confidence: 'high' });
      expect(cache.getStats().guardRejections).toBe(0);
    });

    it('skips a refused candidate for the next one that passes', async () => {
      const cache = make({ thresholds: loose });
      await cache.set('how many calories are in 250 grams of cooked rice', '250 g', SCOPE);
      await cache.set('how many calories are in 100 grams of cooked rice', '100 g', SCOPE);
      const hit = await cache.get('How many calories are in 100 grams of cooked rice please', SCOPE);
      expect(hit?.value).toBe('100 g');
    });

    it('marks used the entry a similarity hit answers with, not the candidate the guard refused', async () => {
      const cache = make({ thresholds: loose });
      const refused = 'how many calories are in 250 grams of cooked rice';
      const taken = 'how many calories are in 100 grams of cooked rice';
      await cache.set(refused, '250 g', SCOPE);
      await cache.set(taken, '100 g', SCOPE);
      const [tag, refusedId] = cache.entryIdOf(refused, SCOPE).split(':');
      const takenId = cache.entryIdOf(taken, SCOPE).split(':')[1]!;
      const lru = `${baseOf(cache)}:{${tag}}:lru`;
      const before = [Number(await raw.zscore(lru, refusedId!)), Number(await raw.zscore(lru, takenId))];
      await redisPast(Math.max(...before));
      const hit = await cache.get('How many calories are in 100 grams of cooked rice please', SCOPE);
      expect(hit).toMatchObject({ value: '100 g', confidence: 'high' });
      // Read on the cache's own connection: the mark, sent without waiting, is ahead of it there.
      expect(Number(await client.connection.zscore(lru, takenId))).toBeGreaterThan(before[1]!);
      expect(Number(await client.connection.zscore(lru, refusedId!))).toBe(before[0]);
    });

    it(`gives up after ${GUARD_TRIES} refusals in one lookup, however many candidates are left`, async () => {
      const grams = [100, 200, 300, 400, 500, 600];
      expect(grams.length).toBeGreaterThan(GUARD_TRIES + 1);
      const asked = 'how many calories are in 700 grams of cooked rice';
      // Without the guard every stored prompt is a candidate above the threshold: the lookup hits.
      const open = make({ thresholds: loose, guard: false });
      for (const g of grams)
        await open.set(`how many calories are in ${g} grams of cooked rice`, `${g} g`, SCOPE);
      expect(await open.get(asked, SCOPE)).toMatchObject({ confidence: 'high' });
      // With it, each is refused for its number, and the lookup stops at the cap instead of trying every one.
      const cache = make({ thresholds: loose });
      for (const g of grams)
        await cache.set(`how many calories are in ${g} grams of cooked rice`, `${g} g`, SCOPE);
      expect(await cache.get(asked, SCOPE)).toBeUndefined();
      expect(cache.getStats().guardRejections).toBe(GUARD_TRIES);
      expect(await cache.get('how many calories are in 800 grams of cooked rice', SCOPE)).toBeUndefined();
      expect(cache.getStats().guardRejections).toBe(2 * GUARD_TRIES);
    });
  });

  it('expires entries after their TTL (all keys), never returns them, and cleans their records lazily', async () => {
    const cache = make();
    // A TTL far above a busy host's stalls: the keys are checked before it runs out.
    await cache.set('What is the tallest mountain in Europe?', 'Elbrus', SCOPE, { ttlSeconds: 1 });
    const stored = await redisNow();
    const keysOf = () => keysUnder(raw, `${baseOf(cache)}:{*`);
    expect((await keysOf()).length).toBeGreaterThan(0);
    await redisPast(stored + 1000);
    expect(await cache.get('What is the tallest mountain in Europe?', SCOPE)).toBeUndefined();
    expect(
      await cache.get('Tell me the tallest mountain in Europe', SCOPE, {
        minConfidence: CacheMatchConfidence.LOW,
      }),
    ).toBeUndefined();
    await until(async () => (await keysOf()).length === 0, 15_000, 'every key of the scope to expire');

    // An expired entry that shares band buckets with a live one: its codes outlive it (the buckets live
    // on) until a lookup meets it as a candidate: never returned, and removed on the spot.
    // The live entry is stored first: a store after the short-lived one expired would remove its record
    // (stores clean expired entries, see the next test), and on a stalled host 0.3 s pass between two stores.
    const a = 'What is the tallest mountain in Europe?';
    await cache.set('What is the tallest mountain in Europe today?', 'Elbrus today', SCOPE, {
      ttlSeconds: 60,
    });
    await cache.set(a, 'Elbrus', SCOPE, { ttlSeconds: 0.3 });
    await redisPast((await redisNow()) + 300);
    const tag = cache.entryIdOf('x', SCOPE).split(':')[0];
    const meta = `${baseOf(cache)}:{${tag}}:meta`;
    // the slots in the band buckets as a process that starts now sees them (its mirror, built from Redis)
    const codes = async (): Promise<number> => {
      const keys = new ScopeKeys(baseOf(cache), tag!);
      const mirror = new BandMirror(client, LSH_BANDS, LSH_ROWS);
      await mirror.build(keys);
      return mirror.contents(keys).length;
    };
    expect(await raw.hlen(meta)).toBe(2);
    expect(await codes()).toBeGreaterThan(20);
    // the expired prompt itself: the exact key is gone; its vector meets its own codes in the live buckets
    const hit = await cache.get(a, SCOPE, { minConfidence: CacheMatchConfidence.LOW });
    expect(hit?.value).not.toBe('Elbrus');
    expect(await raw.hlen(meta)).toBe(1);
    expect(await codes()).toBe(20); // only the live entry's 20 bands
    expect(await cache.get('What is the tallest mountain in Europe today', SCOPE)).toMatchObject({
      value: 'Elbrus today',
    });
  });

  it('while similarity hits are rare, reads candidates directly: same answers, expired ones still cleaned', async () => {
    // Thresholds low enough that the pairs below score as "similar": the guard decides (see the guard's tests).
    const cache = make({ thresholds: { high: 0.75, medium: 0.7, low: 0.6 } });
    await cache.set('how many calories are in 100 grams of cooked rice', '100 g', SCOPE);
    // Similarity searches that miss (the guard refuses the stored prompt: another number) make hits rare.
    for (let i = 0; i < 200; i++)
      expect(await cache.get('how many calories are in 250 grams of cooked rice', SCOPE)).toBeUndefined();
    expect(cache.getStats().guardRejections).toBe(200);

    const direct = jest.spyOn(client.connection, 'hmgetBuffer');
    try {
      // A paraphrase is still answered: its entry fetched after the candidates (a record the earlier
      // lookups read: not read again).
      expect(
        await cache.get('How many calories are in 100 grams of cooked rice please', SCOPE),
      ).toMatchObject({
        value: '100 g',
        confidence: 'high',
      });
      expect(direct).toHaveBeenCalledTimes(0);

      // An expired candidate makes the direct read step aside: the script reads it and removes it.
      const short = 'how many calories are in 100 grams of cooked rice today';
      await cache.set(short, 'today', SCOPE, { ttlSeconds: 0.3 });
      await redisPast((await redisNow()) + 300);
      const meta = `${baseOf(cache)}:{${cache.entryIdOf('x', SCOPE).split(':')[0]}}:meta`;
      expect(await raw.hlen(meta)).toBe(2);
      const hit = await cache.get(short, SCOPE, { minConfidence: CacheMatchConfidence.LOW });
      expect(hit?.value).not.toBe('today');
      expect(direct).toHaveBeenCalledTimes(1); // only the new entry's record
      expect(direct.mock.calls[0]!.slice(1)).toHaveLength(1);
      expect(await raw.hlen(meta)).toBe(1);
    } finally {
      direct.mockRestore();
    }
  });

  it('removes expired entries on later stores (counted)', async () => {
    const cache = make();
    await cache.set('a long-lived prompt about water', 'w', SCOPE, { ttlSeconds: 60 });
    await cache.set('first short-lived prompt about tea', 'a', SCOPE, { ttlSeconds: 0.2 });
    await redisPast((await redisNow()) + 200);
    await cache.set('second prompt about coffee', 'b', SCOPE);
    expect(cache.getStats().expiredRemoved).toBe(1);
  });

  it('sweepExpired removes the records of expired entries in scopes nobody writes to, and keeps live ones', async () => {
    const cache = make();
    const other = { ...SCOPE, model: 'another-model' };
    // Short-lived is 2 s, far above a busy host's stalls: the counts before expiry are read well before it
    // (a store after an expired entry would clean it, and size() leaves it out).
    await cache.set('a long-lived prompt about water', 'w', SCOPE, { ttlSeconds: 60 });
    await cache.set('short-lived prompt about tea', 'a', SCOPE, { ttlSeconds: 2 });
    await cache.set('short-lived prompt about rivers', 'b', other, { ttlSeconds: 2 });
    const stored = await redisNow();
    await cache.set('short-lived prompt about lakes', 'c', other, { ttlSeconds: 60 });
    const meta = (scope: typeof SCOPE) =>
      `${baseOf(cache)}:{${cache.entryIdOf('x', scope).split(':')[0]}}:meta`;
    expect(await raw.hlen(meta(SCOPE))).toBe(2);
    expect(await raw.hlen(meta(other))).toBe(2);
    expect(await cache.size()).toBe(4);
    await redisPast(stored + 2000);
    // Expired entries are not counted, even before their records are swept.
    expect(await cache.size()).toBe(2);
    const r = await cache.sweepExpired();
    expect(r.removed).toBe(2);
    expect(r.scopes).toBeGreaterThanOrEqual(2);
    expect(await raw.hlen(meta(SCOPE))).toBe(1);
    expect(await raw.hlen(meta(other))).toBe(1);
    expect(await cache.get('a long-lived prompt about water', SCOPE)).toMatchObject({ value: 'w' });
    expect(await cache.get('short-lived prompt about lakes', other)).toMatchObject({ value: 'c' });
    expect((await cache.sweepExpired()).removed).toBe(0);
    expect(cache.getStats().expiredRemoved).toBe(2);
    expect(await cache.size()).toBe(2);
  });

  it('invalidates by model across tenants and parameters, by tenant, and by full scope', async () => {
    const cache = make();
    const m1a = { model: 'm1', tenant: 'a' };
    const m1b = { model: 'm1', tenant: 'b', params: { temperature: 0 } };
    const m2a = { model: 'm2', tenant: 'a' };
    await cache.set('what is a monad', 'x', m1a);
    await cache.set('what is a functor', 'x', m1a);
    await cache.set('what is a monad', 'y', m1b);
    await cache.set('what is a monad', 'z', m2a);
    expect(await cache.invalidate({ model: 'm1' })).toBe(3);
    expect(await cache.get('what is a monad', m1a)).toBeUndefined();
    expect(await cache.get('what is a monad', m1b)).toBeUndefined();
    expect(await cache.get('what is a monad', m2a)).toMatchObject({ value: 'z' });
    expect(await cache.invalidate({ model: 'm1' })).toBe(0);

    await cache.set('what is a monad', 'x', m1a);
    expect(await cache.invalidate({ tenant: 'a' })).toBe(2);
    expect(await cache.get('what is a monad', m2a)).toBeUndefined();

    await cache.set('what is a monad', 'y', m1b);
    await cache.set('what is a monad', 'x', m1a);
    expect(await cache.invalidate({ ...m1b })).toBe(1); // full scope (has params): only that scope
    expect(await cache.get('what is a monad', m1a)).toMatchObject({ value: 'x' });
    expect(await cache.invalidate({ model: 'm1', tenant: 'a' })).toBe(1);

    expect(await rejectionOf(cache.invalidate({}))).toBeInstanceOf(ValidationError);
    // only the slot counters are left, each until its scope's entries would have expired: a slot number is
    // not given out again while a process may trust a record of it
    const left = await keysUnder(raw, `${baseOf(cache)}:{*`);
    expect(left.length).toBeGreaterThan(0);
    for (const k of left) {
      expect(k).toMatch(/:next$/);
      expect(await raw.pttl(k)).toBeGreaterThan(0);
    }
  });

  it('invalidates, counts and sweeps the scopes of entries stored without the index (exact only)', async () => {
    // stored for their exact key only: no generation is ever opened in these scopes, yet the model and tenant
    // indexes must know them from their first store
    const cache = make({ index: false, defaultMinConfidence: CacheMatchConfidence.EXACT });
    const m1a = { model: 'm1', tenant: 'a' };
    const m1b = { model: 'm1', tenant: 'b' };
    const m2a = { model: 'm2', tenant: 'a' };
    await cache.set('what is a monad', 'x', m1a);
    await cache.set('what is a monad', 'y', m1b);
    await cache.set('what is a monad', 'z', m2a);
    await cache.set('how do I tie a knot\u0007', 'w', m2a); // a control character: never indexed anyway
    expect(await cache.size()).toBe(4);
    expect(await cache.invalidate({ model: 'm1' })).toBe(2);
    expect(await cache.get('what is a monad', m1a)).toBeUndefined();
    expect(await cache.get('what is a monad', m2a)).toMatchObject({ value: 'z' });
    expect(await cache.invalidate({ tenant: 'a' })).toBe(2);
    expect(await cache.size()).toBe(0);
    // a short-lived entry of a new scope is swept once it has expired
    await cache.set('what is a functor', 'v', { model: 'm3' }, { ttlSeconds: 0.2 });
    await redisPast((await redisNow()) + 200);
    expect(await cache.sweepExpired()).toMatchObject({ removed: 1 });
  });

  it('bounds a scope, evicting the least recently used', async () => {
    const cache = make({ maxEntriesPerScope: 3 });
    const prompts = ['alpha question about owls', 'beta question about bees', 'gamma question about cows'];
    for (const p of prompts) {
      await cache.set(p, p, SCOPE);
      await new Promise((r) => setTimeout(r, 5)); // distinct LRU timestamps
    }
    await cache.get(prompts[0]!, SCOPE); // alpha used again: beta is now the least recently used
    await new Promise((r) => setTimeout(r, 5));
    await cache.set('delta question about pigs', 'delta', SCOPE);
    await cache.set('epsilon question about rats', 'epsilon', SCOPE);
    expect(cache.getStats().evictions).toBe(2);
    expect(await cache.get(prompts[1]!, SCOPE)).toBeUndefined();
    expect(await cache.get(prompts[2]!, SCOPE)).toBeUndefined();
    for (const p of [prompts[0]!, 'delta question about pigs', 'epsilon question about rats'])
      expect(await cache.get(p, SCOPE)).toMatchObject({ confidence: 'exact' });
    const tag = cache.entryIdOf('x', SCOPE).split(':')[0];
    expect(await raw.zcard(`${baseOf(cache)}:{${tag}}:lru`)).toBe(3);
    expect(await raw.hlen(`${baseOf(cache)}:{${tag}}:vec`)).toBe(3);
  });

  it('sends stores of one scope made together in one script call; each is found, a later store of a prompt wins', async () => {
    const cache = make({ writeBatching: { maxWaitMs: 50 } });
    const other: SemanticScope = { ...SCOPE, tenant: 'tenant-b' };
    await cache.set('warm up the script', 'w', SCOPE);
    const r = client.connection as unknown as Record<string, (...a: unknown[]) => unknown>;
    const spy = jest.spyOn(r, 'cell0SemanticSet');
    try {
      const prompts = ['how do owls hunt at night', 'why do bees make honey', 'where do cows sleep'];
      await Promise.all([
        ...prompts.map((p) => cache.set(p, `answer: ${p}`, SCOPE)),
        cache.set('why do bees make honey', 'answer, second store', SCOPE),
        cache.set('how do owls hunt at night', 'other tenant', other),
      ]);
      expect(spy).toHaveBeenCalledTimes(2); // one call per scope
      expect(spy.mock.calls.map((c) => Number(c[0])).sort((a, b) => a - b)).toEqual([10, 12]); // 9 containers + its entries
    } finally {
      spy.mockRestore();
    }
    expect(await cache.get('how do owls hunt at night', SCOPE)).toMatchObject({
      value: 'answer: how do owls hunt at night',
      confidence: CacheMatchConfidence.EXACT,
    });
    expect((await cache.get('why do bees make honey', SCOPE))?.value).toBe('answer, second store');
    expect((await cache.get('where do cows sleep', SCOPE))?.value).toBe('answer: where do cows sleep');
    expect((await cache.get('how do owls hunt at night', other))?.value).toBe('other tenant');
    // indexed as well: a paraphrase is found by similarity
    const similar = await cache.get('Please, how do owls hunt at night?', SCOPE);
    expect(similar).toMatchObject({ value: 'answer: how do owls hunt at night' });
    expect(similar!.confidence).not.toBe(CacheMatchConfidence.EXACT);
    const tag = cache.entryIdOf('x', SCOPE).split(':')[0];
    expect(await raw.zcard(`${baseOf(cache)}:{${tag}}:lru`)).toBe(4);
    expect(await raw.hlen(`${baseOf(cache)}:{${tag}}:vec`)).toBe(4);
    expect(cache.getStats().sets).toBe(6);
  });

  it('a batch of stores takes freed slots first, then fresh ones, and keeps them apart', async () => {
    const cache = make({ maxEntriesPerScope: 2, writeBatching: { maxWaitMs: 50 } });
    for (const p of ['alpha question about owls', 'beta question about bees', 'gamma question about cows']) {
      await cache.set(p, p, SCOPE);
      await new Promise((r) => setTimeout(r, 5)); // distinct LRU timestamps
    }
    const tag = cache.entryIdOf('x', SCOPE).split(':')[0];
    const keys = `${baseOf(cache)}:{${tag}}`;
    expect(await raw.zcard(`${keys}:held`)).toBe(1); // alpha's slot, held (evicted while live)
    await raw.zadd(`${keys}:held`, 0, (await raw.zrange(`${keys}:held`, 0, 0))[0]!); // its hold is over
    const batch = ['delta question about pigs', 'epsilon question about rats', 'zeta question about cats'];
    await Promise.all(batch.map((p) => cache.set(p, p, SCOPE)));
    expect(await raw.zcard(`${keys}:lru`)).toBe(2);
    const slots = await raw.hkeys(`${keys}:vec`);
    expect(slots).toHaveLength(2);
    // every stored prompt of the batch that survived is found exactly and by similarity, with its own slot
    let found = 0;
    for (const p of batch) {
      const hit = await cache.get(p, SCOPE);
      if (!hit) continue;
      found++;
      expect(hit.value).toBe(p);
      expect((await cache.get(`Please, ${p}?`, SCOPE))?.value).toBe(p);
    }
    expect(found).toBe(2);
    // the earliest store of the batch went, as if each store had evicted on its own
    expect(await cache.get(batch[0]!, SCOPE)).toBeUndefined();
    expect(Number(await raw.get(`${keys}:next`))).toBe(5); // 3 fresh before; the batch took 1 freed, 2 fresh
  });

  it('holds the slot of an entry that goes while it may be live (evicted, stored again, reported) until its hold ends', async () => {
    const cache = make({ maxEntriesPerScope: 2 });
    const tag = cache.entryIdOf('x', SCOPE).split(':')[0];
    const keys = `${baseOf(cache)}:{${tag}}`;
    const slotOf = async (p: string) =>
      Number((await raw.hget(`${keys}:meta`, cache.entryIdOf(p, SCOPE).split(':')[1]!))!.split('|')[0]);
    const held = async () => (await raw.zrange(`${keys}:held`, 0, -1)).map(Number).sort((a, b) => a - b);
    for (const p of ['alpha question about owls', 'beta question about bees']) {
      await cache.set(p, p, SCOPE);
      await new Promise((r) => setTimeout(r, 5)); // distinct LRU timestamps
    }
    const alpha = await slotOf('alpha question about owls');
    const beta = await slotOf('beta question about bees');
    const t0 = await redisNow();
    // evicted: alpha's slot is held (a process may use its record for a while), not handed to gamma
    await cache.set('gamma question about cows', 'gamma', SCOPE);
    expect(cache.getStats().evictions).toBe(1);
    expect(await held()).toEqual([alpha]);
    const until = Number(await raw.zscore(`${keys}:held`, String(alpha)));
    expect(until).toBeGreaterThanOrEqual(t0 + SLOT_HOLD_MS);
    expect(await slotOf('gamma question about cows')).not.toBe(alpha);
    // stored again: the entry moves to a new slot, its old one is held
    await cache.set('beta question about bees', 'beta again', SCOPE);
    expect(await slotOf('beta question about bees')).not.toBe(beta);
    expect(await held()).toEqual([alpha, beta].sort((a, b) => a - b));
    expect((await cache.get('Please, beta question about bees?', SCOPE))?.value).toBe('beta again');
    // reported: its slot is held too
    const gamma = await slotOf('gamma question about cows');
    await cache.reportFalseHit(cache.entryIdOf('gamma question about cows', SCOPE));
    expect(await held()).toEqual([alpha, beta, gamma].sort((a, b) => a - b));
    // a hold that is over: the slot is given out again
    await raw.zadd(`${keys}:held`, 0, String(alpha));
    await cache.set('delta question about pigs', 'delta', SCOPE);
    expect(await slotOf('delta question about pigs')).toBe(alpha);
    expect(await raw.pttl(`${keys}:held`)).toBeGreaterThan(0);
  });

  it("a lookup reads only the candidate records it has not read lately; another process's new entries are found", async () => {
    // Thresholds low enough that the prompts below are candidates of each other; the guard refuses them.
    const thresholds = { high: 0.75, medium: 0.7, low: 0.6 };
    // two caches on one prefix, as two processes would be
    const shared = `{${prefix.replace(/[{}]/g, '')}-kept}`;
    const reader = new SemanticCache<string>({ redis: client, prefix: shared, thresholds });
    const writer = new SemanticCache<string>({
      redis: client,
      prefix: shared,
      thresholds,
      maxEntriesPerScope: 4,
    });
    const q = (n: number) => `how many calories are in ${n} grams of cooked rice`;
    for (const n of [100, 200, 300]) await writer.set(q(n), `${n} g`, SCOPE);
    const direct = jest.spyOn(client.connection, 'hmgetBuffer');
    try {
      // misses make similarity hits rare: the candidate records are then read directly (HMGET), once
      for (let i = 0; i < 100; i++) expect(await reader.get(q(250), SCOPE)).toBeUndefined();
      expect(direct).toHaveBeenCalledTimes(1);
      direct.mockClear();
      expect(await reader.get(q(260), SCOPE)).toBeUndefined();
      expect(direct).toHaveBeenCalledTimes(0); // the three records were read by the lookups before
      // the writer (another process) stores two more: one evicts 100 (its slot held); only the new
      // records are read, and a paraphrase of a new entry is found
      await writer.set(q(400), '400 g', SCOPE);
      await writer.set(q(500), '500 g', SCOPE);
      expect(writer.getStats().evictions).toBe(1);
      expect(await reader.get(`Please, ${q(500)}?`, SCOPE)).toMatchObject({ value: '500 g' });
      expect(direct).toHaveBeenCalledTimes(1);
      expect(direct.mock.calls[0]!.slice(1)).toHaveLength(2);
      expect(await reader.get(q(100), SCOPE)).toBeUndefined(); // evicted: not found
    } finally {
      direct.mockRestore();
    }
  });

  it('keeps the candidate records of its own stores as written: its lookups do not read them', async () => {
    const thresholds = { high: 0.75, medium: 0.7, low: 0.6 };
    const cache = make({ thresholds });
    const q = (n: number) => `how many calories are in ${n} grams of cooked crème brûlée`;
    await cache.set(q(100), '100 g', SCOPE);
    const direct = jest.spyOn(client.connection, 'hmgetBuffer');
    try {
      // misses make similarity hits rare (candidate records then come from memory or an HMGET): the
      // record of the entry this process stored is never read
      for (let i = 0; i < 100; i++) expect(await cache.get(q(250), SCOPE)).toBeUndefined();
      await cache.set(q(300), '300 g', SCOPE);
      expect(await cache.get(`Please, ${q(300)}?`, SCOPE)).toMatchObject({ value: '300 g' });
      expect(direct).toHaveBeenCalledTimes(0);
    } finally {
      direct.mockRestore();
    }
    // each kept record is byte for byte the one in Redis (a lookup scores and reads it as if read there)
    const tag = cache.entryIdOf('x', SCOPE).split(':')[0];
    const vecKey = `${baseOf(cache)}:{${tag}}:vec`;
    const kept = (
      cache as unknown as { kept: { get(k: string, slot: number, now: number): Buffer | undefined } }
    ).kept;
    const slots = await raw.hkeys(vecKey);
    expect(slots).toHaveLength(2);
    for (const slot of slots)
      expect(kept.get(vecKey, Number(slot), Date.now())).toEqual(await raw.hgetBuffer(vecKey, slot));
  });

  it('reportFalseHit counts the report and removes the entry', async () => {
    const cache = make();
    await cache.set('How do I reset my password?', 'wrong answer', SCOPE);
    const hit = await cache.get('How can I reset my password?', SCOPE);
    expect(hit).toBeDefined();
    await cache.reportFalseHit(hit!.entryId);
    expect(await cache.get('How can I reset my password?', SCOPE)).toBeUndefined();
    expect(await cache.get('How do I reset my password?', SCOPE)).toBeUndefined();
    expect(cache.getStats().falseHitReports).toBe(1);
    expect(await rejectionOf(cache.reportFalseHit('not-an-id'))).toBeInstanceOf(TypeError);
  });

  it('keeps stats', async () => {
    const cache = make({ embedder: new HashedNgramEmbedder() });
    await cache.set('How do I reset my password?', 'a', SCOPE);
    await cache.get('How do I reset my password?', SCOPE); // exact
    await cache.get('How can I reset my password?', SCOPE); // high
    await cache.get('how to reset my password', SCOPE, { minConfidence: CacheMatchConfidence.LOW }); // medium
    await cache.get('Explain quantum entanglement simply', SCOPE); // miss
    const s = cache.getStats();
    expect(s).toMatchObject({
      lookups: 4,
      exactHits: 1,
      semanticHits: { high: 1, medium: 1, low: 0 },
      misses: 1,
      sets: 1,
      errors: 0,
      hitRate: 0.75,
    });
    expect(s.latency.count).toBe(4);
    expect(s.latency.p50Ms).toBeGreaterThan(0);
    expect(s.search.count).toBe(3);
  });

  it('refuses bad options and bad scopes', async () => {
    expect(() => make({ thresholds: { high: 0.5, medium: 0.8, low: 0.7 } })).toThrow(ConfigError);
    expect(() => make({ ttlSeconds: 0 })).toThrow(/ttlSeconds/);
    expect(() => make({ maxEntriesPerScope: 0 })).toThrow(/maxEntriesPerScope/);
    const cache = make();
    await expect(cache.get('x', { model: '' })).rejects.toThrow(TypeError);
    await expect(cache.set('x', 'y', SCOPE, { ttlSeconds: -1 })).rejects.toThrow(/ttlSeconds/);
  });

  it('rejects get() with the signal reason when aborted', async () => {
    const cache = make();
    const ac = new AbortController();
    ac.abort(new Error('caller left'));
    await expect(cache.get('x', SCOPE, { signal: ac.signal })).rejects.toThrow('caller left');
  });

  it('draws the same hyperplanes in every process: a second instance finds the first one entries', async () => {
    const prefixShared = `{${prefix.replace(/[{}]/g, '')}-shared}`;
    const other = new RedisClient({ url: testRedisUrl() });
    try {
      await waitUntilReady(other.connection, 10_000);
      const writer = new SemanticCache<string>({
        redis: client,
        prefix: prefixShared,
        embedder: new HashedNgramEmbedder(),
      });
      const reader = new SemanticCache<string>({
        redis: other,
        prefix: prefixShared,
        embedder: new HashedNgramEmbedder(),
      });
      await writer.set('Write a python function to reverse a linked list', 'def rev(...)', SCOPE);
      const hit = await reader.get('Write a Python function that reverses a linked list', SCOPE);
      expect(hit).toMatchObject({ value: 'def rev(...)', confidence: 'high' });
      expect(reader.entryIdOf('a b', SCOPE)).toBe(writer.entryIdOf('A B.', SCOPE));
    } finally {
      await other.close();
    }
  });

  it('with a remote embedder: calls it only after an exact miss, and degrades its failures to misses', async () => {
    const local = new HashedNgramEmbedder();
    let calls = 0;
    let down = false;
    const embedder = new FunctionEmbedder({
      name: 'fake/remote',
      dims: local.dims,
      fn: async (texts) => {
        calls++;
        if (down) throw new Error('embedding service down');
        return (await local.embed(texts)).map((v) => Array.from(v));
      },
    });
    const cache = make({ embedder });
    await cache.set('How do I reset my password?', 'a', SCOPE);
    expect(calls).toBe(1);
    expect(await cache.get('how do i reset my password', SCOPE)).toMatchObject({ confidence: 'exact' });
    expect(calls).toBe(1); // the exact key answered: no embedding
    expect(await cache.get('How can I reset my password?', SCOPE)).toMatchObject({ confidence: 'high' });
    expect(calls).toBe(2);
    down = true;
    expect(await cache.get('How would I reset my password?', SCOPE)).toBeUndefined();
    await expect(cache.set('another prompt', 'b', SCOPE)).resolves.toBeUndefined();
    expect(cache.getStats().errors).toBe(2);
  });

  it("two caches with one embedder (the API's and the worker's in one process) embed a prompt once", async () => {
    const local = new HashedNgramEmbedder();
    let texts = 0;
    const fn = async (batch: string[]) => {
      texts += batch.length;
      return (await local.embed(batch)).map((v) => Array.from(v));
    };
    const embedder = new FunctionEmbedder({ name: 'fake/shared', dims: local.dims, fn });
    const api = make({ embedder });
    const samePrefix = `{${baseOf(api).slice(0, -':sem'.length)}}`;
    const worker = new SemanticCache<string>({ redis: client, prefix: samePrefix, embedder });
    const prompt = `What does the shared memo keep ${Date.now()}?`;
    expect(await api.get(prompt, SCOPE, { minConfidence: CacheMatchConfidence.HIGH })).toBeUndefined();
    expect(texts).toBe(1);
    await worker.set(prompt, 'answer', SCOPE);
    expect(texts).toBe(1); // the store reused the lookup's embedding and bands
    expect(await api.get(prompt, SCOPE)).toMatchObject({ confidence: 'exact', value: 'answer' });
    // another embedder object: nothing shared
    const other = new FunctionEmbedder({ name: 'fake/shared', dims: local.dims, fn });
    await new SemanticCache<string>({ redis: client, prefix: samePrefix, embedder: other }).set(
      prompt,
      'answer',
      SCOPE,
    );
    expect(texts).toBe(2);
  });
  it("sends a store's script call on the connection it is given while that one is ready, else on its own", async () => {
    // The worker gives its job's queue connection (cell0-worker.ts): the store and the job's completion
    // behind it then leave in one socket write. Counted on each connection: the semantic-set script's EVALSHA,
    // or its EVAL (the first call on a connection that has not loaded it).
    const lua = luaScript('semantic-set').lua;
    const sha = createHash('sha1').update(lua).digest('hex');
    const setsOn = (conn: RedisConnection) => {
      const spy = jest.spyOn(conn, 'sendCommand');
      return {
        count: () =>
          spy.mock.calls.filter(
            ([c]) =>
              (c.name === 'evalsha' && String(c.args[0]) === sha) ||
              (c.name === 'eval' && String(c.args[0]) === lua),
          ).length,
        restore: () => spy.mockRestore(),
      };
    };
    const cache = make();
    const samePrefix = `{${baseOf(cache).slice(0, -':sem'.length)}}`;
    // another process's view of the scope: a cache with a mirror and kept records of its own
    const reader = new SemanticCache<string>({ redis: client, prefix: samePrefix });
    const other = testRedisConnection('test:via');
    await waitUntilReady(other, 10_000);
    const onOther = setsOn(other);
    const onOwn = setsOn(client.connection);
    try {
      const prompt = `Which connection carried this store ${Date.now()}?`;
      await cache.set(prompt, 'the given one', SCOPE, { connection: other });
      expect(onOther.count()).toBe(1);
      expect(onOwn.count()).toBe(0);
      expect(await reader.get(prompt, SCOPE)).toMatchObject({ confidence: 'exact', value: 'the given one' });
      // a connection that is not ready (closed): the cache's own carries the store. closeRedis can return
      // before ioredis has seen the socket close (the status is still 'ready' until its 'end' event).
      await closeRedis(other);
      if (other.status !== 'end') await once(other, 'end');
      const later = `Which connection carried the later store ${Date.now()}?`;
      await cache.set(later, 'its own', SCOPE, { connection: other });
      expect(onOther.count()).toBe(1);
      expect(onOwn.count()).toBe(1);
      expect(await reader.get(later, SCOPE)).toMatchObject({ confidence: 'exact', value: 'its own' });
      expect(cache.getStats().errors).toBe(0);
    } finally {
      onOther.restore();
      onOwn.restore();
      if (other.status !== 'end') await closeRedis(other);
    }
  });

  /** A remote-style embedder (the hashed one behind a function) that records the texts it embeds. */
  const countingEmbedder = (name: string): { embedder: FunctionEmbedder; embedded: string[] } => {
    const local = new HashedNgramEmbedder();
    const embedded: string[] = [];
    const embedder = new FunctionEmbedder({
      name,
      dims: local.dims,
      fn: async (texts) => {
        embedded.push(...texts);
        return (await local.embed(texts)).map((v) => Array.from(v));
      },
    });
    return { embedder, embedded };
  };

  it('embeds a prompt once for a lookup and the store that follows it (the miss path of one request)', async () => {
    const { embedder, embedded } = countingEmbedder('fake/counting');
    const cache = make({ embedder });
    const prompt = 'Which river flows through Vienna?';
    expect(await cache.get(prompt, SCOPE)).toBeUndefined();
    await cache.set(prompt, 'the Danube', SCOPE);
    expect(embedded).toEqual([prompt]);
    // what the store wrote is found by meaning, with the same vector
    expect(await cache.get('Which river flows through Vienna', SCOPE)).toMatchObject({ value: 'the Danube' });
    await cache.set('Which river flows through Budapest?', 'the Danube', SCOPE);
    expect(embedded).toEqual([prompt, 'Which river flows through Budapest?']);
  });

  it('with index off: stores for the exact key only, without an embedding or any index key', async () => {
    const { embedder, embedded } = countingEmbedder('fake/counting-index');
    const exactOnly = make({ embedder, index: false, defaultMinConfidence: CacheMatchConfidence.EXACT });
    const indexing = make({ embedder });
    const stored = 'How do I reset my password?';
    const paraphrase = 'How can I reset my password?';
    for (const cache of [exactOnly, indexing]) await cache.set(stored, 'the Danube', SCOPE);
    // one embedding: the indexing cache's store; none for the exact-only one
    expect(embedded).toEqual([stored]);
    // the stores wrote no candidate record, band stream entry, generation or slot for the exact-only scope
    const indexKey = (k: string) => /:(vec|bx|gens|next)$/.test(k);
    expect((await keysUnder(raw, `${baseOf(indexing)}:{*`)).filter(indexKey).length).toBe(4);
    const keys = await keysUnder(raw, `${baseOf(exactOnly)}:{*`);
    expect(keys.some((k) => k.includes(':e:'))).toBe(true);
    expect(keys.filter(indexKey)).toEqual([]);
    // the exact key answers both
    for (const cache of [exactOnly, indexing])
      expect(await cache.get(stored.toUpperCase(), SCOPE)).toMatchObject({
        confidence: 'exact',
        value: 'the Danube',
      });
    // by meaning: only the indexed entry is found, even when the exact-only cache is asked at LOW
    expect(await indexing.get(paraphrase, SCOPE, { minConfidence: CacheMatchConfidence.LOW })).toMatchObject({
      confidence: 'high',
      value: 'the Danube',
    });
    expect(
      await exactOnly.get(paraphrase, SCOPE, { minConfidence: CacheMatchConfidence.LOW }),
    ).toBeUndefined();
    expect(exactOnly.getStats().errors).toBe(0);
    // bounded like an indexed scope: the least recently used entry goes
    const small = make({ index: false, maxEntriesPerScope: 2 });
    for (const p of ['first prompt', 'second prompt', 'third prompt']) await small.set(p, p, SCOPE);
    expect(await small.get('first prompt', SCOPE)).toBeUndefined();
    expect(await small.get('third prompt', SCOPE)).toMatchObject({
      confidence: 'exact',
      value: 'third prompt',
    });
    expect(small.getStats().evictions).toBe(1);
    expect(() => make({ index: 'no' as unknown as boolean })).toThrow(/index/);
  });

  it('keeps what a lookup computed for its prompt (the store reuses it) when it missed, not when it hit', async () => {
    const embedder = new HashedNgramEmbedder();
    const cache = make({ embedder });
    const memo = PromptMemo.of(embedder, `${LSH_BANDS}x${LSH_ROWS}`);
    const stored = `Which river flows through Vienna, asked at ${Date.now()}?`;
    await cache.set(stored, 'the Danube', SCOPE);
    const repeat = stored.toUpperCase(); // the same after normalisation: an exact hit, another text
    expect(await cache.get(repeat, SCOPE)).toMatchObject({ confidence: 'exact', value: 'the Danube' });
    expect(memo.prepare(repeat).vec).toBeUndefined();
    const unseen = `How tall is the tower built for the fair of ${Date.now()}?`;
    expect(await cache.get(unseen, SCOPE)).toBeUndefined();
    expect(memo.prepare(unseen).vec).toBeInstanceOf(Float32Array);
  });

  describe('withModelCache', () => {
    it('calls the model once, then serves exact and semantic repeats from the cache', async () => {
      const cache = make();
      const calls: string[] = [];
      const model = withModelCache(
        async (prompt: string, scope: SemanticScope, suffix: string) => {
          calls.push(prompt);
          return `${scope.model}: answer to ${prompt}${suffix}`;
        },
        { cache, ttlSeconds: 60 },
      );
      const first = await model('How do I reset my password?', SCOPE, '!');
      expect(first).toEqual({ value: 'llama3.1:8b: answer to How do I reset my password?!', cached: false });
      const again = await model('how do I reset my password', SCOPE, '!');
      expect(again).toMatchObject({ value: first.value, cached: 'exact', similarity: 1 });
      const para = await model('How can I reset my password?', SCOPE, '!');
      expect(para.cached).toBe('semantic');
      expect(para.value).toBe(first.value);
      expect(calls).toEqual(['How do I reset my password?']);
    });

    it('does not cache failures', async () => {
      const cache = make();
      let n = 0;
      const model = withModelCache(
        async () => {
          if (n++ === 0) throw new Error('model down');
          return 'ok';
        },
        { cache, minConfidence: CacheMatchConfidence.HIGH },
      );
      await expect(model('a prompt', SCOPE)).rejects.toThrow('model down');
      expect(await model('a prompt', SCOPE)).toEqual({ value: 'ok', cached: false });
      expect(await model('a prompt', SCOPE)).toMatchObject({ value: 'ok', cached: 'exact' });
    });
  });
});

describe('SemanticCache with Redis down', () => {
  it('answers a miss fast and never throws from get/set; invalidate throws a typed error', async () => {
    const server = await startPrivateRedis();
    const client = new RedisClient({ url: server.url, breakerThreshold: 3, breakerResetMs: 60_000 });
    try {
      await waitUntilReady(client.connection, 10_000);
      const cache = new SemanticCache<string>({ redis: client, prefix: uniquePrefix('semdown') });
      await cache.set('How do I reset my password?', 'a', SCOPE);
      expect(await cache.get('How can I reset my password?', SCOPE)).toBeDefined();

      const closed = once(client.connection, 'close');
      await server.stop();
      await closed;
      // The first failures open the breaker; every call answers a miss, none throws.
      for (let i = 0; i < 3; i++) {
        expect(await cache.get('How do I reset my password?', SCOPE)).toBeUndefined();
        await expect(cache.set('another prompt', 'b', SCOPE)).resolves.toBeUndefined();
      }
      expect(client.breaker.state).toBe('open');
      // Fast by construction, not by a stopwatch (a busy host makes any call slow): with the breaker open,
      // a lookup is refused before anything is sent — no command, no wait for a connection or a timeout.
      const before = client.breaker.getMetrics();
      for (let i = 0; i < 50; i++)
        expect(await cache.get('How do I reset my password?', SCOPE)).toBeUndefined();
      const after = client.breaker.getMetrics();
      const attempted = (m: typeof before) => m.successes + m.failures + m.timeouts;
      expect(attempted(after)).toBe(attempted(before));
      expect(after.rejections - before.rejections).toBeGreaterThanOrEqual(50);
      await expect(cache.set('yet another prompt', 'c', SCOPE)).resolves.toBeUndefined();
      await expect(cache.reportFalseHit(cache.entryIdOf('x', SCOPE))).resolves.toBeUndefined();
      const err = await rejectionOf(cache.invalidate({ model: SCOPE.model }));
      expect((err as { code?: string }).code).toMatch(/^CELL0_(BREAKER_OPEN|REDIS_UNAVAILABLE)$/);
      const s = cache.getStats();
      expect(s.errors).toBeGreaterThanOrEqual(57);
      expect(s.misses).toBeGreaterThanOrEqual(53);
      // Bring Redis back before closing: ioredis lingers ~2 s after a refused reconnect otherwise.
      await server.start();
      await until(() => client.connection.status === 'ready', 10_000, 'the client to reconnect');
    } finally {
      await client.close();
      await server.destroy();
    }
  });
});
