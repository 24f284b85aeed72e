/*
 * Input that names internals or is not text, through the real HTTP API on a real Redis: ids that are
 * BullMQ's own key suffixes get 404 (never 500) and reach no Redis key; lone surrogates get 400 naming the
 * field; prompts that differ only in a control character never share a job or a cache entry, while the
 * meaning-preserving variants of a prompt do share its exact cache entry.
 */
import { JobNotFoundError } from '../../shared/errors';
import { QueueName } from '../../shared/queues/names';
import { get, post, startTestFleet, type TestFleet } from '../helpers/fleet';
import { rejectionOf } from '../helpers/wait';

/** Suffixes BullMQ builds a queue's own keys from (`<prefix>:<queue>:<suffix>`), and other non-ids. */
const BAD_IDS = [
  'id',
  'meta',
  'events',
  'stalled-check',
  'wait',
  'waiting',
  'active',
  'paused',
  'completed',
  'failed',
  'delayed',
  'prioritized',
  'pc',
  'marker',
  'limiter',
  'stalled',
  'de',
  'repeat',
  'metrics',
  'waiting-children',
  '1',
  `i-${'0'.repeat(31)}`,
  `i-${'0'.repeat(33)}`,
  `i-${'A'.repeat(32)}`,
  `I-${'0'.repeat(32)}`,
  `s-${'0'.repeat(32)}`,
  'x'.repeat(300),
];

describe('job ids from outside', () => {
  let fleet: TestFleet;
  let realId: string;
  beforeAll(async () => {
    fleet = await startTestFleet({ caches: true });
    // A finished job: the queue's own keys (id counter, meta, events, completed, …) now exist.
    const r = await post(`${fleet.url}/v1/inference`, { model: 'qwen2.5:0.5b', prompt: 'Make some keys' });
    expect(r.status).toBe(200);
    realId = String(r.body.jobId);
  });
  afterAll(() => fleet.close());

  it('answers 404 (never 500) for every id that is not a job id of the queue', async () => {
    // A real job's own sub-keys are not jobs either (`<id>:logs`, `<id>:lock`).
    for (const id of [...BAD_IDS, `${realId}:logs`, `${realId}:lock`]) {
      const r = await get(`${fleet.url}/v1/jobs/inference/${encodeURIComponent(id)}`);
      expect({ id, status: r.status, code: (r.body.error as { code?: string } | undefined)?.code }).toEqual({
        id,
        status: 404,
        code: 'CELL0_JOB_NOT_FOUND',
      });
    }
    const search = await get(`${fleet.url}/v1/jobs/search/${realId}`);
    expect(search.status).toBe(404);
    expect((await get(`${fleet.url}/v1/jobs/inference/${realId}`)).status).toBe(200);
  });

  it('reads nothing for them through the client either', async () => {
    for (const id of [...BAD_IDS, `${realId}:logs`]) {
      expect(await fleet.client.getJob(QueueName.INFERENCE, id)).toBeUndefined();
      const err = await rejectionOf(fleet.client.handle(QueueName.INFERENCE, id).wait(50));
      expect(err).toBeInstanceOf(JobNotFoundError);
    }
    expect(await fleet.client.getJob(QueueName.INFERENCE, realId)).toMatchObject({ state: 'completed' });
  });
});

