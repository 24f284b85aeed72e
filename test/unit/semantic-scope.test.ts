import { createHash } from 'node:crypto';
import { scopeHash } from '../../shared/cache/semantic/scope';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 32);

describe('scopeHash', () => {
  it('hashes the canonical JSON of the scope: keys sorted at every level, absent and empty members left out', () => {
    // The text the hash has always been taken of; entries in Redis are keyed by it, so it must not change.
    expect(
      scopeHash(
        {
          tenant: 't1',
          system: '',
          params: { top_p: 0.9, temperature: 0.2, seed: undefined, stop: ['b', 'a'] },
          model: 'llama3.1:8b',
          context: { z: 1, a: [{ y: 2, x: 1 }] },
        },
        'lexical-v1/512',
      ),
    ).toBe(
      sha(
        '{"context":{"a":[{"x":1,"y":2}],"z":1},"model":"llama3.1:8b","params":{"stop":["b","a"],"temperature":0.2,' +
          '"top_p":0.9},"space":"lexical-v1/512","tenant":"t1","v":"cell0/semantic/scope/v1"}',
      ),
    );
    expect(scopeHash({ model: 'm', params: {}, context: null, tenant: '' }, 's/16')).toBe(
      sha('{"model":"m","space":"s/16","v":"cell0/semantic/scope/v1"}'),
    );
    expect(scopeHash({ model: 'm', params: { a: undefined } }, 's/16')).toBe(
      scopeHash({ model: 'm' }, 's/16'),
    );
  });

  it('tells apart scopes that differ in any member', () => {
    const base = { model: 'm', params: { temperature: 0.7 }, system: 's', tenant: 't' };
    const h = scopeHash(base, 'x/8');
    expect(scopeHash({ ...base, params: { temperature: 0.8 } }, 'x/8')).not.toBe(h);
    expect(scopeHash({ ...base, system: 's2' }, 'x/8')).not.toBe(h);
    expect(scopeHash({ ...base, tenant: 't2' }, 'x/8')).not.toBe(h);
    expect(scopeHash(base, 'x/16')).not.toBe(h);
    expect(scopeHash({ tenant: 't', system: 's', params: { temperature: 0.7 }, model: 'm' }, 'x/8')).toBe(h);
  });
});
