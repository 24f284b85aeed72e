/*
 * bench:scale worker process: a Cell0Worker on the inference queue, as `cell0 worker` runs it (status
 * heartbeat, all shards), with the no-op backend or an Ollama backend at a URL (the simulator). Arguments:
 * <redisUrl> <shards> <concurrency> [ollamaUrl]. Prints "scale worker ready" once it takes jobs and closes
 * on SIGTERM.
 */
import { Cell0Worker } from '../workers/cell0-worker.js';
import { NoopInferenceBackend } from '../workers/providers/noop-provider.js';
import { OllamaBackend } from '../workers/providers/ollama-backend.js';
import { OllamaClient } from '../workers/providers/ollama/ollama-client.js';

const [redisUrl, shards, concurrency, ollamaUrl] = process.argv.slice(2);

async function main(): Promise<void> {
  const worker = new Cell0Worker({
    redisUrl: redisUrl!,
    shards: Number(shards),
    queues: ['inference'],
    inference: ollamaUrl
      ? new OllamaBackend(new OllamaClient({ baseUrl: ollamaUrl }))
      : new NoopInferenceBackend(),
    concurrency: { inference: Number(concurrency) },
  });
  await worker.start();
  process.on('SIGTERM', () => {
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  console.log('scale worker ready');
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exit(1);
});