describe('text that is not text, and text that differs only invisibly', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    fleet = await startTestFleet({ caches: true });
  });
  afterAll(() => fleet.close());

  const model = 'qwen2.5:0.5b';
  const generateCalls = () => fleet.sim.stats().requests.byEndpoint['/api/generate'] ?? 0;
  const infer = (prompt: string) => post(`${fleet.url}/v1/inference`, { model, prompt });

  it('refuses a lone surrogate with 400 naming the field', async () => {
    const cases: [string, string, string][] = [
      ['/v1/inference', `{"model":"m","prompt":"caf\\ud800"}`, 'prompt'],
      ['/v1/inference', `{"model":"m","prompt":"\\udc00 reversed half"}`, 'prompt'],
      ['/v1/inference', `{"model":"m","prompt":"ok","system":"be \\udbff"}`, 'system'],
      [
        '/v1/inference',
        `{"model":"m","messages":[{"role":"user","content":"hi \\ud83d"}]}`,
        'messages.0.content',
      ],
      ['/v1/inference', `{"model":"m","prompt":"ok","params":{"stop":["\\ud800"]}}`, 'params.stop.0'],
      ['/v1/search', `{"query":"redis \\ud800"}`, 'query'],
    ];
    for (const [path, raw, field] of cases) {
      const r = await post(`${fleet.url}${path}`, undefined, { raw });
      expect({ raw, status: r.status, body: r.body }).toMatchObject({
        raw,
        status: 400,
        body: {
          error: {
            code: 'CELL0_VALIDATION',
            issues: [{ field, reason: expect.stringContaining('lone surrogate') }],
          },
        },
      });
    }
    // A proper pair (an emoji) is text.
    expect((await infer('Describe this emoji: \ud83d\ude00')).status).toBe(200);
  });

  it('refuses a control character in a search query with 400 naming it', async () => {
    const r = await post(`${fleet.url}/v1/search`, { query: 'redis\u0000 streams' });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ error: { issues: [{ field: 'query' }] } });
    expect((await post(`${fleet.url}/v1/search`, { query: 'redis\tstreams\n' })).status).toBe(200);
  });

  it('never lets prompts that differ by a control character share a job or a cache entry', async () => {
    const base = 'Which river flows through the city of Vienna';
    const plain = await infer(base);
    expect(plain.body.cached).toBe(false);
    const seen = new Set([String(plain.body.jobId)]);
    for (const variant of [
      `${base}\u0000`,
      `Which river\u0007 flows through the city of Vienna`,
      `Which river flows through the city of \u001b[1mVienna\u001b[0m`,
      `${base}\u007f`,
      `${base}\u0085`,
    ]) {
      const calls = generateCalls();
      const r = await infer(variant);
      expect({ variant, status: r.status, cached: r.body.cached }).toEqual({
        variant,
        status: 200,
        cached: false,
      });
      expect(generateCalls()).toBe(calls + 1);
      expect(seen.has(String(r.body.jobId))).toBe(false);
      seen.add(String(r.body.jobId));
    }
    // The other way round: a prompt stored with a control character does not answer the plain one.
    const marked = await infer('Name the largest moon of Saturn\u0007');
    expect(marked.body.cached).toBe(false);
    const clean = await infer('Name the largest moon of Saturn');
    expect(clean.body.cached).toBe(false);
    expect(clean.body.jobId).not.toBe(marked.body.jobId);
    // Each is still answered from its own exact entry.
    const again = await infer('Name the largest moon of Saturn\u0007');
    expect(again.body).toMatchObject({ cached: 'exact', result: marked.body.result });
  });

  it('answers the meaning-preserving variants of a prompt from its exact entry', async () => {
    const first = await infer('Explain this config:\n\n  retries: 3\n  backoff: 2s');
    expect(first.body.cached).toBe(false);
    const calls = generateCalls();
    for (const variant of [
      'explain this config:\r\n\r\n  retries: 3\r\n  backoff: 2s\r\n', // CRLF, case
      '    Explain this config:   \n\n\n\n      retries:  3\n      backoff:\t2s   ', // indented as a whole
      '\n\nExplain this config:\n\n  retries: 3\n  backoff: 2s.', // blank lines, trailing punctuation
      'Ｅxplain this config:\n\n  retries: 3\n  backoff: 2s', // a full-width letter (NFKC)
    ]) {
      const r = await infer(variant);
      expect({ variant, cached: r.body.cached, result: r.body.result }).toEqual({
        variant,
        cached: 'exact',
        result: first.body.result,
      });
    }
    expect(generateCalls()).toBe(calls);
  });

  it('keeps apart what only looks alike: relative indentation, superscripts', async () => {
    const pairs: [string, string][] = [
      [
        'Fix this Python:\nif ready:\n    start()\nreport()',
        'Fix this Python:\nif ready:\n    start()\n    report()',
      ],
      ['What is 10² in binary', 'What is 102 in binary'],
    ];
    for (const [a, b] of pairs) {
      const first = await infer(a);
      expect(first.body.cached).toBe(false);
      const second = await infer(b);
      expect({ b, cached: second.body.cached }).toEqual({ b, cached: false });
      expect(second.body.jobId).not.toBe(first.body.jobId);
    }
  });
});
