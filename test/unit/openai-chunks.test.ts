import { answerMeta, chunkBody, textChunkWriter } from '../../producers/api/openai/openai-shapes';

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
