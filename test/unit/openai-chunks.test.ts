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
    // Models a route may name, JSON-escaped in the chunk as chunkBody's JSON.stringify escapes them.
    for (const model of ['qwen2.5:0.5b', 'org/"quoted"\\model\n\u0001é 😀 \u2028']) {
      const meta = answerMeta(kind, 'i-0123abcd', model);
      const write = textChunkWriter(meta, includeUsage);
      for (const text of texts) {
        expect(write(text)).toBe(JSON.stringify(chunkBody(meta, { text }, includeUsage)));
        expect(JSON.parse(write(text))).toEqual(chunkBody(meta, { text }, includeUsage));
      }
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
    for (const includeUsage of [true, false]) {
      const odd = answerMeta('chat', 'i-4567ef', 'a "b"\\c\nd é 😀');
      expect(chunkTemplates(odd, includeUsage).role).toBe(
        `data: ${JSON.stringify(chunkBody(odd, { role: true }, includeUsage))}\n\n`,
      );
    }
  });
});
