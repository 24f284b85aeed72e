import express from 'express';
import { type AddressInfo } from 'node:net';
import { openAIRouter } from '../../producers/api/openai/openai-router';
import { AccessControl } from '../../producers/api/access-control';
import { type Cell0Client } from '../../producers/cell0-client';
import { parseInferenceRequest } from '../../shared/queues/schemas';
import { jobIdFor } from '../../shared/queues/job-id';
import { QueueName } from '../../shared/queues/names';

/*
 * A streaming request answered without a token stream (a cache hit, a job finished before it): the whole
 * answer — headers, role chunk, text, finish, usage, [DONE] — goes out in one response write.
 */
const KEY = 'test-key';
const result = {
  model: 'm',
  text: 'A cached answer.',
  doneReason: 'stop',
  usage: { promptTokens: 3, completionTokens: 4, totalTokens: 7 },
  timings: { totalMs: 1 },
  provider: 'simulator',
  servedBy: 'test',
};

async function streamCached(): Promise<{
  body: string;
  headers: Headers;
  calls: string[];
  given: { data: unknown; jobId: string | undefined }[];
}> {
  /** What submitInference was called with: the request and the job id the stream path handed it. */
  const given: { data: unknown; jobId: string | undefined }[] = [];
  const client = {
    parseInference: (r: unknown) =>
      parseInferenceRequest(r, { maxPromptBytes: 32 * 1024, maxQueryBytes: 2048 }),
    submitter: { jobIdFor },
    submitInference: (data: unknown, opts: { jobId?: string }) =>
      given.push({ data, jobId: opts.jobId }) &&
      Promise.resolve({
        state: 'completed',
        queue: QueueName.INFERENCE,
        jobId: jobIdFor(QueueName.INFERENCE, data),
        cached: 'exact',
        result,
      }),
  } as unknown as Cell0Client;
  const calls: string[] = [];
  const app = express();
  app.use((_req, res, next) => {
    for (const m of ['write', 'end'] as const) {
      const orig = res[m].bind(res) as (...a: unknown[]) => unknown;
      (res as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
        calls.push(m);
        return orig(...a);
      };
    }
    next();
  });
  app.use(
    '/v1',
    openAIRouter({
      client,
      access: new AccessControl({ apiKeys: [KEY], tenantSecret: 'test-secret-0123456789abcdef' }),
      maxWaitMs: 5000,
      maxBodyBytes: 65_536,
    }),
  );
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  try {
    const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'm',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    expect(r.status).toBe(200);
    return { body: await r.text(), headers: r.headers, calls, given };
  } finally {
    server.close();
  }
}

describe('OpenAI stream of an answer without a token stream', () => {
  it('sends the whole cached answer in one write', async () => {
    const { body, headers, calls } = await streamCached();
    expect(headers.get('x-cell0-cache')).toBe('exact');
    expect(headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const events = body.split('\n\n').filter((e) => e.length > 0);
    expect(events[events.length - 1]).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map(
      (e) =>
        JSON.parse(e.slice('data: '.length)) as {
          choices: { delta?: { role?: string; content?: string }; finish_reason?: string | null }[];
          usage?: { total_tokens: number };
        },
    );
    expect(chunks[0]!.choices[0]!.delta?.role).toBe('assistant');
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(result.text);
    expect(chunks.some((c) => c.choices[0]?.finish_reason === 'stop')).toBe(true);
    expect(chunks[chunks.length - 1]!.usage?.total_tokens).toBe(7);
    expect(calls).toEqual(['end']);
  });

  it('hands submitInference the job id it computed (not computed again)', async () => {
    const { given } = await streamCached();
    expect(given).toHaveLength(1);
    expect(given[0]!.jobId).toBe(jobIdFor(QueueName.INFERENCE, given[0]!.data));
  });
});
