/*
 * What bench:scale and bench:scale-commands share: their command-line reading, the simulator they start,
 * the unique-prompt load they send over the fleet's APIs, and how they end.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { freePort, startProcess, stopAll } from './fleet.js';

/** `node` arguments that run the cell0 CLI from source. */
export const CELL0 = ['--import', 'tsx', join(__dirname, '..', 'bin', 'cell0.ts')];

/** The value of `--name` on the command line, or `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

/** Starts the Ollama-compatible simulator (1 ms to first token, near-instant tokens); resolves its URL. */
export async function startSimulator(): Promise<string> {
  const port = await freePort();
  await startProcess(
    process.execPath,
    [...CELL0, 'simulator', '--port', String(port)],
    { CELL0_SIM_TTFT_MS: '1', CELL0_SIM_TOKENS_PER_SEC: '1000000', CELL0_SIM_LOAD_MS_PER_GB: '1' },
    /simulator listening/,
    'simulator',
  );
  return `http://127.0.0.1:${port}`;
}

/**
 * Sends `n` unique POST /v1/inference requests at `concurrency`, round-robin over `urls`; resolves with each
 * one's latency (ms) and the number that did not complete (the first is printed).
 */
export async function sendUnique(
  urls: string[],
  n: number,
  concurrency: number,
  tag: string,
): Promise<{ latencies: number[]; failed: number }> {
  const pools = urls.map((u) => new Pool(u, { connections: Math.ceil(concurrency / urls.length) + 1 }));
  const latencies: number[] = [];
  let next = 0;
  let failed = 0;
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const t0 = performance.now();
      const res = await pools[i % pools.length]!.request({
        path: '/v1/inference',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'qwen2.5:0.5b', prompt: `scale ${tag} ${i}` }),
      });
      const body = (await res.body.json()) as { status?: string };
      latencies.push(performance.now() - t0);
      if (res.statusCode !== 200 || body.status !== 'completed') {
        if (failed++ === 0)
          console.error(`first failure: ${res.statusCode} ${JSON.stringify(body).slice(0, 300)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  await Promise.all(pools.map((p) => p.close()));
  return { latencies, failed };
}

/** Runs a bench's `main`; on an error prints it, stops every child process and exits 1. */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      void stopAll().then(() => process.exit(1));
    },
  );
}
