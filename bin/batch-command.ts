/*
 * `cell0 batch FILE.jsonl -o results.jsonl`: runs a JSONL file of requests as one batch job on a running
 * API (POST /v1/batches), follows its results stream with a progress display, and writes one result line
 * per request in the file's order.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { sleep } from '../shared/sleep.js';

/** Options of the `batch` command. */
export interface BatchCommandOptions {
  /** The API's base URL. */
  url: string;
  /** Tenant API key, sent as `Authorization: Bearer`. */
  apiKey?: string;
  /** Where the results go; undefined or "-" = stdout. */
  output?: string;
}

/** Exit codes: every request completed; some failed or were cancelled; the batch could not be run. */
export const BatchExit = { OK: 0, SOME_FAILED: 1, ERROR: 2 } as const;

interface ResultLine {
  line: number;
  status: string;
}

/** One progress line: `[#####-----] 52% 5234/10000  812 items/s  ETA 6 s`. */
export function formatProgress(done: number, total: number, elapsedMs: number, width = 30): string {
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(frac * width);
  const rate = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
  const eta = rate > 0 ? `${Math.ceil((total - done) / rate)} s` : '?';
  return (
    `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}% ` +
    `${done}/${total}  ${rate.toFixed(rate < 10 ? 1 : 0)} items/s  ETA ${done >= total ? '0 s' : eta}`
  );
}

/** Runs the command; resolves with the exit code. Progress and errors go to `err`. */
export async function batchCommand(
  file: string,
  o: BatchCommandOptions,
  err: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr,
): Promise<number> {
  const base = o.url.replace(/\/+$/, '');
  const auth: Record<string, string> = o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {};
  let body: string;
  try {
    body = await readFile(file, 'utf8');
  } catch (e) {
    err.write(`cell0 batch: cannot read ${file}: ${(e as Error).message}\n`);
    return BatchExit.ERROR;
  }
  const created = await fetch(`${base}/v1/batches`, {
    method: 'POST',
    headers: { 'content-type': 'application/jsonl', ...auth },
    body,
  }).catch((e: unknown) => e as Error);
  if (created instanceof Error) {
    err.write(`cell0 batch: cannot reach the API at ${base}: ${created.message}\n`);
    return BatchExit.ERROR;
  }
  const answer = (await created.json().catch(() => ({}))) as {
    id?: string;
    request_counts?: { total: number };
    error?: { code: string; message: string; issues?: { field: string; reason: string }[] };
  };
  if (created.status !== 202 || !answer.id) {
    err.write(`cell0 batch: ${created.status} ${answer.error?.code ?? ''} ${answer.error?.message ?? ''}\n`);
    for (const i of answer.error?.issues ?? []) err.write(`  ${i.field}: ${i.reason}\n`);
    return BatchExit.ERROR;
  }
  const id = answer.id;
  const total = answer.request_counts?.total ?? 0;
  err.write(`cell0 batch: ${id}, ${total} requests\n`);
  const t0 = Date.now();
  const lines = new Map<number, string>();
  const tty = err.isTTY === true;
  let lastPlain = 0;
  const show = (final = false) => {
    const text = formatProgress(lines.size, total, Date.now() - t0);
    if (tty) err.write(`\r${text}${final ? '\n' : ''}`);
    else if (final || Date.now() - lastPlain >= 2000) {
      lastPlain = Date.now();
      err.write(`${id}: ${text.slice(text.indexOf(']') + 2)}\n`);
    }
  };
  // Follow the results; a broken stream is read again from its start (lines are kept by number).
  for (let attempt = 0; lines.size < total; attempt++) {
    try {
      const res = await fetch(`${base}/v1/batches/${id}/results`, { headers: auth });
      if (res.status !== 200 || !res.body) throw new Error(`results answered ${res.status}`);
      let rest = '';
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        rest += decoder.decode(chunk, { stream: true });
        const cut = rest.lastIndexOf('\n');
        if (cut < 0) continue;
        for (const text of rest.slice(0, cut).split('\n')) {
          if (text) lines.set((JSON.parse(text) as ResultLine).line, text);
        }
        rest = rest.slice(cut + 1);
        show();
      }
      const status = await fetch(`${base}/v1/batches/${id}`, { headers: auth }).then(
        (r) => r.json() as Promise<{ status?: string }>,
      );
      if (status.status === 'completed' || status.status === 'cancelled' || status.status === 'failed') break;
    } catch (e) {
      if (attempt >= 5) {
        err.write(`\ncell0 batch: lost the results of ${id}: ${(e as Error).message}\n`);
        return BatchExit.ERROR;
      }
      await sleep(1000 * (attempt + 1));
    }
  }
  show(true);
  const ordered = [...lines.entries()].sort((a, b) => a[0] - b[0]).map(([, t]) => t);
  const out = ordered.join('\n') + (ordered.length > 0 ? '\n' : '');
  if (o.output && o.output !== '-') await writeFile(o.output, out);
  else process.stdout.write(out);
  const failed = ordered.filter((t) => (JSON.parse(t) as ResultLine).status !== 'completed').length;
  err.write(
    `cell0 batch: ${id}: ${ordered.length - failed} completed, ${failed} failed or cancelled` +
      (o.output && o.output !== '-' ? `; results in ${o.output}` : '') +
      '\n',
  );
  return failed > 0 || ordered.length < total ? BatchExit.SOME_FAILED : BatchExit.OK;
}
