import express from 'express';
import { type AddressInfo } from 'node:net';
import { SseAnswer } from '../../producers/api/openai/sse-answer';
import { answerMeta } from '../../producers/api/openai/openai-shapes';

/** Runs `write` against a real express response and returns what the client received and the writes made. */
async function serve(write: (sse: SseAnswer) => void): Promise<{ body: string; calls: string[] }> {
  const calls: string[] = [];
  const app = express();
  app.get('/', (_req, res) => {
    for (const m of ['write', 'end', 'flushHeaders'] as const) {
      const orig = res[m].bind(res) as (...a: unknown[]) => unknown;
      (res as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
        calls.push(m);
        return orig(...a);
      };
    }
    write(new SseAnswer(res, answerMeta('chat', 'i-' + 'ab'.repeat(16), 'm'), true));
  });
  const server = app.listen(0);
  await new Promise((r) => server.once('listening', r));
  try {
    const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    expect(r.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    return { body: await r.text(), calls };
  } finally {
    server.close();
  }
}

const deltas = (body: string) =>
  body
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)) as { choices: { delta?: { content?: string; role?: string } }[] });

describe('SseAnswer', () => {
  it('sends the headers, the role chunk and the first text in one write, a batch in one, the end in one', async () => {
    const { body, calls } = await serve((sse) => {
      sse.text('Hello');
      sse.batch(() => {
        sse.text(', ');
        sse.text('world');
      });
      sse.batch(() => {
        sse.text('!');
        sse.finish('stop', { promptTokens: 3, completionTokens: 4, totalTokens: 7 });
      });
    });
    expect(calls).toEqual(['write', 'write', 'end']);
    const events = deltas(body);
    expect(events[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(events.map((e) => e.choices[0]?.delta?.content ?? '').join('')).toBe('Hello, world!');
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('a finish with no text before it is one end with the role, finish and usage chunks', async () => {
    const { body, calls } = await serve((sse) =>
      sse.finish('length', { promptTokens: 1, completionTokens: 0, totalTokens: 1 }),
    );
    expect(calls).toEqual(['end']);
    expect(body.match(/^data: /gm)).toHaveLength(4);
  });

  it('a write leaves the socket at once, not at the next tick (readers of one job are written one after another)', async () => {
    let corkedAfterWrite: number | undefined;
    let corkedWithoutFlush: number | undefined;
    const { body } = await serve((sse) => {
      sse.text('Hello');
      corkedAfterWrite = sse['res'].socket?.writableCorked;
      // What Node does to a plain response write (here an SSE comment): the socket stays corked until the
      // next tick.
      sse['res'].write(': comment\n\n');
      corkedWithoutFlush = sse['res'].socket?.writableCorked;
      sse.finish('stop', { promptTokens: 1, completionTokens: 1, totalTokens: 2 });
    });
    expect(corkedAfterWrite).toBe(0);
    expect(corkedWithoutFlush).toBe(1);
    expect(
      deltas(body)
        .map((e) => e.choices[0]?.delta?.content ?? '')
        .join(''),
    ).toBe('Hello');
  });
});
