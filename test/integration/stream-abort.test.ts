/*
 * A caller's abort stops the token stream at once, even when several chunks arrived in one read (a stalled
 * host reads what the backend sent meanwhile in one go). The fake backends here write the first chunks of
 * a stream in a single write, then keep the response open, so the client holds them all in one buffer.
 */
import { createServer, type ServerResponse } from 'node:http';
import { OllamaClient } from '../../workers/providers/ollama';
import { OpenAIClient } from '../../workers/providers/openai';
import { listenLocal } from '../helpers/listen';

const PIECES = ['one', ' two', ' three', ' four', ' five'];

async function withServer(
  write: (res: ServerResponse) => void,
  body: (url: string) => Promise<void>,
): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    req.once('end', () => write(res));
  });
  const { url, close } = await listenLocal(server);
  try {
    await body(url);
  } finally {
    await close();
  }
}

/** Runs `call` with a signal aborted on the first token; what it rejected with and the tokens it passed on. */
async function abortAtFirstToken(
  call: (ctx: { signal: AbortSignal; onToken: (t: string) => void }) => Promise<unknown>,
): Promise<{ err: unknown; tokens: string[] }> {
  const controller = new AbortController();
  const tokens: string[] = [];
  const onToken = (t: string) => {
    tokens.push(t);
    controller.abort();
  };
  const err = await call({ signal: controller.signal, onToken }).then(
    () => undefined,
    (e: unknown) => e,
  );
  return { err, tokens };
}

describe('a caller abort during a stream', () => {
  test('Ollama: no token reaches onToken after the abort, though more were in the buffer', async () => {
    await withServer(
      (res) => {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write(
          PIECES.map((p) => JSON.stringify({ model: 'm', response: p, done: false }) + '\n').join(''),
        );
      },
      async (url) => {
        const client = new OllamaClient({ baseUrl: url });
        try {
          const { err, tokens } = await abortAtFirstToken((ctx) =>
            client.generate({ model: 'm', prompt: 'p' }, ctx),
          );
          expect((err as Error).name).toBe('AbortError');
          expect(tokens).toEqual(['one']);
        } finally {
          await client.close();
        }
      },
    );
  });

  test('OpenAI-compatible: no token reaches onToken after the abort, though more were in the buffer', async () => {
    await withServer(
      (res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (p: string) => ({
          id: 'c1',
          object: 'chat.completion.chunk',
          created: 1,
          model: 'm',
          choices: [{ index: 0, delta: { content: p }, finish_reason: null }],
        });
        res.write(PIECES.map((p) => `data: ${JSON.stringify(chunk(p))}\n\n`).join(''));
      },
      async (url) => {
        const client = new OpenAIClient({ baseUrl: `${url}/v1` });
        try {
          const { err, tokens } = await abortAtFirstToken((ctx) =>
            client.chatCompletions({ model: 'm', messages: [{ role: 'user', content: 'p' }] }, ctx),
          );
          expect((err as Error).name).toBe('AbortError');
          expect(tokens).toEqual(['one']);
        } finally {
          await client.close();
        }
      },
    );
  });
});
