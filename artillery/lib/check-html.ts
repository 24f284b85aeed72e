/*
 * `npm run load:check-html -- <report.html> [--screenshot out.png]`: opens a load report in a real browser
 * (the system's Chromium, driven by playwright-core from artillery/'s devDependencies; no browser is ever
 * downloaded) and checks that it renders: the verdict, the checks table, and both charts with data. Exits
 * non-zero when it does not. CHROMIUM_PATH overrides where the browser is (default: chromium on PATH).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const ARTILLERY_DIR = resolve(__dirname, '..');

interface Page {
  goto(url: string): Promise<unknown>;
  title(): Promise<string>;
  evaluate<T>(fn: () => T): Promise<T>;
  screenshot(opts: { path: string; fullPage: boolean }): Promise<unknown>;
}
interface Browser {
  newPage(opts: { viewport: { width: number; height: number } }): Promise<Page>;
  close(): Promise<void>;
}
interface PlaywrightCore {
  chromium: { launch(opts: { executablePath: string; args: string[] }): Promise<Browser> };
}

function chromiumPath(): string {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) return fromEnv;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  throw new Error('no chromium on PATH (Debian: apt-get install chromium), or set CHROMIUM_PATH');
}

/** What the page shows once rendered. */
export interface Rendered {
  title: string;
  verdict: string;
  checks: number;
  charts: number;
  /** Points of every chart line, per chart. */
  points: number[];
}

export async function checkHtml(file: string, screenshot?: string): Promise<Rendered> {
  const require = createRequire(join(ARTILLERY_DIR, 'package.json'));
  const { chromium } = require('playwright-core') as PlaywrightCore;
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 1200 } });
    await page.goto(pathToFileURL(resolve(file)).href);
    const rendered = await page.evaluate(() => {
      const doc = (globalThis as unknown as { document: DocumentLike }).document;
      return {
        verdict: doc.querySelector('#verdict')?.textContent ?? '',
        checks: doc.querySelectorAll('#checks tr').length,
        charts: doc.querySelectorAll('svg').length,
        points: Array.from(doc.querySelectorAll('svg')).map((svg) =>
          Array.from(svg.querySelectorAll('polyline')).reduce(
            (n, line) => n + (line.getAttribute('points') ?? '').split(' ').filter(Boolean).length,
            0,
          ),
        ),
      };
    });
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
    return { title: await page.title(), ...rendered };
  } finally {
    await browser.close();
  }
}

/** The little of the DOM the check reads (the project's types have no DOM library). */
interface ElementLike {
  textContent: string | null;
  getAttribute(name: string): string | null;
  querySelectorAll(selector: string): ArrayLike<ElementLike>;
}
interface DocumentLike {
  querySelector(selector: string): ElementLike | null;
  querySelectorAll(selector: string): ArrayLike<ElementLike>;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const file = args[0];
  const i = args.indexOf('--screenshot');
  const shot = i >= 0 ? args[i + 1] : undefined;
  if (file === undefined || !existsSync(file)) {
    process.stderr.write('usage: npm run load:check-html -- <report.html> [--screenshot out.png]\n');
    process.exit(2);
  }
  const r = await checkHtml(file, shot);
  console.log(JSON.stringify(r));
  const ok = /^(PASS|FAIL)$/.test(r.verdict) && r.checks > 0 && r.charts >= 2 && r.points.every((n) => n > 0);
  if (!ok) {
    process.stderr.write('the report did not render as expected\n');
    process.exitCode = 1;
  } else console.log(`ok: ${file} renders in Chromium (verdict ${r.verdict}, ${r.charts} charts)`);
}

if (require.main === module)
  main().catch((err: unknown) => {
    process.stderr.write(`load:check-html: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
