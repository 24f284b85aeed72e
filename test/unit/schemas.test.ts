import { InputTooLargeError, ValidationError } from '../../shared/errors';
import { parseInferenceRequest, parseSearchRequest } from '../../shared/queues/schemas';

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
});
