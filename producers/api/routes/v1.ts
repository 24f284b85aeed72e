import express, { type Router } from 'express';
import { CacheStrategy, type ResponseCache } from '../../../shared/cache/http/index.js';
import { type Cell0Client } from '../../cell0-client.js';
import { ADMIN_ROUTES, type AccessControl } from '../access-control.js';
import { addJobIdGuard, addReadRoutes } from './reads.js';
import { batchRoutes, type BatchRoutesConfig } from '../batches/batch-routes.js';
import { addMethodNotAllowed, addWorkRoutes, type WorkRoutesOptions } from './work.js';
import { addEmbeddingsRoute } from './embeddings.js';
import { openAIFilesRouter } from '../openai/openai-files.js';
import { keepRouteLabelOnError } from '../../../shared/metrics/http-metrics.js';

/** Options of {@link v1Router}. */
export interface V1RouterOptions extends Omit<WorkRoutesOptions, 'keysConfigured'> {
  client: Cell0Client;
  access: AccessControl;
  responseCache?: ResponseCache;
  /** Largest body of POST /v1/embeddings. Default 4 MiB. */
  maxEmbedBodyBytes?: number;
  /** Batch jobs at /v1/batches; none when absent. */
  batches?: BatchRoutesConfig;
}

/**
 * The /v1 router, in the order its middleware must run: the admin routes' guard, the tenant guard, the job
 * id guard, the response cache, then the work and read routes, and 405 for wrong methods.
 */
export function v1Router(opts: V1RouterOptions): Router {
  const { access } = opts;
  const v1 = express.Router();
  // The admin routes' guard runs first (express matches these paths exactly as it matches the routes
  // below); every other /v1 request then needs a tenant key. Both run before the response cache.
  v1.get([...ADMIN_ROUTES], access.adminRoute());
  v1.use(access.tenantRoute());
  if (opts.batches) {
    v1.use('/batches', batchRoutes({ ...opts.batches, client: opts.client, tenantKeys: access.tenantKeys }));
    v1.use(
      '/files',
      openAIFilesRouter({
        batches: opts.batches.batches,
        maxBodyBytes: opts.batches.maxBodyBytes,
        tenantKeys: access.tenantKeys,
      }),
    );
  }
  addJobIdGuard(v1);
  if (opts.responseCache) {
    const rc = opts.responseCache;
    const perUser = access.tenantKeys || access.adminMode === 'keys';
    // A finished job changes only when an identical request re-runs it: a few seconds of staleness at most.
    rc.configureEndpoint('/v1/jobs/:queue/:id', CacheStrategy.CACHE_CONTROL, 5, { perUser });
    // Counts and the fleet list are polled by dashboards; a second or two of age spares Redis.
    rc.configureEndpoint('/v1/queues', CacheStrategy.ALWAYS, 1, { perUser });
    rc.configureEndpoint('/v1/fleet', CacheStrategy.ALWAYS, 2, { perUser });
    v1.use(rc.middleware());
  }
  addWorkRoutes(v1, { ...opts, keysConfigured: access.tenantKeys });
  addEmbeddingsRoute(v1, {
    client: opts.client,
    tenantKeys: access.tenantKeys,
    resultWaitMs: opts.resultWaitMs,
    maxWaitMs: opts.maxWaitMs,
    maxBodyBytes: opts.maxEmbedBodyBytes ?? 4 * 1024 * 1024,
  });
  addReadRoutes(v1, opts.client);
  addMethodNotAllowed(v1);
  v1.use(keepRouteLabelOnError());
  return v1;
}
