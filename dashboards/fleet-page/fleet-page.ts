import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Response, type Router } from 'express';
import { type AccessControl } from '../../producers/api/access-control.js';
import { FleetSampler, type FleetSamplerOptions, type FleetSources } from './fleet-sampler.js';

/** Options of {@link createFleetPage}. */
export interface FleetPageOptions {
  /** Where the fleet's figures are read. */
  sources: FleetSources;
  /** Where the page is mounted. Default "/admin/fleet". */
  basePath?: string;
  /** Who may see it: admin keys, as for Bull Board (Bearer, or Basic auth with the key as password). */
  access: AccessControl;
  /** Sampling interval, ring size and idle stop (see FleetSamplerOptions). */
  sampler?: Omit<FleetSamplerOptions, 'sources'>;
}

/** Static files of the page: its own, and uPlot's from node_modules (never a CDN). */
const FILES: Record<string, { path: () => string; type: string }> = {
  '/': { path: () => join(__dirname, 'public', 'index.html'), type: 'text/html; charset=utf-8' },
  '/fleet.js': { path: () => join(__dirname, 'public', 'fleet.js'), type: 'text/javascript; charset=utf-8' },
  '/fleet.css': { path: () => join(__dirname, 'public', 'fleet.css'), type: 'text/css; charset=utf-8' },
  '/uplot.js': {
    path: () => require.resolve('uplot/dist/uPlot.iife.min.js'),
    type: 'text/javascript; charset=utf-8',
  },
  '/uplot.css': { path: () => require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

/** Only this origin's scripts, styles and requests; no inline script, no framing. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The live fleet page (docs/observability.md): workers with state and CPU/memory sparklines, resident
 * models, breakers, queue depths, cache hit ratios, throughput and p95 over the last minutes. Plain HTML,
 * CSS and JS with uPlot, polling `data` (JSON) every sampling interval. Guarded like Bull Board: admin keys
 * only, Basic auth accepted so a browser can log in; a tenant key gets 403.
 */
export function createFleetPage(opts: FleetPageOptions): {
  basePath: string;
  router: Router;
  sampler: FleetSampler;
} {
  const basePath = opts.basePath ?? '/admin/fleet';
  const sampler = new FleetSampler({ ...opts.sampler, sources: opts.sources });
  const cache = new Map<string, Buffer>();
  const router = express.Router();
  router.use(opts.access.adminRoute({ basic: true }));
  router.use((_req, res, next) => {
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    next();
  });
  router.get('/data', async (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json(await sampler.view());
  });
  for (const [path, file] of Object.entries(FILES)) {
    router.get(path, (req, res) => {
      // The page's relative links need the trailing slash: /admin/fleet → /admin/fleet/.
      if (path === '/' && !req.originalUrl.split('?')[0]!.endsWith('/')) {
        res.redirect(301, `${req.baseUrl}/`);
        return;
      }
      send(res, cache, file.path(), file.type);
    });
  }
  return { basePath, router, sampler };
}

function send(res: Response, cache: Map<string, Buffer>, path: string, type: string): void {
  let body = cache.get(path);
  if (!body) {
    body = readFileSync(path);
    cache.set(path, body);
  }
  res.setHeader('Content-Type', type);
  res.setHeader('Cache-Control', 'no-cache');
  res.end(body);
}
