/*
 * A streaming request for a job whose only reader just left (the job is cancelled, or being cancelled)
 * gets a whole, clean answer: never the cancelled attempt's partial text followed by an error. The job id
 * is the same (coalescing), so the new request meets the cancelled job and its token stream.
 */
import OpenAI from 'openai';
import { startTestFleet, type TestFleet } from '../helpers/fleet';
import { until } from '../helpers/wait';
import { ErrorCode } from '../../shared/errors';
import { QueueName } from '../../shared/queues/names';
import { tokenStreamKeys } from '../../shared/queues/token-stream';

describe('a streaming request right after a cancelled stream of the same request', () => {
  let fleet: TestFleet;
  let openai: OpenAI;
  beforeAll(async () => {
    // Slow enough that the first caller leaves mid-stream: 100 tokens/s.
    fleet = await startTestFleet({ sim: { ttftMs: 20, tokensPerSec: 100 } });
    openai = new OpenAI({ baseURL: `${fleet.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(() => fleet.close());

  function request(content: string) {
    return {
      model: 'qwen2.5:0.5b',
      messages: [{ role: 'user' as const, content }],
      max_tokens: 40,
      stream: true as const,
    };
  }

  function jobIdOf(req: ReturnType<typeof request>): string {
    return fleet.client.submitter.jobIdFor(
      QueueName.INFERENCE,
      fleet.client.parseInference({
        model: req.model,
        messages: req.messages,
        params: { max_tokens: req.max_tokens },
      }),
    );
  }

  /** Reads a stream to its first text, then leaves (the client disconnects). */
  async function leaveAfterFirstText(req: ReturnType<typeof request>): Promise<void> {
    const ac = new AbortController();
    const stream = await openai.chat.completions.create(req, { signal: ac.signal });
    // The SDK ends the iteration quietly when its signal aborts.
    for await (const c of stream) if (c.choices[0]?.delta.content) ac.abort();
  }

  /** Reads a whole stream; an error chunk makes the SDK throw. */
  async function readAll(req: ReturnType<typeof request>): Promise<{ text: string; finish: string | null }> {
    let text = '';
    let finish: string | null = null;
    for await (const c of await openai.chat.completions.create(req)) {
      text += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    return { text, finish };
  }

  it('after the cancel is visible in Redis (the job failed, cancelled)', async () => {
    const req = request('cancelled, then asked again');
    const jobId = jobIdOf(req);
    await leaveAfterFirstText(req);
    await until(
      async () => (await fleet.client.getJob(QueueName.INFERENCE, jobId))?.state === 'failed',
      10_000,
      'the job to be cancelled',
    );
    expect((await fleet.client.getJob(QueueName.INFERENCE, jobId))!.error!.code).toBe(
      ErrorCode.JOB_CANCELLED,
    );
    const again = await readAll(req);
    expect(again.finish).not.toBeNull();
    const job = await fleet.client.getJob(QueueName.INFERENCE, jobId);
    expect(job!.state).toBe('completed');
    expect(again.text).toBe((job!.result as { text: string }).text);
  });

  it('at once, while the cancel is under way (several rounds)', async () => {
    for (let i = 0; i < 6; i++) {
      const req = request(`asked again at once, round ${i}`);
      const jobId = jobIdOf(req);
      await leaveAfterFirstText(req);
      const again = await readAll(req);
      expect(again.finish).not.toBeNull();
      const job = await fleet.client.getJob(QueueName.INFERENCE, jobId);
      expect(job!.state).toBe('completed');
      expect(again.text).toBe((job!.result as { text: string }).text);
    }
  });
});

describe('a streaming caller whose job is cancelled before its first token', () => {
  let fleet: TestFleet;
  let openai: OpenAI;
  beforeAll(async () => {
    // A long time to first token: the cancel lands while the caller waits for it.
    fleet = await startTestFleet({ sim: { ttftMs: 1500, tokensPerSec: 200 } });
    openai = new OpenAI({ baseURL: `${fleet.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(() => fleet.close());

  // The state a caller meets when it joins a job whose last reader left and whose worker honoured the
  // cancel just before this caller's marks came (the job is still active, then fails cancelled): here the
  // cancel mark is set directly while the caller waits for the first token.
  it('gets the re-run job, whole, not the cancel error', async () => {
    const req = {
      model: 'qwen2.5:0.5b',
      messages: [{ role: 'user' as const, content: 'cancelled under my feet' }],
      max_tokens: 20,
      stream: true as const,
    };
    const data = fleet.client.parseInference({
      model: req.model,
      messages: req.messages,
      params: { max_tokens: req.max_tokens },
    });
    const jobId = fleet.client.submitter.jobIdFor(QueueName.INFERENCE, data);
    const keys = tokenStreamKeys(fleet.prefix, QueueName.INFERENCE, jobId);
    const answer = (async () => {
      let text = '';
      let finish: string | null = null;
      for await (const c of await openai.chat.completions.create(req)) {
        text += c.choices[0]?.delta.content ?? '';
        finish = c.choices[0]?.finish_reason ?? finish;
      }
      return { text, finish };
    })();
    await until(
      async () => (await fleet.client.getJob(QueueName.INFERENCE, jobId))?.state === 'active',
      10_000,
      'the job to start',
    );
    const redis = fleet.client.submitter.redis.connection;
    await redis.set(keys.cancel, '1', 'PX', 30_000);
    const got = await answer;
    expect(got.finish).not.toBeNull();
    const job = await fleet.client.getJob(QueueName.INFERENCE, jobId);
    expect(job!.state).toBe('completed');
    expect(got.text).toBe((job!.result as { text: string }).text);
    // Two backend calls: the cancelled one and the re-run.
    expect(fleet.sim.stats().requests.byEndpoint['/api/chat']).toBe(2);
  });
});
