/*
 * bench:stream's identical streams: 100 concurrent streams of one prompt not sent before, through cell0.
 * The simulator's generation calls must grow by exactly 1 and every reader must receive the whole text: equal
 * to cell0's non-streamed answer of the same request afterwards (no new generation), with its token count in
 * the usage chunk. The backend sees one stream, so cell0's added TTFT is taken against single direct streams
 * run next to it (5 one after another; order alternating over the pairs).
 */
import { randomBytes } from 'node:crypto';
import { type Redis } from 'ioredis';
import { type Pool } from 'undici';
import { median, percentile } from './e2e-common.js';
import { commandCalls } from './fleet.js';
import { KEY, MODEL, direct, simStats, viaCell0 } from './stream-clients.js';
import { type StreamResult } from './stream-read.js';
import { commandsPer } from './stream-run.js';

export interface IdenticalPair {
  generations: number;
  generationsAfterRef: number;
  whole: number;
  distinctTexts: number;
  tokens: number;
  usageTokens: number[];
  chunksP50: number;
  commandsPerStream: number;
  xaddPerGeneration: number;
  ttftP50: number;
  ttftP99: number;
  directP50: number;
  directP99: number;
  ok: boolean;
}

const sorted = (xs: number[]) => xs.filter(Number.isFinite).sort((a, b) => a - b);

async function identicalOnce(
  cell0Pool: Pool,
  simPool: Pool,
  redis: Redis,
  tag: string,
  maxTokens: number,
  readers: number,
) {
  const prompt = `Stream ${tag} shared: describe ${randomBytes(6).toString('hex')} in detail`;
  const before = await simStats(simPool);
  const calls0 = await commandCalls(redis);
  const shared: StreamResult[] = await Promise.all(
    Array.from({ length: readers }, () => viaCell0(cell0Pool, prompt, maxTokens)),
  );
  const commands = commandsPer(calls0, await commandCalls(redis), readers);
  const generations = (await simStats(simPool)).generations - before.generations;
  // The whole answer of that one generation: the same request without streaming (cell0 answers it from the
  // job's result or its cache, with no new generation).
  const ref = await cell0Pool.request({
    path: '/v1/chat/completions',
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: prompt }],
      max_tokens: maxTokens,
    }),
  });
  const refBody = (await ref.body.json()) as {
    choices?: { message?: { content?: string } }[];
    usage?: { completion_tokens?: number };
  };
  const text = refBody.choices?.[0]?.message?.content ?? '';
  const tokens = refBody.usage?.completion_tokens ?? -1;
  const generationsAfterRef = (await simStats(simPool)).generations - before.generations;
  const whole = shared.filter(
    (s) => s.error === undefined && s.text.length > 0 && s.text === text && s.tokens === tokens,
  ).length;
  const ttft = sorted(shared.map((s) => s.ttftMs));
  return {
    generations,
    generationsAfterRef,
    whole,
    distinctTexts: new Set(shared.map((s) => s.text)).size,
    tokens,
    usageTokens: [...new Set(shared.map((s) => s.tokens))].sort((a, b) => a - b),
    chunksP50: percentile(sorted(shared.map((s) => s.chunks)), 50),
    commandsPerStream: commands.all,
    xaddPerGeneration: commands.xadd * readers,
    ttftP50: percentile(ttft, 50),
    ttftP99: percentile(ttft, 99),
    ok: generations === 1 && generationsAfterRef === 1 && whole === readers,
  };
}

/** P pairs of (5 single direct streams, `readers` identical streams through cell0). */
export async function identicalPairs(
  cell0Pool: Pool,
  simPool: Pool,
  redis: Redis,
  opts: { pairs: number; tag: string; maxTokens: number; readers: number },
  log: (line: string) => void,
): Promise<{ pairs: IdenticalPair[]; addedP50: number; addedP99: number; ok: boolean }> {
  const pairs: IdenticalPair[] = [];
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
  for (let p = 0; p < opts.pairs; p++) {
    const directRun = async () => {
      const ttft: number[] = [];
      for (let i = 0; i < 5; i++) {
        const prompt = `Stream ${opts.tag} single ${p}.${i}: describe ${randomBytes(6).toString('hex')}`;
        ttft.push((await direct(simPool, prompt, opts.maxTokens)).ttftMs);
      }
      return sorted(ttft);
    };
    let d: number[];
    let c: Awaited<ReturnType<typeof identicalOnce>>;
    if (p % 2 === 0) {
      d = await directRun();
      c = await identicalOnce(cell0Pool, simPool, redis, `${opts.tag}i${p}`, opts.maxTokens, opts.readers);
    } else {
      c = await identicalOnce(cell0Pool, simPool, redis, `${opts.tag}i${p}`, opts.maxTokens, opts.readers);
      d = await directRun();
    }
    const pair = { ...c, directP50: percentile(d, 50), directP99: percentile(d, 99) };
    pairs.push(pair);
    log(
      `  pair ${p + 1}: generations ${c.generations} (must be 1), whole text ${c.whole}/${opts.readers} ` +
        `(${c.distinctTexts} distinct; ${c.tokens} tokens; usage ${c.usageTokens.join('/')}) — ${c.ok ? 'ok' : 'FAILED'}; ` +
        `TTFT p50/p99 cell0 ${f(c.ttftP50)}/${f(c.ttftP99)} ms, direct single ${f(pair.directP50)}/${f(pair.directP99)} ms; ` +
        `text chunks/reader ${c.chunksP50}; Redis commands/stream ${f(c.commandsPerStream)} (xadd ${c.xaddPerGeneration.toFixed(0)})`,
    );
  }
  return {
    pairs,
    addedP50: median(pairs.map((x) => x.ttftP50 - x.directP50)),
    addedP99: median(pairs.map((x) => x.ttftP99 - x.directP99)),
    ok: pairs.every((x) => x.ok),
  };
}
