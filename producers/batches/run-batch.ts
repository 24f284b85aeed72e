import { countLine, progressOf, type BatchProgress } from './batch-client.js';
import { type BatchItem } from './batch-input.js';
import { type BatchResultLine } from './batch-model.js';
import { type Batches } from './batches.js';

/**
 * Creates a batch of already-parsed items and collects its result lines, in the items' order, once every
 * one has finished (Cell0Client.batch). `onProgress` is called as results come in.
 */
export async function runBatch(
  batches: Batches,
  items: readonly BatchItem[],
  opts: { onProgress?: (p: BatchProgress) => void; signal?: AbortSignal },
): Promise<BatchResultLine[]> {
  const t0 = Date.now();
  const view = await batches.create(items);
  const out: BatchResultLine[] = [];
  const counts = { completed: 0, failed: 0, cancelled: 0 };
  const lines = await batches.results(view.id, opts.signal ? { signal: opts.signal } : {});
  for await (const chunk of lines ?? []) {
    for (const text of chunk) {
      const line = JSON.parse(text) as BatchResultLine;
      out[line.line - 1] = line;
      countLine(counts, line);
    }
    opts.onProgress?.(progressOf(view, counts, Date.now() - t0));
  }
  return out;
}
