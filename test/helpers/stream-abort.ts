import type OpenAI from 'openai';
import { ErrorCode } from '../../shared/errors';
import { QueueName } from '../../shared/queues/names';
import { type TestFleet } from './fleet';
import { until } from './wait';

/** A streaming chat request of the shape the abort checks send (1000 tokens: long enough to abort mid-way). */
export interface AbortableChat {
  model: string;
  messages: { role: 'user'; content: string }[];
  max_tokens: number;
  stream: true;
}

/** The id of the inference job a chat request of this shape (no cache options) is submitted as. */
export function chatJobId(
  fleet: TestFleet,
  req: Pick<AbortableChat, 'model' | 'messages' | 'max_tokens'>,
): string {
  return fleet.client.submitter.jobIdFor(
    QueueName.INFERENCE,
    fleet.client.parseInference({
      model: req.model,
      messages: req.messages,
      params: { max_tokens: req.max_tokens },
    }),
  );
}

/**
 * Streams `req` through `openai`, aborts after the third content chunk, and expects the job that stream alone
 * read to be cancelled (failed with JOB_CANCELLED) and the backend call to stop.
 */
export async function expectAbortCancelsJob(
  fleet: TestFleet,
  openai: OpenAI,
  req: AbortableChat,
): Promise<void> {
  const ac = new AbortController();
  const stream = await openai.chat.completions.create(req, { signal: ac.signal });
  let seen = 0;
  // The SDK ends the iteration quietly when its signal aborts.
  for await (const c of stream) {
    if (c.choices[0]?.delta.content) seen++;
    if (seen === 3) ac.abort();
  }
  expect(seen).toBe(3);
  const jobId = chatJobId(fleet, req);
  await until(
    async () => (await fleet.client.getJob(QueueName.INFERENCE, jobId))?.state === 'failed',
    10_000,
    'the job to be cancelled',
  );
  const job = await fleet.client.getJob(QueueName.INFERENCE, jobId);
  expect(job!.error!.code).toBe(ErrorCode.JOB_CANCELLED);
  // The backend call was stopped too (1000 tokens at the simulator's speed would take seconds).
  await until(() => fleet.sim.stats().inFlight === 0, 5000, 'the backend call to stop');
}
