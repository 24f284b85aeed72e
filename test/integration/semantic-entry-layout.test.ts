import { type RedisConnection } from '../../shared/redis/cluster';
import { CacheMatchConfidence, SemanticCache, type SemanticScope } from '../../shared/cache/semantic';
import { keyBase } from '../../shared/cache/semantic/scope';
import { denseAt } from '../../shared/cache/semantic/vector-codec';
import { closeRedis, waitUntilReady } from '../../shared/redis/connection';
import { RedisClient } from '../../shared/redis/redis-client';
import { deleteMatching, testRedisConnection, testRedisUrl, uniquePrefix } from '../helpers/redis';

const SCOPE: SemanticScope = { model: 'llama3.1:8b', params: { temperature: 0.2 } };

// An entry is one string written with its expiry in one command (SET .. PX); entries of the older layout
// (a hash v / p / t with PEXPIRE) are still answered until they expire.
describe('SemanticCache entry layout (on Redis)', () => {
  const prefix = uniquePrefix('semlayout');
  let raw: RedisConnection;
  let client: RedisClient;
  let n = 0;
  const make = (): { cache: SemanticCache<string>; entryKey: (prompt: string) => string } => {
    const p = `{${prefix.replace(/[{}]/g, '')}-${++n}}`;
    const cache = new SemanticCache<string>({ redis: client, prefix: p });
    const entryKey = (prompt: string) => {
      const [hash, id] = cache.entryIdOf(prompt, SCOPE).split(':');
      return `${keyBase(p)}:{${hash}}:e:${id}`;
    };
    return { cache, entryKey };
  };

  beforeAll(async () => {
    raw = testRedisConnection('test:raw');
    client = new RedisClient({ url: testRedisUrl() });
    await waitUntilReady(client.connection, 10_000);
  });

  afterAll(async () => {
    await deleteMatching(raw, `${prefix.replace(/[{}]/g, '')}*`);
    await client.close();
    await closeRedis(raw);
  });

  it('stores an entry as one string that expires with its TTL, prompt and value intact', async () => {
    const { cache, entryKey } = make();
    const prompt = 'Wie lösche ich\nmeinen Schlüssel? ✓';
    const value = 'Antwort mit\nZeilen, "Anführungszeichen" und ümläuten';
    await cache.set(prompt, value, SCOPE, { ttlSeconds: 30 });
    const key = entryKey(prompt);
    expect(await raw.type(key)).toBe('string');
    const left = await raw.pttl(key);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(30_000);
    for (const minConfidence of [CacheMatchConfidence.EXACT, CacheMatchConfidence.HIGH]) {
      const hit = await cache.get(prompt, SCOPE, { minConfidence });
      expect(hit).toMatchObject({ value, prompt, confidence: CacheMatchConfidence.EXACT });
      expect(hit!.storedAt).toBeGreaterThan(Date.now() - 600_000);
    }
    // Stored again: one string still, the new value.
    await cache.set(prompt, 'second', SCOPE, { ttlSeconds: 30 });
    expect(await raw.type(key)).toBe('string');
    expect((await cache.get(prompt, SCOPE))?.value).toBe('second');
  });

  it('answers an entry of the older hash layout, and a store replaces it with the string layout', async () => {
    const { cache, entryKey } = make();
    const prompt = 'How do I rotate my API key?';
    await cache.set('an unrelated prompt about tea', 'tea', SCOPE); // the scope's records exist
    const key = entryKey(prompt);
    const [sec] = await raw.time();
    await raw.hset(key, 'v', JSON.stringify('old layout answer'), 'p', prompt, 't', `${Number(sec) * 1000}`);
    await raw.pexpire(key, 30_000);
    for (const minConfidence of [CacheMatchConfidence.EXACT, CacheMatchConfidence.HIGH]) {
      const hit = await cache.get(prompt, SCOPE, { minConfidence });
      expect(hit).toMatchObject({ value: 'old layout answer', confidence: CacheMatchConfidence.EXACT });
    }
    await cache.set(prompt, 'new layout answer', SCOPE);
    expect(await raw.type(key)).toBe('string');
    expect((await cache.get(prompt, SCOPE))?.value).toBe('new layout answer');
  });

  it('keeps a sparse vector in the candidate record, and still reads a record with the dense vector', async () => {
    const { cache, entryKey } = make();
    const stored = 'How do I reset my password?';
    await cache.set(stored, 'reset it in the settings', SCOPE, { ttlSeconds: 30 });
    const vecKey = `${entryKey(stored).split(':e:')[0]}:vec`;
    const records = await raw.hgetallBuffer(vecKey);
    const slots = Object.keys(records);
    expect(slots).toHaveLength(1);
    const rec = records[slots[0]!]!;
    const at = rec.indexOf(10, 15) + 1;
    expect(rec[at]).toBe(0x80); // sparse: ~20 non-zero components of 512
    expect(rec.length).toBeLessThan(200);
    const paraphrase = 'How can I reset my password?';
    const viaSparse = await cache.get(paraphrase, SCOPE, { minConfidence: CacheMatchConfidence.LOW });
    expect(viaSparse).toMatchObject({ value: 'reset it in the settings', prompt: stored });
    expect(viaSparse!.confidence).not.toBe(CacheMatchConfidence.EXACT);
    // The record as an earlier version wrote it: the 512 int8 bytes. Same hit, same similarity.
    const dense = Buffer.concat([rec.subarray(0, at), denseAt(rec, at, 512)!, Buffer.from(stored)]);
    expect(dense.length).toBe(at + 512 + stored.length);
    await raw.hset(vecKey, slots[0]!, dense);
    const viaDense = await cache.get(paraphrase, SCOPE, { minConfidence: CacheMatchConfidence.LOW });
    expect(viaDense).toMatchObject({ value: 'reset it in the settings', prompt: stored });
    expect(viaDense!.similarity).toBe(viaSparse!.similarity);
  });

  it('names the band fields in the meta record, and still removes entries whose record names band values', async () => {
    const { cache, entryKey } = make();
    const tag = entryKey('x').split(':e:')[0]!;
    const codes = async (): Promise<number> => {
      let total = 0;
      for (const gen of await raw.zrange(`${tag}:gens`, 0, -1))
        for (const v of await raw.hvalsBuffer(`${tag}:b:${gen}`)) total += v.length;
      return total / 3;
    };
    const prompts = ['How do I reset my password?', 'Where is the nearest train station?'];
    for (const p of prompts) await cache.set(p, `answer: ${p}`, SCOPE, { ttlSeconds: 30 });
    expect(await codes()).toBe(40);
    const meta = `${tag}:meta`;
    const idOf = (p: string) => cache.entryIdOf(p, SCOPE).split(':')[1]!;
    // "slot|band fields|generation": the fields as the lookup sends them ("index:value", comma-separated)
    const rec = (await raw.hget(meta, idOf(prompts[0]!)))!;
    const [, fields, gen] = rec.split('|');
    expect(fields!.split(',').map((f) => f.split(':')[0])).toEqual([...Array(20).keys()].map(String));
    // the bucket holds the entry under the first named field: one or more 3-byte slot codes
    const bucket = await raw.hgetBuffer(`${tag}:b:${gen}`, fields!.split(',')[0]!);
    expect(bucket?.length ?? 0).toBeGreaterThanOrEqual(3);
    expect(bucket!.length % 3).toBe(0);
    // The records as earlier stores wrote them (band values only) are taken out of all 20 of their buckets all
    // the same: when the entry is removed, and when its prompt is stored again (it leaves its old buckets).
    const asValues = async (prompt: string): Promise<void> => {
      const [s, f, g] = (await raw.hget(meta, idOf(prompt)))!.split('|');
      const values = f!.split(',').map((x) => x.split(':')[1]);
      await raw.hset(meta, idOf(prompt), `${s}|${values.join(',')}|${g}`);
    };
    await asValues(prompts[0]!);
    await cache.reportFalseHit(cache.entryIdOf(prompts[0]!, SCOPE));
    expect(await codes()).toBe(20);
    await asValues(prompts[1]!);
    await cache.set(prompts[1]!, 'again', SCOPE, { ttlSeconds: 30 });
    expect(await codes()).toBe(20);
    expect(await cache.get(prompts[1]!, SCOPE)).toMatchObject({ value: 'again' });
  });

  it('gives the scope containers an expiry, also a vec hash made anew under a meta hash that stayed', async () => {
    const { cache, entryKey } = make();
    const tag = entryKey('x').split(':e:')[0]!;
    const containers = ['lru', 'exp', 'meta', 'vec', 'next', 'gens'].map((k) => `${tag}:${k}`);
    // A prompt with a control character is not indexed: a meta record, no slot, no vec hash.
    await cache.set('plain\u0007bell', 'v0', SCOPE, { ttlSeconds: 30 });
    expect(await raw.exists(`${tag}:vec`)).toBe(0);
    await cache.set('How do I reset my password?', 'v1', SCOPE, { ttlSeconds: 30 });
    for (const key of containers) expect(await raw.pttl(key)).toBeGreaterThan(30_000);
    // The only indexed entry goes (the vec hash with it); the next indexed store makes the vec hash anew.
    await cache.reportFalseHit(cache.entryIdOf('How do I reset my password?', SCOPE));
    expect(await raw.exists(`${tag}:vec`)).toBe(0);
    expect(await raw.pttl(`${tag}:meta`)).toBeGreaterThan(30_000);
    await cache.set('Where is the nearest train station?', 'v2', SCOPE, { ttlSeconds: 30 });
    expect(await raw.pttl(`${tag}:vec`)).toBeGreaterThan(30_000);
  });
});
