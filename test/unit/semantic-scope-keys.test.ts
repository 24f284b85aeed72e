import { HashedNgramEmbedder } from '../../shared/cache/semantic/embedder';
import { LastScope } from '../../shared/cache/semantic/last-scope';
import { seededRandom } from '../../shared/cache/semantic/lsh';
import { PromptMemo } from '../../shared/cache/semantic/prompt-memo';
import { normalizePrompt } from '../../shared/cache/semantic/text';
import {
  bandFields,
  bandSuffix,
  scopeHash,
  scopeKeysOf,
  type ScopeKeys,
  type SemanticScope,
} from '../../shared/cache/semantic/scope';

const SPACE = 'lexical-v1-lx1/512';

describe('scope hashes', () => {
  // Stored entries are found by these hashes: they must not change (values from before the keys were kept).
  const pinned: [SemanticScope, string][] = [
    [{ model: 'qwen2.5:0.5b', params: { max_tokens: 8 } }, 'd06f90434edf90c10785e7973a451234'],
    [
      {
        model: 'm',
        params: { temperature: 0.7, top_p: 0.9, stop: ['\n', 'x'] },
        system: 'Be brief',
        tenant: 't1',
      },
      '0a94b1b1872e858ca1f09f3334f71542',
    ],
    [
      { model: 'm', params: {}, system: '', tenant: '', context: null } as SemanticScope,
      '1918ffa66211d9d08acc0df1464aff55',
    ],
    [
      {
        model: 'm',
        params: { a: undefined, z: 1, b: { y: 2, x: [1, { d: 1, c: undefined }] } },
        context: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'yo' },
        ],
      },
      '1fbb0cd147478f456f51c40dc1a9f688',
    ],
    [{ model: 'm', params: { seed: 3 }, context: 'x', tenant: 'ns' }, '79a9dc773982a4a26e7ab78496e7d98b'],
  ];

  it.each(pinned)('keeps the hash of %j', (scope, expected) => {
    expect(scopeHash(scope, SPACE)).toBe(expected);
    expect(scopeKeysOf(new Map(), 'cell0:sem', scope, SPACE).hash).toBe(expected);
  });

  it('folds key order and absent members, and keeps every other difference apart', () => {
    const a = scopeHash({ model: 'm', params: { top_p: 0.9, temperature: 0.7 } }, SPACE);
    expect(scopeHash({ model: 'm', params: { temperature: 0.7, top_p: 0.9, seed: undefined } }, SPACE)).toBe(
      a,
    );
    expect(scopeHash({ model: 'm', params: { temperature: 0.8, top_p: 0.9 } }, SPACE)).not.toBe(a);
    expect(scopeHash({ model: 'm', params: { temperature: 0.7, top_p: 0.9 }, tenant: 't' }, SPACE)).not.toBe(
      a,
    );
    expect(scopeHash({ model: 'm', params: { temperature: 0.7, top_p: 0.9 } }, 'hashed/256')).not.toBe(a);
    expect(
      scopeHash({ model: 'm', params: { ['__proto__']: 1 } as Record<string, unknown> }, SPACE),
    ).not.toBe(scopeHash({ model: 'm' }, SPACE));
  });

  it('keeps the keys of a scope once, by canonical form, and still refuses a scope without a model', () => {
    const kept = new Map<string, ScopeKeys>();
    const k1 = scopeKeysOf(kept, 'cell0:sem', { model: 'm', params: { b: 1, a: 2 } }, SPACE);
    const k2 = scopeKeysOf(kept, 'cell0:sem', { model: 'm', params: { a: 2, b: 1 } }, SPACE);
    expect(k2).toBe(k1);
    expect(kept.size).toBe(1);
    expect(scopeKeysOf(kept, 'cell0:sem', { model: 'm', params: { a: 3, b: 1 } }, SPACE)).not.toBe(k1);
    expect(() => scopeKeysOf(kept, 'cell0:sem', { model: '' }, SPACE)).toThrow(/scope.model/);
  });
});

describe('the prompt memo shared per embedder', () => {
  it('is one memo per embedder object and LSH layout', () => {
    const e1 = new HashedNgramEmbedder();
    const e2 = new HashedNgramEmbedder();
    expect(PromptMemo.of(e1, '20x12')).toBe(PromptMemo.of(e1, '20x12'));
    expect(PromptMemo.of(e1, '20x12')).not.toBe(PromptMemo.of(e2, '20x12'));
    expect(PromptMemo.of(e1, '20x12')).not.toBe(PromptMemo.of(e1, '16x12'));
    const p = PromptMemo.of(e1, '20x12').get('How do I reset my password?');
    expect(PromptMemo.of(e1, '20x12').get('How do I reset my password?')).toBe(p);
  });

  it('keeps what prepare() makes only once keep() is called, and answers it from then on', () => {
    const memo = new PromptMemo();
    const text = 'How do I rotate my API keys?';
    const p = memo.prepare(text);
    expect(p.normalized).toBe(normalizePrompt(text));
    expect(memo.prepare(text)).not.toBe(p);
    memo.keep(text, p);
    expect(memo.prepare(text)).toBe(p);
    expect(memo.get(text)).toBe(p);
    const kept = new PromptMemo(0);
    kept.keep(text, p);
    expect(kept.prepare(text)).not.toBe(p);
  });
});

