/*
 * bench:openai-intake — the API's CPU per streamed chat request, with the OpenAI fast path and without it
 * (every request through express's app and router), in one process side by side.
 *
 * Starts a private redis-server and, in this process, a fleet as `cell0 start` runs it (the simulator, one
 * worker that takes the API's jobs right behind the adds), and two APIs over the same client: A with `openAIFastPath: false`, B with the
 * default. Then R rounds of one burst of K streamed chat requests (unique prompts) to each API, in turn
 * (A B, B A, …), each read to its end. Printed per side, median over the rounds:
 *   intake µs/request  CPU of express's app.handle call for the request (what runs before the body is read:
 *                      request logging, metrics, the router, the guard), from process.cpuUsage;
 *   CPU ms/stream      the whole process's CPU over the burst per stream (client, API, worker, simulator);
 * and the median ratio B/A of each over the rounds.
 *
 *   node --import tsx bench/openai-intake.ts [--streams K] [--rounds R] [--tokens N]
 */
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { pino } from 'pino';
import { Pool } from 'undici';
import { createApi } from '../producers/api/create-api.js';
import { AccessControl } from '../producers/api/access-control.js';
import { HttpServer } from '../shared/http-server.js';
import { startTestFleet } from '../test/helpers/fleet.js';
import { benchArgs } from './args.js';
import { killChildrenOnInterrupt, startRedisServer, stopAll } from './fleet.js';
import { median } from './e2e-common.js';

interface Side {
  name: 'A' | 'B';
  url: string;
  pool: Pool;
  /** CPU µs spent in app.handle since the last read, and the calls. */
  intake: { us: number; calls: number };
  server: HttpServer;
}

async function main(): Promise<void> {
  const opts = benchArgs(
    process.argv.slice(2),
    { streams: 100, rounds: 10, tokens: 16 },
    'node --import tsx bench/openai-intake.ts [--streams K] [--rounds R] [--tokens N]',
  );
  killChildrenOnInterrupt();
  const redis = await startRedisServer();
  const fleet = await startTestFleet({
    redisUrl: redis.url,
    oneProcess: true,
    sim: { ttftMs: 20, tokensPerSec: 2000 },
  });
  const access = new AccessControl({
    apiKeys: [],
    adminKeys: [],
    redis: fleet.client.submitter.redis,
    prefix: fleet.prefix,
  });
  const sides: Side[] = [];
  for (const name of ['A', 'B'] as const) {
    const app = createApi({
      client: fleet.client,
      access,
      openAIFastPath: name === 'B',
      logger: pino({ level: 'error' }),
    });
    const intake = { us: 0, calls: 0 };
    const listener = (req: IncomingMessage, res: ServerResponse) => {
      const t0 = process.cpuUsage();
      app(req, res);
      const d = process.cpuUsage(t0);
      intake.us += d.user + d.system;
      intake.calls++;
    };
    const server = new HttpServer(listener, { host: '127.0.0.1', port: 0, requestsPerTurn: 4 });
    const { url } = await server.start();
    sides.push({ name, url, pool: new Pool(url, { connections: 128 }), intake, server });
  }

  let seq = 0;
  const burst = async (side: Side, k: number): Promise<{ intakeUs: number; cpuMs: number }> => {
    side.intake.us = 0;
    side.intake.calls = 0;
    const tag = `${process.pid}-${seq++}`;
    const t0 = process.cpuUsage();
    await Promise.all(
      Array.from({ length: k }, async (_, i) => {
        const res = await side.pool.request({
          path: '/v1/chat/completions',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'qwen2.5:7b',
            messages: [{ role: 'user', content: `intake ${tag} ${i}: say something` }],
            max_tokens: opts.tokens,
            stream: true,
          }),
        });
        const text = await res.body.text();
        if (res.statusCode !== 200 || !text.endsWith('data: [DONE]\n\n'))
          throw new Error(`side ${side.name}: ${res.statusCode} ${text.slice(0, 200)}`);
      }),
    );
    const d = process.cpuUsage(t0);
    return { intakeUs: side.intake.us / side.intake.calls, cpuMs: (d.user + d.system) / 1000 / k };
  };

  // The token streams' connection opens in the background: the first request waits for it.
  for (let tries = 0; ; tries++) {
    try {
      for (const s of sides) await burst(s, 1);
      break;
    } catch (err) {
      if (tries >= 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  // Warm-up: code paths and connections on both sides.
  for (let i = 0; i < 3; i++) for (const s of sides) await burst(s, opts.streams);
  const got: Record<'A' | 'B', { intakeUs: number; cpuMs: number }[]> = { A: [], B: [] };
  for (let r = 0; r < opts.rounds; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    for (const s of order) got[s.name].push(await burst(s, opts.streams));
    const a = got.A[r]!;
    const b = got.B[r]!;
    console.log(
      `round ${r + 1}: intake µs/request A ${a.intakeUs.toFixed(1)} B ${b.intakeUs.toFixed(1)} (B/A ${(b.intakeUs / a.intakeUs).toFixed(2)}); CPU ms/stream A ${a.cpuMs.toFixed(2)} B ${b.cpuMs.toFixed(2)} (B/A ${(b.cpuMs / a.cpuMs).toFixed(2)})`,
    );
  }
  const med = (side: 'A' | 'B', f: (x: { intakeUs: number; cpuMs: number }) => number) =>
    median(got[side].map(f));
  const ratio = (f: (x: { intakeUs: number; cpuMs: number }) => number) =>
    median(got.A.map((a, i) => f(got.B[i]!) / f(a)));
  console.log(
    `median: intake µs/request A ${med('A', (x) => x.intakeUs).toFixed(1)} B ${med('B', (x) => x.intakeUs).toFixed(1)}, ratio B/A ${ratio((x) => x.intakeUs).toFixed(2)}; CPU ms/stream A ${med('A', (x) => x.cpuMs).toFixed(2)} B ${med('B', (x) => x.cpuMs).toFixed(2)}, ratio B/A ${ratio((x) => x.cpuMs).toFixed(2)}`,
  );
  for (const s of sides) {
    await s.pool.close();
    await s.server.close();
  }
  await fleet.close();
  redis.redis.disconnect();
  await stopAll();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
