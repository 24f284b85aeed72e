import { chromium, type Browser } from 'playwright-core';
import { ModelMemoryManager } from '../../shared/resources/model-memory-manager';
import { ResourceMonitor } from '../../shared/resources/resource-monitor';
import { Cell0Metrics } from '../../shared/metrics/metrics';
import { systemChromium } from '../helpers/chromium';
import { post, startTestFleet, type TestFleet } from '../helpers/fleet';

/** The part of the DOM the page checks read. */
interface PageDocument<E> {
  querySelectorAll(selector: string): ArrayLike<E>;
  getElementById(id: string): E | null;
  body: E;
}

const ADMIN = 'admin-key-fleet-page';
const TENANT = 'tenant-key-fleet-page';
/** A model id that would run script if the page rendered fleet data as markup. */
const HOSTILE = '<img src=x onerror="window.__xss=1">';

describe('live fleet page at /admin/fleet (headless Chromium)', () => {
  let fleet: TestFleet;
  let browser: Browser;
  const monitors: ResourceMonitor[] = [];

  beforeAll(async () => {
    const executablePath = systemChromium();
    const models = [
      new ModelMemoryManager({ budgetBytes: 8e9 }),
      new ModelMemoryManager({ budgetBytes: 8e9 }),
    ];
    models[0]!.registerModel('llama3.2:1b', 'llama3.2:1b', 1e9);
    models[0]!.accessModel('llama3.2:1b');
    models[1]!.registerModel(HOSTILE, HOSTILE, 1e9);
    models[1]!.accessModel(HOSTILE);
    for (let i = 0; i < 2; i++) {
      const m = new ResourceMonitor({ intervalMs: 200 });
      await m.start();
      monitors.push(m);
    }
    fleet = await startTestFleet({
      workers: 2,
      adminKeys: [ADMIN],
      apiKeys: [TENANT],
      tenantSecret: 'fleet-page-secret',
      metrics: new Cell0Metrics({ defaultMetrics: false }),
      fleetPageIntervalMs: 300,
      workerStatus: (i) => ({
        resources: { usage: monitors[i]!.getCurrentUsage() ?? null },
        models: { managers: [{ backend: 'sim', ...models[i]!.getStats() }] },
      }),
    });
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox'], headless: true });
  });

  afterAll(async () => {
    await browser?.close();
    await fleet?.close();
    await Promise.all(monitors.map((m) => m.close()));
  });

  it('lists both live workers with usage sparklines, models, queues and p95, refreshing, with no console error or failed request', async () => {
    const context = await browser.newContext({ httpCredentials: { username: 'admin', password: ADMIN } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    });
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));

    const res = await page.goto(`${fleet.url}/admin/fleet`);
    expect(res?.status()).toBe(200);
    expect(new URL(page.url()).pathname).toBe('/admin/fleet/');

    // The page's p95 is per sampling interval (from deltas of the API's duration buckets), and the sampler
    // starts with the page's first read: a request timed before that first sample is in its baseline and
    // never shows. On a loaded machine the page's first read can come after a request sent right after the
    // page's load event, so the request goes once the page has drawn a sample.
    await page.waitForFunction(
      () => {
        type El = { dataset: Record<string, string | undefined> };
        const d = (globalThis as unknown as { document: PageDocument<El> }).document;
        return Number(d.body.dataset.samples) >= 1;
      },
      undefined,
      { timeout: 30_000, polling: 100 },
    );
    // One work request through the API: the fleet completes a job, the API times a POST.
    const answer = await post(
      `${fleet.url}/v1/inference`,
      { model: 'qwen2.5:7b', prompt: 'fleet page' },
      { headers: { authorization: `Bearer ${TENANT}` } },
    );
    expect(answer.status).toBe(200);

    const ids = fleet.workers.map((w) => w.id).sort();
    // Runs in the page: a function (Playwright calls it over CDP; the page's CSP forbids eval of strings),
    // typed with the little of the DOM it uses since the test program has no DOM types.
    await page.waitForFunction(
      (expected: string) => {
        type El = { dataset: Record<string, string | undefined>; textContent: string | null };
        const d = (globalThis as unknown as { document: PageDocument<El> }).document;
        const listed = Array.from(d.querySelectorAll('#workers tbody tr'), (r) => r.dataset.worker).sort();
        return (
          JSON.stringify(listed) === expected &&
          // a CPU and a memory sparkline per worker (uPlot canvases), and the three charts
          d.querySelectorAll('#workers .spark canvas').length === 4 &&
          d.querySelectorAll('#c-throughput canvas, #c-p95 canvas, #c-queues canvas').length === 3 &&
          /\d+ ms/.test(d.getElementById('t-p95')?.textContent ?? '') &&
          // refreshed: at least three polls drawn
          Number(d.body.dataset.samples) >= 3
        );
      },
      JSON.stringify(ids),
      { timeout: 30_000, polling: 100 },
    );

    const rows = (await page.evaluate(
      `[...document.querySelectorAll('#workers tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent))`,
    )) as string[][];
    const byId = new Map(rows.map((r) => [r[0], r]));
    for (const id of ids) {
      const row = byId.get(id)!;
      expect(row[1]).toBe('running');
      expect(row[4]).toMatch(/\d+\.\d/); // CPU % beside its sparkline
      expect(row[5]).toMatch(/\d+\.\d/); // memory %
    }
    const models = rows.map((r) => r[6]).sort();
    // The hostile model id is shown as text, and no script ran.
    expect(models).toEqual([HOSTILE, 'llama3.2:1b'].sort());
    expect(await page.evaluate('window.__xss')).toBeUndefined();
    expect(await page.$$('#workers img')).toHaveLength(0);

    const queues = await page.evaluate(
      `[...document.querySelectorAll('#queues tbody tr td:first-child')].map((t) => t.textContent)`,
    );
    expect(queues).toEqual(expect.arrayContaining(['inference', 'search', 'embedding']));
    // uPlot came from this server, not a CDN.
    expect(requested.every((u) => u.startsWith(fleet.url) || u.startsWith('data:'))).toBe(true);
    expect(requested.some((u) => u.endsWith('/admin/fleet/uplot.js'))).toBe(true);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('refuses tenant keys (403) and anonymous callers (401, asking for Basic auth), in the browser and over HTTP', async () => {
    const context = await browser.newContext({ httpCredentials: { username: 'x', password: TENANT } });
    const page = await context.newPage();
    const res = await page.goto(`${fleet.url}/admin/fleet/`);
    expect(res?.status()).toBe(403);
    await context.close();

    for (const path of ['/admin/fleet/', '/admin/fleet/data', '/admin/fleet/uplot.js']) {
      const bearer = await fetch(`${fleet.url}${path}`, { headers: { authorization: `Bearer ${TENANT}` } });
      expect(bearer.status).toBe(403);
      const none = await fetch(`${fleet.url}${path}`);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Basic /);
    }
    const data = await fetch(`${fleet.url}/admin/fleet/data`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(data.status).toBe(200);
    expect(data.headers.get('cache-control')).toBe('no-store');
    const view = (await data.json()) as { workers: { id: string }[] };
    expect(view.workers.map((w) => w.id).sort()).toEqual(fleet.workers.map((w) => w.id).sort());
  });
});
