import { type Logger } from '../../shared/logger.js';
import { type InferenceBackend } from '../providers/provider.js';

/** How often the backend's model list is read again, ms. */
const EVERY_MS = 30_000;

/**
 * The models the worker's inference backend lists, kept for the published status (section `backendModels`, read
 * by GET /v1/models). Read at most every 30 s, one read at a time, never failing anything.
 */
export class ModelList {
  private list: string[] | undefined;
  private at = 0;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly backend: InferenceBackend | undefined,
    private readonly log: Logger,
  ) {}

  /** The last list read, if any. */
  get models(): string[] | undefined {
    return this.list;
  }

  /** Reads the list again when it is older than 30 s; resolves when that read is done. */
  refresh(): Promise<void> {
    const backend = this.backend;
    if (!backend?.listModels || Date.now() - this.at < EVERY_MS) return Promise.resolve();
    this.reading ??= backend
      .listModels({ signal: AbortSignal.timeout(5000) })
      .then((m) => void (this.list = m))
      .catch((err: unknown) => this.log.debug({ err }, 'could not list the backend models'))
      .finally(() => {
        this.at = Date.now();
        this.reading = undefined;
      });
    return this.reading;
  }
}
