/*
 * The OpenAI routes' fixed CPU per streaming request: express with cell0's OpenAI router (auth, body, parse,
 * SSE answer) over a client whose every submission is answered at once from a stand-in cache, on a real
 * HTTP server, loaded by C keep-alive connections in a child process. The server reports its own CPU
 * (process.cpuUsage) and write system calls (/proc/self/io) per request over each round. Run it from two builds side by side, alternately.
 *
 *   node --import tsx bench/openai-fixed.ts [--requests N] [--connections C] [--rounds R]
 */
import { fork } from 'node:child_process';
import { type AddressInfo } from 'node:net';
import express from 'express';
import { Agent, request } from 'undici';
import { openAIRouter } from '../producers/api/openai/openai-router.js';
import { AccessControl } from '../producers/api/access-control.js';
import { parseInferenceRequest } from '../shared/queues/schemas.js';
import { jobIdFor } from '../shared/queues/job-id.js';
import { QueueName } from '../shared/queues/names.js';
import { type Cell0Client } from '../producers/cell0-client.js';
import { syscalls } from './e2e-stages.js';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const KEY = 'bench-key';
const BODY = JSON.stringify({
  model: 'sim',
  messages: [{ role: 'user', content: 'Say something about the queue, request 1234.' }],
  max_tokens: 32,
  stream: true,
});

async function load(port: number, n: number, c: number): Promise<void> {
  const agent = new Agent({ connections: c, pipelining: 1 });
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < n) {
      next++;
      const r = await request(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: 'POST',
        dispatcher: agent,
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: BODY,
      });
      const t = await r.body.text();
      if (r.statusCode !== 200 || !t.endsWith('data: [DONE]\n\n'))
        throw new Error(`bad answer ${r.statusCode}`);
    }
  };
  await Promise.all(Array.from({ length: c }, one));
  await agent.close();
}

async function server(): Promise<void> {
  const requests = arg('requests', 20_000);
  const connections = arg('connections', 50);
  const rounds = arg('rounds', 5);
  const result = {
    model: 'sim',
    text: 'A fixed answer of a few words.',
    doneReason: 'stop',
    usage: { promptTokens: 10, completionTokens: 7, totalTokens: 17 },
    timings: { totalMs: 1 },
    provider: 'simulator',
    servedBy: 'bench',
  };
  const client = {
    parseInference: (r: unknown) =>
      parseInferenceRequest(r, { maxPromptBytes: 32 * 1024, maxQueryBytes: 2048 }),
    submitter: { jobIdFor },
    submitInference: (data: unknown) =>
      Promise.resolve({
        state: 'completed',
        queue: QueueName.INFERENCE,
        jobId: jobIdFor(QueueName.INFERENCE, data),
        cached: 'exact',
        result,
      }),
  } as unknown as Cell0Client;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(
    '/v1',
    openAIRouter({
      client,
      access: new AccessControl({ apiKeys: [KEY], tenantSecret: 'bench-secret-0123456789abcdef' }),
      maxWaitMs: 5000,
      maxBodyBytes: 65_536,
    }),
  );
  const srv = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => srv.once('listening', () => r()));
  const port = (srv.address() as AddressInfo).port;
  const perRequest: number[] = [];
  const writesPerRequest: number[] = [];
  for (let round = 0; round <= rounds; round++) {
    const child = fork(__filename, ['--load', String(port), String(requests), String(connections)], {
      execArgv: process.execArgv,
    });
    const before = process.cpuUsage();
    const io0 = syscalls();
    await new Promise<void>((resolve, reject) =>
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`load exited ${code}`)))),
    );
    const u = process.cpuUsage(before);
    const io1 = syscalls();
    // Round 0 warms up.
    if (round > 0) {
      perRequest.push((u.user + u.system) / requests);
      if (io0 && io1) writesPerRequest.push((io1.w - io0.w) / requests);
    }
  }
  srv.close();
  const sorted = [...perRequest].sort((a, b) => a - b);
  console.log(
    `OpenAI streaming request, fixed path: server CPU µs per request, rounds ${perRequest.map((x) => x.toFixed(1)).join(' ')}; median ${sorted[sorted.length >> 1]!.toFixed(1)}, least ${sorted[0]!.toFixed(1)}; write system calls per request ${writesPerRequest.map((x) => x.toFixed(2)).join(' ')}`,
  );
}

const li = process.argv.indexOf('--load');
if (li > 0) {
  const [port, n, c] = process.argv.slice(li + 1).map(Number) as [number, number, number];
  load(port, n, c).then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
} else void server();
