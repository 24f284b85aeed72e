import {
  answerMeta,
  chunkBody,
  chunkTemplates,
  textChunkWriter,
} from '../../producers/api/openai/openai-shapes';

describe('textChunkWriter', () => {
  const texts = [
    '',
    'Hello',
    ' "quoted" \\ back\nslash',
    'tab\tnul\u0000',
    'é ü 中文 😀',
    '</script>',
    '{"a":1}',
  ];
  test.each([
    ['chat', true],
    ['chat', false],
    ['completion', true],
    ['completion', false],
  ] as const)('%s (include_usage %s): the same JSON as chunkBody for every text', (kind, includeUsage) => {
    const meta = answerMeta(kind, 'i-0123abcd', 'qwen2.5:0.5b');
    const write = textChunkWriter(meta, includeUsage);
    for (const text of texts) {
      expect(write(text)).toBe(JSON.stringify(chunkBody(meta, { text }, includeUsage)));
      expect(JSON.parse(write(text))).toEqual(chunkBody(meta, { text }, includeUsage));
    }
  });
});

describe('chunkTemplates', () => {
  test('the answers of one job share one set of templates, which make what chunkBody makes', () => {
    const meta = answerMeta('chat', 'i-0123abcd', 'qwen2.5:0.5b');
    const t = chunkTemplates(meta, true);
    // Another caller of the same job (its own meta object) gets the same templates: events made once for all.
    expect(chunkTemplates({ ...meta }, true)).toBe(t);
    expect(chunkTemplates(meta, false)).not.toBe(t);
    expect(chunkTemplates({ ...meta, created: meta.created + 1 }, true)).not.toBe(t);
    expect(chunkTemplates(answerMeta('completion', 'i-0123abcd', 'qwen2.5:0.5b'), true)).not.toBe(t);
    expect(chunkTemplates({ ...meta, model: 'qwen2.5:0.5b\n1' }, true)).not.toBe(t);
    expect(t.role).toBe(`data: ${JSON.stringify(chunkBody(meta, { role: true }, true))}\n\n`);
    for (const text of ['a', 'a', 'b', 'a', ''])
      expect(t.text(text)).toBe(`data: ${JSON.stringify(chunkBody(meta, { text }, true))}\n\n`);
    expect(chunkTemplates(answerMeta('completion', 'i-0123abcd', 'm'), false).role).toBe('');
  });
});
