/*
 * bench:batch worker process: a Cell0Worker, concurrency from argv. By default it serves the inference
 * queue with the no-op backend (so the benchmark measures cell0's own cost per item, not a model's); with
 * a JSON options argument `{ "ollamaUrl": …, "maxBatchSize": … }` it serves the embedding queue with an
 * Ollama backend at that URL (the simulator), gathering at most `maxBatchSize` inputs per backend call.
 * Sends { type: 'ready' } once it takes jobs and closes on SIGTERM.
 */
import { Cell0Worker } from '../workers/cell0-worker.js';
import { NoopInferenceBackend } from '../workers/providers/noop-provider.js';
import { OllamaBackend } from '../workers/providers/ollama-backend.js';
import { OllamaClient } from '../workers/providers/ollama/ollama-client.js';

const [redisUrl, prefix, concurrency, embedJson] = process.argv.slice(2);
process.on('disconnect', () => process.exit(1));

async function main(): Promise<void> {
  const embed = embedJson
    ? (JSON.parse(embedJson) as { ollamaUrl: string; maxBatchSize: number })
    : undefined;
  const worker = embed
    ? new Cell0Worker({
        redisUrl: redisUrl!,
        prefix: prefix!,
        queues: ['embedding'],
        inference: new OllamaBackend(new OllamaClient({ baseUrl: embed.ollamaUrl })),
        concurrency: { embedding: Number(concurrency) },
        embedding: { maxBatchSize: embed.maxBatchSize },
        heartbeatMs: 0,
      })
    : new Cell0Worker({
        redisUrl: redisUrl!,
        prefix: prefix!,
        queues: ['inference'],
        inference: new NoopInferenceBackend(),
        concurrency: { inference: Number(concurrency) },
        heartbeatMs: 0,
      });
  await worker.start();
  process.on('SIGTERM', () => {
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  process.send?.({ type: 'ready' });
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err) + '\n');
  process.exit(1);
});
