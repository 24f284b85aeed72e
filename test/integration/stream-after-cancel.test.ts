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

/** A test fleet with the given simulator speed and an OpenAI SDK client on it, for one describe block. */
function fleetWithSdk(sim: { ttftMs: number; tokensPerSec: number }): { fleet: TestFleet; openai: OpenAI } {
  const env = {} as { fleet: TestFleet; openai: OpenAI };
  beforeAll(async () => {
    env.fleet = await startTestFleet({ sim });
    env.openai = new OpenAI({ baseURL: `${env.fleet.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(() => env.fleet.close());
  return env;
}

/** Reads a whole stream; an error chunk makes the SDK throw. */
async function readAll(
  openai: OpenAI,
  req: OpenAI.Chat.ChatCompletionCreateParamsStreaming,
): Promise<{ text: string; finish: string | null }> {
  let text = '';
  let finish: string | null = null;
  for await (const c of await openai.chat.completions.create(req)) {
    text += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  return { text, finish };
}

/**
 * The caller got a whole answer: finished, and the text of the job, which completed. The stream's last
 * chunk is written before the job's completion (which goes to Redis with the worker's next batch of
 * finishes), so a caller can hold its whole answer while the job still shows active: the job is awaited
 * out of that state first.
 */
async function expectWholeAnswer(
  fleet: TestFleet,
  jobId: string,
  got: { text: string; finish: string | null },
): Promise<void> {
  expect(got.finish).not.toBeNull();
  const stateOf = async () => (await fleet.client.getJob(QueueName.INFERENCE, jobId))?.state;
  await until(async () => (await stateOf()) !== 'active', 10_000, 'the job to leave the active state');
  const job = await fleet.client.getJob(QueueName.INFERENCE, jobId);
  expect(job!.state).toBe('completed');
  expect(got.text).toBe((job!.result as { text: string }).text);
}

type StreamRequest = ReturnType<typeof makeRequest>;

function makeRequest(content: string) {
  return {
    model: 'qwen2.5:0.5b',
    messages: [{ role: 'user' as const, content }],
    max_tokens: 40,
    stream: true as const,
  };
}

/** The request, its job id and a caller that leaves after the first text, on one block's fleet. */
function helpers(env: { fleet: TestFleet; openai: OpenAI }) {
  function jobIdOf(req: StreamRequest): string {
    return env.fleet.client.submitter.jobIdFor(
      QueueName.INFERENCE,
      env.fleet.client.parseInference({
        model: req.model,
        messages: req.messages,
        params: { max_tokens: req.max_tokens },
      }),
    );
  }

  /** Reads a stream to its first text, then leaves (the client disconnects). */
  async function leaveAfterFirstText(req: StreamRequest): Promise<void> {
    const ac = new AbortController();
    const stream = await env.openai.chat.completions.create(req, { signal: ac.signal });
    // The SDK ends the iteration quietly when its signal aborts.
    for await (const c of stream) if (c.choices[0]?.delta.content) ac.abort();
  }
  return { request: makeRequest, jobIdOf, leaveAfterFirstText };
}

describe('a streaming request right after a cancelled stream of the same request', () => {
  // Slow enough that the first caller leaves mid-stream: 100 tokens/s.
  const env = fleetWithSdk({ ttftMs: 20, tokensPerSec: 100 });

  const { request, jobIdOf, leaveAfterFirstText } = helpers(env);

  it('at once, while the cancel is under way (several rounds)', async () => {
    for (let i = 0; i < 6; i++) {
      const req = request(`asked again at once, round ${i}`);
      const jobId = jobIdOf(req);
      await leaveAfterFirstText(req);
      const again = await readAll(env.openai, req);
      await expectWholeAnswer(env.fleet, jobId, again);
    }
  });
});

// The cancel below must reach the worker while the answer is still being written: at 10 tokens/s an answer
// takes 2.4 to 4 s; at 100 tokens/s a loaded machine let the job end before the cancel was set, and nothing
// honoured it (the wait for it timed out).
describe('a streaming caller whose job is cancelled under it after its first text', () => {
  const env = fleetWithSdk({ ttftMs: 20, tokensPerSec: 10 });
  const { request, jobIdOf } = helpers(env);

  // A caller that already received text when its job is cancelled under it (a stray cancel: the
  // readers count gone wrong, here the cancel set directly and the stream unwanted, as the last reader's
  // leave leaves them) is still reading and wants its answer: the job is run again, and since the re-run's
  // text begins with what the caller received, the caller gets the rest: one whole answer, no error event.
  it('a caller that already received text when the job is cancelled gets the whole answer', async () => {
    const req = request('cancelled under a reader that got text');
    const jobId = jobIdOf(req);
    const keys = tokenStreamKeys(env.fleet.prefix, QueueName.INFERENCE, jobId);
    const redis = env.fleet.client.submitter.redis.connection;
    const calls0 = env.fleet.sim.stats().requests.byEndpoint['/api/chat'] ?? 0;
    let text = '';
    let finish: string | null = null;
    let cancelled = false;
    for await (const c of await env.openai.chat.completions.create(req)) {
      text += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
      if (!cancelled && text.length > 0) {
        cancelled = true;
        await redis.multi().set(keys.cancel, '1', 'PX', 30_000).del(keys.wanted).exec();
        // The worker honours it at its next write: the attempt stops and the job fails, cancelled.
        await until(async () => (await redis.exists(keys.cancel)) === 0, 10_000, 'the cancel to be honoured');
      }
    }
    await expectWholeAnswer(env.fleet, jobId, { text, finish });
    // The stopped attempt and the re-run.
    expect((env.fleet.sim.stats().requests.byEndpoint['/api/chat'] ?? 0) - calls0).toBe(2);
  });
});

// The same, waiting for the cancel to show: the job must still be running when the cancel reaches its
// worker (client abort → API → Redis → the worker's next write), which on a loaded machine can take longer
// than a 400 ms answer. At 10 tokens/s an answer (24 to 40 tokens here) takes 2.4 to 4 s.
describe('a streaming request after a cancel that Redis shows', () => {
  const env = fleetWithSdk({ ttftMs: 20, tokensPerSec: 10 });
  const { request, jobIdOf, leaveAfterFirstText } = helpers(env);

  it('after the cancel is visible in Redis (the job failed, cancelled)', async () => {
    const req = request('cancelled, then asked again');
    const jobId = jobIdOf(req);
    await leaveAfterFirstText(req);
    await until(
      async () => (await env.fleet.client.getJob(QueueName.INFERENCE, jobId))?.state === 'failed',
      10_000,
      'the job to be cancelled',
    );
    expect((await env.fleet.client.getJob(QueueName.INFERENCE, jobId))!.error!.code).toBe(
      ErrorCode.JOB_CANCELLED,
    );
    const again = await readAll(env.openai, req);
    await expectWholeAnswer(env.fleet, jobId, again);
  });
});

describe('a streaming caller whose job is cancelled before its first token', () => {
  // A long time to first token: the cancel lands while the caller waits for it.
  const env = fleetWithSdk({ ttftMs: 1500, tokensPerSec: 200 });

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
    const data = env.fleet.client.parseInference({
      model: req.model,
      messages: req.messages,
      params: { max_tokens: req.max_tokens },
    });
    const jobId = env.fleet.client.submitter.jobIdFor(QueueName.INFERENCE, data);
    const keys = tokenStreamKeys(env.fleet.prefix, QueueName.INFERENCE, jobId);
    const answer = readAll(env.openai, req);
    await until(
      async () => (await env.fleet.client.getJob(QueueName.INFERENCE, jobId))?.state === 'active',
      10_000,
      'the job to start',
    );
    const redis = env.fleet.client.submitter.redis.connection;
    await redis.set(keys.cancel, '1', 'PX', 30_000);
    const got = await answer;
    await expectWholeAnswer(env.fleet, jobId, got);
    // Two backend calls: the cancelled one and the re-run.
    expect(env.fleet.sim.stats().requests.byEndpoint['/api/chat']).toBe(2);
  });
});
