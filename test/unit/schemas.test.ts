import { InputTooLargeError, ValidationError } from '../../shared/errors';
import { jobIdFor } from '../../shared/queues/job-id';
import { QueueName } from '../../shared/queues/names';
import {
  inferenceRequestSchema,
  parseInferenceRequest,
  parseSearchRequest,
} from '../../shared/queues/schemas';

const limits = { maxPromptBytes: 100, maxQueryBytes: 20 };

function fieldsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ValidationError) return err.issues.map((i) => i.field);
    throw err;
  }
  throw new Error('expected a ValidationError');
}

describe('request schemas', () => {
  it('names the field of each problem', () => {
    expect(fieldsOf(() => parseInferenceRequest({ prompt: 'x' }, limits))).toEqual(['model']);
    expect(fieldsOf(() => parseInferenceRequest({ model: 'm' }, limits))).toEqual(['prompt']);
    expect(fieldsOf(() => parseInferenceRequest({ model: 'm', prompt: 'x', temprature: 1 }, limits))).toEqual(
      ['temprature'],
    );
    expect(
      fieldsOf(() =>
        parseInferenceRequest({ model: 'm', prompt: 'x', params: { temperature: 'hot' } }, limits),
      ),
    ).toEqual(['params.temperature']);
    expect(
      fieldsOf(() => parseInferenceRequest({ model: 'm', prompt: 'x', params: { max_tokens: 1.5 } }, limits)),
    ).toEqual(['params.max_tokens']);
    expect(fieldsOf(() => parseInferenceRequest({ model: 'bad model!', prompt: 'x' }, limits))).toEqual([
      'model',
    ]);
    expect(
      fieldsOf(() =>
        parseInferenceRequest({ model: 'm', messages: [{ role: 'robot', content: 'x' }] }, limits),
      ),
    ).toEqual(['messages.0.role']);
    expect(
      fieldsOf(() =>
        parseInferenceRequest(
          { model: 'm', prompt: 'x', messages: [{ role: 'user', content: 'x' }] },
          limits,
        ),
      ),
    ).toEqual(['messages']);
    expect(fieldsOf(() => parseSearchRequest({ query: '   ' }, limits))).toEqual(['query']);
    expect(fieldsOf(() => parseSearchRequest({ query: 'x', type: 'gossip' }, limits))).toEqual(['type']);
    expect(fieldsOf(() => parseSearchRequest({ query: 'x', limit: 500 }, limits))).toEqual(['limit']);
    expect(fieldsOf(() => parseSearchRequest([], limits))).toEqual(['(body)']);
  });

  it('refuses a prompt over the byte limit, counting UTF-8 bytes across prompt, system and messages', () => {
    expect(() => parseInferenceRequest({ model: 'm', prompt: 'x'.repeat(100) }, limits)).not.toThrow();
    const err = (() => {
      try {
        parseInferenceRequest({ model: 'm', prompt: 'é'.repeat(51) }, limits);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InputTooLargeError);
    expect(err).toMatchObject({
      code: 'CELL0_INPUT_TOO_LARGE',
      field: 'prompt',
      limitBytes: 100,
      actualBytes: 102,
    });
    expect(() =>
      parseInferenceRequest(
        {
          model: 'm',
          messages: [
            { role: 'system', content: 'x'.repeat(60) },
            { role: 'user', content: 'y'.repeat(60) },
          ],
        },
        limits,
      ),
    ).toThrow(expect.objectContaining({ field: 'messages' }));
    expect(() => parseSearchRequest({ query: 'q'.repeat(21) }, limits)).toThrow(
      expect.objectContaining({ field: 'query' }),
    );
  });

  it('fills defaults', () => {
    expect(parseInferenceRequest({ model: 'm', prompt: 'x' }, limits).params).toEqual({
      temperature: 0.8,
      top_p: 0.9,
      top_k: 40,
      repeat_penalty: 1.1,
      max_tokens: 512,
    });
    expect(parseSearchRequest({ query: ' a  b ' }, limits)).toEqual({
      query: 'a b',
      provider: 'local',
      type: 'web',
      limit: 10,
      offset: 0,
    });
  });

  it('a plain { model, prompt[, system] } request parses to exactly what the schema makes of it', () => {
    // parseInferenceRequest answers the common shape without running the schema; the two must agree to the
    // key order (the job id hashes the JSON), and on every refusal.
    const big = { maxPromptBytes: 1 << 20, maxQueryBytes: 20 };
    const inputs: unknown[] = [
      { model: 'm', prompt: 'x' },
      { prompt: 'hello', model: 'qwen2.5:7b' },
      { model: 'llama3.1:8b-instruct-q4_K_M', prompt: 'a\u0000b\nc', system: 'be brief' },
      { system: '', prompt: 'p', model: 'org/model@v1+x' },
      { model: 'm', prompt: '\u{1F600} ünïcödé' },
      { model: 'M'.repeat(200), prompt: 'x' },
      // Refused or altered by the schema: the result (or the error) must still be the schema's.
      { model: 'M'.repeat(201), prompt: 'x' },
      { model: '', prompt: 'x' },
      { model: '-m', prompt: 'x' },
      { model: 'bad model!', prompt: 'x' },
      { model: 'm', prompt: '' },
      { model: 'm', prompt: '\uD800' },
      { model: 'm', prompt: 'x', system: '\uDC00' },
      { model: 'm', prompt: 'x', system: undefined },
      { model: 'm', prompt: 'x', system: 3 },
      { model: 'm', prompt: 7 },
      { model: 7, prompt: 'x' },
      { model: 'm', prompt: 'x', params: {} },
      { model: 'm', prompt: 'x', params: { temperature: 0 } },
      { model: 'm', prompt: 'x', params: { max_tokens: 8 } },
      { params: { top_p: 0.5, seed: 3, max_tokens: 8, num_ctx: 256 }, prompt: 'x', model: 'm', system: 's' },
      {
        model: 'm',
        prompt: 'x',
        params: {
          max_tokens: 1,
          num_ctx: 128,
          repeat_penalty: 0,
          seed: 0,
          temperature: 0,
          top_k: 1,
          top_p: 1e-9,
        },
      },
      {
        model: 'm',
        prompt: 'x',
        params: {
          max_tokens: 131_072,
          num_ctx: 1_048_576,
          repeat_penalty: 2,
          seed: 2 ** 31 - 1,
          temperature: 2,
          top_k: 1000,
          top_p: 1,
        },
      },
      { model: 'm', prompt: 'x', params: { temperature: -0 } },
      { model: 'm', prompt: 'x', params: { stop: ['\n'] } },
      { model: 'm', prompt: 'x', params: { max_tokens: 8, stop: ['\n'] } },
      { model: 'm', prompt: 'x', params: undefined },
      { model: 'm', prompt: 'x', params: null },
      { model: 'm', prompt: 'x', params: [] },
      { model: 'm', prompt: 'x', params: { seed: undefined } },
      { model: 'm', prompt: 'x', params: { max_tokens: undefined } },
      { model: 'm', prompt: 'x', params: { constructor: 1 } },
      { model: 'm', prompt: 'x', params: { toString: 1 } },
      { model: 'm', prompt: 'x', params: JSON.parse('{"__proto__": {"max_tokens": 1}}') as unknown },
      { model: 'm', prompt: 'x', params: { max_tokens: 8, extra: 1 } },
      { model: 'm', prompt: 'x', params: Object.assign(Object.create(null) as object, { max_tokens: 8 }) },
      // Out of range, of another type, or not finite: the schema's refusal.
      { model: 'm', prompt: 'x', params: { max_tokens: 0 } },
      { model: 'm', prompt: 'x', params: { max_tokens: 131_073 } },
      { model: 'm', prompt: 'x', params: { max_tokens: 8.5 } },
      { model: 'm', prompt: 'x', params: { max_tokens: '8' } },
      { model: 'm', prompt: 'x', params: { max_tokens: Infinity } },
      { model: 'm', prompt: 'x', params: { num_ctx: 127 } },
      { model: 'm', prompt: 'x', params: { num_ctx: 1_048_577 } },
      { model: 'm', prompt: 'x', params: { repeat_penalty: -0.1 } },
      { model: 'm', prompt: 'x', params: { repeat_penalty: 2.01 } },
      { model: 'm', prompt: 'x', params: { seed: -1 } },
      { model: 'm', prompt: 'x', params: { seed: 2 ** 31 } },
      { model: 'm', prompt: 'x', params: { seed: 1.5 } },
      { model: 'm', prompt: 'x', params: { temperature: NaN } },
      { model: 'm', prompt: 'x', params: { temperature: 2.0001 } },
      { model: 'm', prompt: 'x', params: { temperature: true } },
      { model: 'm', prompt: 'x', params: { top_k: 0 } },
      { model: 'm', prompt: 'x', params: { top_k: 1001 } },
      { model: 'm', prompt: 'x', params: { top_k: 2.5 } },
      { model: 'm', prompt: 'x', params: { top_p: 0 } },
      { model: 'm', prompt: 'x', params: { top_p: -0 } },
      { model: 'm', prompt: 'x', params: { top_p: 1.5 } },
      { model: 'm', prompt: 'x', params: { top_p: -Infinity } },
      { model: '', prompt: 'x', params: { max_tokens: 8 } },
      { model: 'm', prompt: '', params: { max_tokens: 8 } },
      { model: 'm', prompt: 'x', cache: { noCache: true } },
      { model: 'm', prompt: 'x', extra: 1 },
      { model: 'm', messages: [{ role: 'user', content: 'x' }] },
      Object.assign(Object.create(null) as object, { model: 'm', prompt: 'x' }),
      null,
      'm',
      [{ model: 'm', prompt: 'x' }],
    ];
    for (const input of inputs) {
      const viaSchema = inferenceRequestSchema.safeParse(input);
      let got: unknown;
      let err: unknown;
      try {
        got = parseInferenceRequest(input, big);
      } catch (e) {
        err = e;
      }
      if (!viaSchema.success) {
        expect({ input, err: err instanceof ValidationError }).toEqual({ input, err: true });
        continue;
      }
      expect({ input, got: JSON.stringify(got) }).toEqual({ input, got: JSON.stringify(viaSchema.data) });
      expect(got).toEqual(viaSchema.data);
      expect(jobIdFor(QueueName.INFERENCE, got)).toBe(jobIdFor(QueueName.INFERENCE, viaSchema.data));
    }
    // Each request gets its own params object (a caller that changes one changes no other request).
    const a = parseInferenceRequest({ model: 'm', prompt: 'x' }, big);
    const b = parseInferenceRequest({ model: 'm', prompt: 'y' }, big);
    expect(a.params).not.toBe(b.params);
    a.params.temperature = 0;
    expect(b.params.temperature).toBe(0.8);
  });

  it('numeric params take the fast path, and it agrees with the schema on every mix of values', () => {
    const big = { maxPromptBytes: 1 << 20, maxQueryBytes: 20 };
    const spy = jest.spyOn(inferenceRequestSchema, 'safeParse');
    try {
      parseInferenceRequest({ model: 'm', prompt: 'x', params: { max_tokens: 8, temperature: 0.2 } }, big);
      expect(spy).not.toHaveBeenCalled();
      // Values at, inside and just past each bound, and of other types; a fixed pseudo-random walk.
      const pool: unknown[] = [
        undefined,
        0,
        -0,
        1,
        2,
        8,
        0.5,
        1.5,
        2.01,
        127,
        128,
        1000,
        1001,
        131_072,
        131_073,
        1_048_576,
        1_048_577,
        2 ** 31 - 1,
        2 ** 31,
        -1,
        NaN,
        Infinity,
        '8',
        null,
        true,
        [1],
      ];
      const keys = ['max_tokens', 'num_ctx', 'repeat_penalty', 'seed', 'temperature', 'top_k', 'top_p'];
      let r = 12345; // xorshift32
      const rand = (n: number) => {
        r ^= r << 13;
        r ^= r >>> 17;
        r ^= r << 5;
        return (r >>> 0) % n;
      };
      let accepted = 0;
      for (let i = 0; i < 3000; i++) {
        const params: Record<string, unknown> = {};
        for (const k of keys) {
          // Half the keys left out; an explicit undefined now and then.
          if (rand(2) === 0) params[k] = pool[rand(pool.length)];
        }
        const input = { model: 'm', prompt: 'x', params };
        const viaSchema = inferenceRequestSchema.safeParse(input);
        let got: unknown;
        try {
          got = parseInferenceRequest(input, big);
        } catch (e) {
          expect({ params, err: e instanceof ValidationError, schema: viaSchema.success }).toEqual({
            params,
            err: true,
            schema: false,
          });
          continue;
        }
        expect({ params, ok: viaSchema.success }).toEqual({ params, ok: true });
        if (!viaSchema.success) continue;
        accepted++;
        expect({ params, got: JSON.stringify(got) }).toEqual({ params, got: JSON.stringify(viaSchema.data) });
        expect(got).toEqual(viaSchema.data);
      }
      expect(accepted).toBeGreaterThan(100);
    } finally {
      spy.mockRestore();
    }
  });
  it('messages and cache controls take the fast path, and it agrees with the schema on every mix of values', () => {
    const big = { maxPromptBytes: 1 << 20, maxQueryBytes: 20 };
    const spy = jest.spyOn(inferenceRequestSchema, 'safeParse');
    try {
      // The OpenAI routes' request: no schema run.
      parseInferenceRequest(
        {
          model: 'm',
          messages: [{ role: 'user', content: 'hi' }],
          params: { max_tokens: 8 },
          cache: { namespace: 't:u' },
        },
        big,
      );
      expect(spy).not.toHaveBeenCalled();
      const message: unknown[] = [
        { role: 'user', content: 'hi' },
        { content: 'yo', role: 'assistant' },
        { role: 'system', content: '' },
        { role: 'developer', content: 'x' },
        { role: 'user' },
        { role: 'user', content: 1 },
        { role: 'user', content: 'a\uD800b' },
        { role: 'user', content: 'x', name: 'n' },
        { role: 'user', content: undefined },
        { role: undefined, content: 'x' },
        { role: 'user', content: 'x', extra: undefined },
        'text',
        null,
        [],
      ];
      const cache: unknown[] = [
        {},
        { namespace: 't' },
        { namespace: 't:u@x/y-z_1.2' },
        { namespace: '' },
        { namespace: 'a b' },
        { namespace: 'x'.repeat(161) },
        { namespace: 7 },
        { noCache: true },
        { noCache: 'yes' },
        { noStore: false, noCache: true },
        { ttlSeconds: 1 },
        { ttlSeconds: 0 },
        { ttlSeconds: 31_536_000 },
        { ttlSeconds: 31_536_001 },
        { ttlSeconds: 1.5 },
        { ttlSeconds: 60, namespace: 'n', noStore: true, noCache: false },
        { other: 1 },
        { namespace: undefined },
        null,
        'no-cache',
      ];
      let r = 987654; // xorshift32
      const rand = (n: number) => {
        r ^= r << 13;
        r ^= r >>> 17;
        r ^= r << 5;
        return (r >>> 0) % n;
      };
      let accepted = 0;
      let viaFast = 0;
      for (let i = 0; i < 3000; i++) {
        const input: Record<string, unknown> = { model: rand(8) === 0 ? 'bad model' : 'm' };
        const shape = rand(6);
        if (shape <= 3) input.messages = Array.from({ length: rand(4) }, () => message[rand(message.length)]);
        if (shape >= 3) input.prompt = rand(5) === 0 ? '' : 'p';
        if (shape === 5 && rand(2) === 0) input.messages = undefined;
        if (rand(5) === 0) input.system = rand(2) === 0 ? 's' : 3;
        if (rand(2) === 0) input.cache = cache[rand(cache.length)];
        if (rand(3) === 0) input.params = rand(2) === 0 ? { max_tokens: 8 } : { stop: ['x'] };
        const viaSchema = inferenceRequestSchema.safeParse(input);
        const calls = spy.mock.calls.length;
        let got: unknown;
        try {
          got = parseInferenceRequest(input, big);
        } catch (e) {
          expect({ input, err: e instanceof ValidationError, schema: viaSchema.success }).toEqual({
            input,
            err: true,
            schema: false,
          });
          continue;
        }
        expect({ input, ok: viaSchema.success }).toEqual({ input, ok: true });
        if (!viaSchema.success) continue;
        accepted++;
        if (spy.mock.calls.length === calls) viaFast++;
        expect({ input, got: JSON.stringify(got) }).toEqual({ input, got: JSON.stringify(viaSchema.data) });
        expect(got).toEqual(viaSchema.data);
      }
      expect(accepted).toBeGreaterThan(200);
      // Both paths were tried: requests the fast path took, and (a stop list) ones it left to the schema.
      expect(viaFast).toBeGreaterThan(accepted / 3);
      expect(viaFast).toBeLessThan(accepted);
    } finally {
      spy.mockRestore();
    }
  });
});
