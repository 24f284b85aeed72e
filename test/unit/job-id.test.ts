import { canonicalJson, isJobId, jobIdFor } from '../../shared/queues/job-id';
import { parseInferenceRequest, parseSearchRequest } from '../../shared/queues/schemas';

const limits = { maxPromptBytes: 32 * 1024, maxQueryBytes: 2048 };
const inf = (body: unknown) => jobIdFor('inference', parseInferenceRequest(body, limits));

describe('canonical job ids', () => {
  it('ignores key order and formatting', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: 'x' } })).toBe(
      '{"a":{"c":"x","d":[1,{"x":1,"y":2}]},"b":1}',
    );
    const a = inf(
      JSON.parse('{"model":"qwen2.5:7b","prompt":"hi","params":{"temperature":0.2,"max_tokens":20}}'),
    );
    const b = inf(
      JSON.parse(
        '{ "params" : { "max_tokens" : 20 , "temperature" : 0.20 } ,\n "prompt":"hi", "model":"qwen2.5:7b" }',
      ),
    );
    expect(a).toBe(b);
  });

  it('treats an omitted parameter and its default as the same request', () => {
    const a = inf({ model: 'm', prompt: 'hi' });
    const b = inf({
      model: 'm',
      prompt: 'hi',
      params: { temperature: 0.8, top_p: 0.9, top_k: 40, repeat_penalty: 1.1, max_tokens: 512 },
    });
    const c = inf({ model: 'm', prompt: 'hi', params: {} });
    expect(a).toBe(b);
    expect(a).toBe(c);
  });

  it('separates requests that differ in anything that changes the output', () => {
    const base = { model: 'm', prompt: 'hi' };
    const ids = new Set([
      inf(base),
      inf({ ...base, model: 'n' }),
      inf({ ...base, prompt: 'hi ' }),
      inf({ ...base, params: { temperature: 0.7 } }),
      inf({ ...base, params: { seed: 1 } }),
      inf({ ...base, system: 'be brief' }),
      inf({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
    ]);
    expect(ids.size).toBe(7);
  });

  it('folds whitespace in search queries and fills search defaults', () => {
    const a = jobIdFor('search', parseSearchRequest({ query: '  capital   of\tFrance ' }, limits));
    const b = jobIdFor(
      'search',
      parseSearchRequest(
        { query: 'capital of France', provider: 'local', type: 'web', limit: 10, offset: 0 },
        limits,
      ),
    );
    expect(a).toBe(b);
    expect(jobIdFor('search', parseSearchRequest({ query: 'capital of France', limit: 5 }, limits))).not.toBe(
      a,
    );
  });

  it('never gives the same id on two queues, and ids are never all digits', () => {
    const data = { query: 'x' };
    expect(jobIdFor('search', data)).not.toBe(jobIdFor('inference', data));
    expect(jobIdFor('search', data)).toMatch(/^s-[0-9a-f]{32}$/);
    expect(jobIdFor('inference', data)).toMatch(/^i-[0-9a-f]{32}$/);
  });
});

describe('canonical JSON fast path', () => {
  it('validated requests come out with sorted keys, so canonical JSON is plain JSON', () => {
    const inf = parseInferenceRequest(
      { system: 's', params: { top_p: 0.5, stop: ['x'], seed: 3 }, prompt: 'p', model: 'm' },
      limits,
    );
    expect(canonicalJson(inf)).toBe(JSON.stringify(inf));
    const chat = parseInferenceRequest({ model: 'm', messages: [{ role: 'user', content: 'c' }] }, limits);
    expect(canonicalJson(chat)).toBe(JSON.stringify(chat));
    const search = parseSearchRequest({ type: 'news', query: 'q', language: 'en' }, limits);
    expect(canonicalJson(search)).toBe(JSON.stringify(search));
  });

  it('gives the same text on the fast and the slow path', () => {
    const sorted = { a: 1, b: { c: [1, 'x', null], d: 'é"\n' } };
    const shuffled = { b: { d: 'é"\n', c: [1, 'x', null] }, a: 1 };
    expect(canonicalJson(shuffled)).toBe(canonicalJson(sorted));
    expect(canonicalJson({ a: [undefined, 1], b: undefined })).toBe('{"a":[null,1]}');
  });
});

describe('isJobId', () => {
  it('recognises exactly the ids it makes, per queue', () => {
    const i = inf({ model: 'm', prompt: 'hi' });
    const s = jobIdFor('search', parseSearchRequest({ query: 'hi' }, limits));
    expect(isJobId('inference', i)).toBe(true);
    expect(isJobId('search', s)).toBe(true);
    expect(isJobId('search', i)).toBe(false);
    expect(isJobId('inference', s)).toBe(false);
    for (const bad of [
      'id',
      'meta',
      'events',
      'stalled-check',
      `${i}:lock`,
      i.toUpperCase(),
      i.slice(0, -1),
      `${i}0`,
      '',
    ])
      expect({ bad, ok: isJobId('inference', bad) }).toEqual({ bad, ok: false });
  });
});
