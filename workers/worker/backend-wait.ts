import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { type RedisConnection } from '../../shared/redis/cluster.js';
import {
  BreakerOpenError,
  ModelMemoryBusyError,
  ProviderError,
  ProviderUnavailableError,
  RateLimitedError,
} from '../../shared/errors.js';
import { type Logger } from '../../shared/logger.js';
import { encodeFailure } from '../../shared/queues/failure.js';
import { type QueueName, queueKey } from '../../shared/queues/names.js';
import { type DeferKind } from './options.js';

/** An error that says the backend is away or busy: the job waits for it instead of spending an attempt. */
export type BackendAwayError = BreakerOpenError | RateLimitedError | ProviderError | ModelMemoryBusyError;

/** The backend is down or asked to back off: the job waits for it instead of spending an attempt. */
export function isBackendAway(err: unknown): err is BackendAwayError {
  return (
    err instanceof BreakerOpenError ||
    err instanceof ModelMemoryBusyError ||
    err instanceof RateLimitedError ||
    (err instanceof ProviderError && err.backendUnavailable)
  );
}

/** What a backend wait needs of the worker. */
export interface BackendWaitOptions {
  prefix: string;
  /** How long a job may keep waiting for its backend, counted from its first wait; 0 = no limit. */
  maxMs: number;
  /** The queue's (non-blocking) connection, where the time a job first had to wait is kept. */
  connectionOf: (queue: QueueName) => RedisConnection | undefined;
  log: Logger;
  onDeferred: (queue: QueueName, jobId: string, delayMs: number, reason: string, kind: DeferKind) => void;
}

/**
 * Jobs whose backend is away (unreachable, open breaker, rate limit, 429/503, no model memory) go back to
 * wait, delayed by what the backend or breaker asked (jittered), without spending an attempt — up to a
 * budget kept in Redis, so it holds across workers and restarts.
 */
export class BackendWait {
  constructor(private readonly opts: BackendWaitOptions) {}

  /**
   * Puts the job back to wait; throws DelayedError on success, or an UnrecoverableError
   * (PROVIDER_UNAVAILABLE) once the job has waited longer than the budget.
   */
  async defer(job: Job, token: string | undefined, queue: QueueName, err: BackendAwayError): Promise<never> {
    const max = this.opts.maxMs;
    if (max > 0) {
      // When the job first had to wait, kept in Redis so the budget holds across workers and restarts.
      // (The connection handed to BullMQ is its non-blocking one; blocking reads use a duplicate.)
      const client = this.opts.connectionOf(queue)!;
      const key = waitingSinceKey(this.opts.prefix, queue, job.id);
      const now = Date.now();
      const since = await client.set(key, String(now), 'PX', max + 60_000, 'NX', 'GET');
      if (since !== null && now - Number(since) > max) {
        this.opts.log.warn(
          { queue, jobId: job.id, waitedMs: now - Number(since) },
          'backend still away; job fails',
        );
        throw new UnrecoverableError(
          encodeFailure(
            new ProviderUnavailableError(
              err instanceof ProviderError ? err.provider : 'backend',
              `backend unavailable for longer than ${max} ms: ${err.message}`,
            ),
          ),
        );
      }
    }
    const asked = err.retryAfterMs ?? 0;
    const delayMs = Math.round(Math.min(60_000, Math.max(asked, 250) * (1 + Math.random() * 0.5)));
    await job.moveToDelayed(Date.now() + delayMs, token);
    this.opts.log.info({ queue, jobId: job.id, delayMs, reason: err.message }, 'backend away; job waits');
    this.opts.onDeferred(queue, job.id ?? '', delayMs, err.message, deferKind(err));
    throw new DelayedError();
  }

  /**
   * A job that completed: when it waited for its backend at some point (started more often than attempted),
   * its record goes, so a later re-run of the same job id starts a fresh waiting budget.
   */
  completed(job: Job, queue: QueueName): void {
    if (job.attemptsStarted > job.attemptsMade + 1 && this.opts.maxMs > 0)
      this.opts
        .connectionOf(queue)
        ?.del(waitingSinceKey(this.opts.prefix, queue, job.id))
        .catch(() => undefined);
  }
}

/** Where the time a job first had to wait for its backend is kept. */
function waitingSinceKey(prefix: string, queue: string, jobId: string | undefined): string {
  return `${queueKey(prefix, queue)}:${jobId ?? ''}:cell0-waiting-since`;
}

/** Which kind of away the error says (for the deferred-jobs metric). */
function deferKind(err: BackendAwayError): DeferKind {
  if (err instanceof BreakerOpenError) return 'breaker';
  if (err instanceof RateLimitedError) return 'rate_limit';
  if (err instanceof ModelMemoryBusyError) return 'memory';
  return 'backend';
}
