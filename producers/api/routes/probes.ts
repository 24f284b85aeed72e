import express, { type Router } from 'express';
import { summarizeBackendHealth, type FleetBackendHealth } from '../../../shared/fleet/backend-health.js';
import { type Cell0Client } from '../../cell0-client.js';
import { keepRouteLabelOnError } from '../../../shared/metrics/http-metrics.js';

/** Options of {@link probesRouter}. */
export interface ProbesOptions {
  client: Cell0Client;
  /** readyz answers within this, ms. */
  readyTimeoutMs: number;
}

/**
 * The probes: GET /healthz (the process answers) and GET /readyz (it can take work now: queues connected,
 * Redis answering and not full; `?backends=1` adds the fleet's backend breakers).
 */
export function probesRouter({ client, readyTimeoutMs }: ProbesOptions): Router {
  const router = express.Router();
  const started = Date.now();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', uptimeSeconds: Math.round((Date.now() - started) / 1000) });
  });

  router.get('/readyz', async (req, res) => {
    // ?backends=1: the fleet's backend breakers too (read alongside); reported, never a reason for 503:
    // jobs for a down backend are still accepted and wait for it.
    const backendsRead = isTrue(req.query.backends) ? backendHealth(client, readyTimeoutMs) : undefined;
    const health = await Promise.race([
      client.health(),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), readyTimeoutMs).unref()),
    ]);
    const backends = await backendsRead;
    // Redis memory: over the watermark or full, new work is refused, so this instance is not ready for it;
    // a policy other than noeviction (changed while running) loses jobs.
    const memory = client.redisMemory.snapshot();
    const memoryState = memory?.state ?? 'ok';
    const reason = !client.submitter.ready
      ? 'queues_not_connected'
      : health?.healthy !== true
        ? 'redis_unavailable'
        : memoryState === 'full'
          ? 'redis_full'
          : memoryState === 'watermark'
            ? 'redis_memory_watermark'
            : memoryState === 'eviction_policy'
              ? 'redis_eviction_policy'
              : undefined;
    const ready = reason === undefined;
    if (!ready) {
      const retryMs =
        reason.startsWith('redis_') && memoryState !== 'ok' ? 5000 : (health?.retryAfterMs ?? 1000);
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retryMs / 1000))));
    }
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      ...(reason ? { reason } : {}),
      queuesConnected: client.submitter.ready,
      redis: health ?? { healthy: false, error: `no answer within ${readyTimeoutMs} ms` },
      ...(memory
        ? {
            redisMemory: {
              state: memory.state,
              usedBytes: memory.usedBytes,
              maxBytes: memory.maxBytes,
              usedPercent: memory.usedPercent,
              watermarkPercent: memory.watermarkPercent,
              policy: memory.policy ?? 'unknown',
              policyOk: memory.policy === undefined || memory.policy === 'noeviction',
            },
          }
        : {}),
      ...backends,
    });
  });
  router.use(keepRouteLabelOnError());
  return router;
}

function isTrue(v: unknown): boolean {
  return v === '1' || v === 'true';
}

/**
 * Backend health across the live workers (`backends`, and `backendsHealthy` when every breaker is closed),
 * or `backendsError` when the fleet registry could not be read in time.
 */
async function backendHealth(
  client: Cell0Client,
  timeoutMs: number,
): Promise<{ backendsHealthy: boolean; backends: FleetBackendHealth[] } | { backendsError: string }> {
  const workers = await Promise.race([
    client.fleet().catch((err: unknown) => (err instanceof Error ? err : new Error(String(err)))),
    new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs).unref()),
  ]);
  if (workers === undefined)
    return { backendsError: `the fleet registry did not answer within ${timeoutMs} ms` };
  if (workers instanceof Error)
    return { backendsError: `could not read the fleet registry: ${workers.message}` };
  const backends = summarizeBackendHealth(workers);
  return { backendsHealthy: backends.every((b) => b.state === 'closed'), backends };
}
