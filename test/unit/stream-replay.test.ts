import express from 'express';
import { type AddressInfo } from 'node:net';
import { SseAnswer } from '../../producers/api/openai/sse-answer';
import { answerMeta } from '../../producers/api/openai/openai-shapes';
import { applyEntry, type ReadState } from '../../producers/api/openai/openai-stream';
import { type TokenStreamEntry } from '../../shared/queues/token-stream';

/*
 * A reader whose job's text starts over (a backend call retried within the attempt, or the job run again)
 * after text went out: the new attempt's text must reproduce what was sent; then the stream goes on from
 * there, else it ends with an error event. Never a spliced answer.
 */

const usage = { promptTokens: 1, completionTokens: 3, totalTokens: 4 };

/** Applies the entries to an SSE answer on a real express response; returns what the client received. */
async function answer(
  entries: TokenStreamEntry[],
): Promise<{ text: string; error?: string; finish?: string }> {
  const app = express();
  app.get('/', (_req, res) => {
    const sse = new SseAnswer(res, answerMeta('chat', 'i-' + 'cd'.repeat(16), 'm'), false);
    const state: ReadState = { expectSeq: 0, usable: true, replay: undefined };
    for (const e of entries) {
      const step = applyEntry(sse, e, state);
      if (step === 'end' && e.kind === 'end') return sse.finish(e.finishReason, e.usage);
      if (step === 'mismatch')
        return sse.fail({ error: { message: 'mismatch', type: 'x', param: null, code: 'y' } });
    }
    sse.fail({ error: { message: 'no end', type: 'x', param: null, code: 'y' } });
  });
  const server = app.listen(0);
  await new Promise((r) => server.once('listening', r));
  try {
    const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    let text = '';
    let error: string | undefined;
    let finish: string | undefined;
    for (const ev of (await r.text()).split('\n\n')) {
      if (!ev.startsWith('data: {')) continue;
      const m = JSON.parse(ev.slice(6)) as {
        choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
        error?: { message: string };
      };
      if (m.error) error = m.error.message;
      text += m.choices?.[0]?.delta?.content ?? '';
      finish = m.choices?.[0]?.finish_reason ?? finish;
    }
    return { text, ...(error ? { error } : {}), ...(finish ? { finish } : {}) };
  } finally {
    server.close();
  }
}

const start = (attempt: number): TokenStreamEntry => ({ kind: 'start', attempt });
const text = (seq: number, t: string): TokenStreamEntry => ({ kind: 'text', seq, text: t });
const end: TokenStreamEntry = { kind: 'end', finishReason: 'stop', model: 'm', usage };

describe('a stream whose text starts over after text went out', () => {
  it('one attempt: every text goes out as it comes', async () => {
    expect(await answer([start(1), text(0, 'Hel'), text(1, 'lo'), end])).toEqual({
      text: 'Hello',
      finish: 'stop',
    });
  });

  it('a restart that reproduces the text sent goes on from there: one whole answer, no error', async () => {
    const got = await answer([
      start(1),
      text(0, 'Hello, '),
      start(1),
      text(0, 'Hel'),
      text(1, 'lo, wor'),
      text(2, 'ld'),
      end,
    ]);
    expect(got).toEqual({ text: 'Hello, world', finish: 'stop' });
  });

  it('a restart whose text differs from the text sent ends with an error event', async () => {
    const got = await answer([start(1), text(0, 'Hello, '), start(1), text(0, 'Howdy'), end]);
    expect(got.text).toBe('Hello, ');
    expect(got.error).toBe('mismatch');
  });

  it('a restart that ends before it reproduced all the text sent ends with an error event', async () => {
    const got = await answer([start(1), text(0, 'Hello, world'), start(1), text(0, 'Hello'), end]);
    expect(got.text).toBe('Hello, world');
    expect(got.error).toBe('mismatch');
  });
});