describe('band fields', () => {
  it('lists every band as index:value (base 36), comma-separated, in band order, as the scripts read them', () => {
    expect(bandFields([1, 35, 4095, 0])).toBe('0:1,1:z,2:35r,3:0');
    expect(bandFields([7])).toBe('0:7');
    expect(bandFields([])).toBe('');
    const bands = Array.from({ length: 20 }, (_, i) => (i * 977) % 4096);
    expect(bandFields(bands)).toBe(bands.map((v, i) => bandSuffix(i, v)).join(','));
  });

  it('writes any band value as bandSuffix does: large, negative and fractional ones, and many bands', () => {
    const odd = [2 ** 53 - 1, 0, 36, 36 ** 5, -7, 1.5, 4095];
    expect(bandFields(odd)).toBe(odd.map((v, i) => bandSuffix(i, v)).join(','));
    expect(bandFields(odd.slice(0, 4))).toBe('0:2gosa7pa2gv,1:0,2:10,3:100000');
    const many = Array.from({ length: 100 }, (_, i) => i * 36 ** 3);
    expect(bandFields(many)).toBe(many.map((v, i) => bandSuffix(i, v)).join(','));
  });

  it('keeps what a prompt costs to prepare on one object shape, whatever is filled in first', () => {
    const memo = new PromptMemo(8);
    const a = memo.get('first prompt');
    const b = memo.get('second prompt');
    a.fields = '0:1';
    b.quantized = Buffer.alloc(1);
    // every field exists from the start, in one order: no object gains a property later
    expect(Object.keys(a)).toEqual(Object.keys(b));
    expect(Object.keys(a)).toEqual(
      expect.arrayContaining(['vec', 'bands', 'hasBands', 'fields', 'quantized']),
    );
  });
});

describe('LastScope (the keys of the scope met last)', () => {
  it('answers only for a scope equal to the last one, field by field, whatever was changed in between', () => {
    const rand = seededRandom('last-scope');
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const models = ['m', 'n'];
    const systems = [undefined, 'Be brief', ''];
    const tenants = [undefined, 't1', 't2'];
    const values = [undefined, 0, 1, 8, '8', null, true, ['\n'], { x: 1 }];
    const last = new LastScope();
    const kept = new Map<string, ScopeKeys>();
    let scope: SemanticScope = { model: 'm', params: { max_tokens: 8 } };
    let reused = 0;
    for (let i = 0; i < 5000; i++) {
      // the next scope: often the same fields in a new object, sometimes the same object changed in place
      const r = rand();
      if (r < 0.4) scope = { ...scope, params: scope.params ? { ...scope.params } : undefined };
      else if (r < 0.55 && scope.params)
        scope.params[pick(['max_tokens', 'temperature', 'stop'])] = pick(values);
      else if (r < 0.65) scope.model = pick(models);
      else if (r < 0.75) scope = { ...scope, system: pick(systems), tenant: pick(tenants) };
      else if (r < 0.8)
        scope = { ...scope, context: pick([undefined, null, [{ role: 'user', content: 'a' }]]) };
      else if (r < 0.85) scope = { ...scope, params: pick([undefined, {}, { max_tokens: 8 }]) };
      const want = scopeHash(scope, SPACE);
      const got = last.get(scope);
      if (got) {
        reused++;
        expect(got.hash).toBe(want);
      } else {
        const keys = scopeKeysOf(kept, 'cell0:sem', scope, SPACE);
        expect(keys.hash).toBe(want);
        last.set(scope, keys);
      }
    }
    expect(reused).toBeGreaterThan(1000);
  });

  it('keeps no scope with a context or an object among its params', () => {
    const last = new LastScope();
    const keys = scopeKeysOf(new Map(), 'cell0:sem', { model: 'm' }, SPACE);
    const stop = ['\n'];
    last.set({ model: 'm', params: { stop } }, keys);
    expect(last.get({ model: 'm', params: { stop } })).toBeUndefined();
    last.set({ model: 'm', context: [{ role: 'user', content: 'a' }] }, keys);
    expect(last.get({ model: 'm', context: [{ role: 'user', content: 'a' }] })).toBeUndefined();
    last.set({ model: 'm', params: { max_tokens: 8, seed: undefined } }, keys);
    expect(last.get({ model: 'm', params: { max_tokens: 8 } })).toBe(keys);
    expect(last.get({ model: 'm', params: { max_tokens: 8, top_k: 1 } })).toBeUndefined();
    expect(last.get({ model: 'm' })).toBeUndefined();
  });
});
