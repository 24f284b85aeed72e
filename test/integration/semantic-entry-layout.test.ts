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
    // Byte for byte what every version's readers parse: stored at, LF, the prompt's length in bytes (not
    // characters: this prompt has umlauts and a check mark), LF, the prompt, the value JSON.
    const storedAt = (await cache.get(prompt, SCOPE))!.storedAt;
    expect(await raw.get(key)).toBe(
      `${storedAt}\n${Buffer.byteLength(prompt)}\n${prompt}${JSON.stringify(value)}`,
    );
    expect(Buffer.byteLength(prompt)).toBeGreaterThan(prompt.length);
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

  it('names the band fields in the meta record and the band events (no buckets in Redis), also for records that name band values', async () => {
    const { cache, entryKey } = make();
    const tag = entryKey('x').split(':e:')[0]!;
    // the band stream's event lines, oldest first
    const events = async (): Promise<string[]> =>
      (await raw.xrange(`${tag}:bx`, '-', '+'))
        .map(([, f]) => f[1] ?? '')
        .join('\n')
        .split('\n')
        .filter((l) => l.length > 0);
    const prompts = ['How do I reset my password?', 'Where is the nearest train station?'];
    for (const p of prompts) await cache.set(p, `answer: ${p}`, SCOPE, { ttlSeconds: 30 });
    const meta = `${tag}:meta`;
    const idOf = (p: string) => cache.entryIdOf(p, SCOPE).split(':')[1]!;
    // "slot|band fields|generation": the fields as the lookup sends them ("index:value", comma-separated)
    const recOf = async (p: string) =>
      (await raw.hget(meta, idOf(p)))!.split('|') as [string, string, string];
    const [slot0, fields0, gen0] = await recOf(prompts[0]!);
    const [slot1, fields1, gen1] = await recOf(prompts[1]!);
    expect(fields0.split(',').map((f) => f.split(':')[0])).toEqual([...Array(20).keys()].map(String));
    // each store told its buckets to the band stream; Redis keeps no bucket
    expect(await events()).toEqual([`+${slot0} ${gen0} ${fields0}`, `+${slot1} ${gen1} ${fields1}`]);
    expect(await raw.exists(`${tag}:b:${gen0}`)).toBe(0);
    // Records as earlier stores wrote them (band values only) leave all 20 of their buckets all the same
    // (the event names the fields): when the entry is removed, and when its prompt is stored again.
    const asValues = async (prompt: string): Promise<void> => {
      const [s, f, g] = await recOf(prompt);
      const values = f.split(',').map((x) => x.split(':')[1]);
      await raw.hset(meta, idOf(prompt), `${s}|${values.join(',')}|${g}`);
    };
    await asValues(prompts[0]!);
    await cache.reportFalseHit(cache.entryIdOf(prompts[0]!, SCOPE));
    expect((await events()).at(-1)).toBe(`-${slot0} ${gen0} ${fields0}`);
    await asValues(prompts[1]!);
    await cache.set(prompts[1]!, 'again', SCOPE, { ttlSeconds: 30 });
    const [slot2, fields2, gen2] = await recOf(prompts[1]!);
    expect((await events()).slice(-2)).toEqual([
      `-${slot1} ${gen1} ${fields1}`,
      `+${slot2} ${gen2} ${fields2}`,
    ]);
    expect(await cache.get(prompts[1]!, SCOPE)).toMatchObject({ value: 'again' });
  });

  it('gives the scope containers an expiry, also a vec hash made anew under a meta hash that stayed', async () => {
    const { cache, entryKey } = make();
    const tag = entryKey('x').split(':e:')[0]!;
    const containers = ['lru', 'exp', 'meta', 'vec', 'next', 'gens', 'bx'].map((k) => `${tag}:${k}`);
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
