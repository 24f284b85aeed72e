import { type InferenceJobData } from '../../shared/queues/schemas.js';
import { type InferenceResult } from '../../shared/queues/results.js';
import { type InferenceBackend } from './provider.js';

/**
 * Answers every inference job at once with a fixed text. It exists to measure the fleet's own overhead
 * (bench:e2e) with no backend in the way; it is never selected unless asked for.
 */
export class NoopInferenceBackend implements InferenceBackend {
  readonly name = 'noop';
  async run(job: InferenceJobData): Promise<Omit<InferenceResult, 'servedBy'>> {
    return {
      model: job.model,
      text: 'ok',
      doneReason: 'stop',
      usage: { promptTokens: 0, completionTokens: 1, totalTokens: 1 },
      timings: { totalMs: 0 },
      provider: this.name,
    };
  }
  async close(): Promise<void> {}
}
