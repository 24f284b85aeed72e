/*
 * bench:command-encoding — what encoding one Redis command with Buffer arguments costs the process: ioredis's
 * own encoder against cell0's (shared/redis/command-encoding.ts), on commands shaped like a batched job finish
 * (14 keys, then per job 8 texts and its packed options as a Buffer) of 1, 4 and 16 jobs.
 *
 * Per size and round, each encoder encodes the same command in a timed loop (after a warm-up loop), the two
 * alternating; prints ns per job of each and the median over the rounds of the ratio cell0 / ioredis. The two
 * encodings are checked equal first.
 *
 *   node --import tsx bench/command-encoding.ts [--rounds R] [--loops N] [--json]
 */
import { Command } from 'ioredis';
import { encodeMixed, ioredisToWritable } from '../shared/redis/command-encoding.js';
import { benchArgs, printBenchHeader } from './args.js';
import { median } from './e2e-common.js';

/** A batched-finish-shaped command of `jobs` jobs, made ready to encode as ioredis makes it. */
function finishCommand(jobs: number): Command {
  const args: (string | Buffer)[] = ['0123456789abcdef0123456789abcdef01234567', '14'];
  for (let k = 0; k < 14; k++) args.push(`{cell0}:inference:k${k}`);
  for (let j = 0; j < jobs; j++)
    args.push(
      `inference-${j}-3f9a0c1d2e`,
      '1796466908152',
      'returnvalue',
      '{"model":"qwen2.5:0.5b","text":"an answer of a few words","usage":{"promptTokens":10}}',
      'completed',
      '1',
      '{cell0}:inference:',
      'p1.2s',
      Buffer.from(Array.from({ length: 60 }, (_, i) => (i * 37 + j) & 0xff)),
    );
  const c = new Command('evalsha', args);
  (c as unknown as { stringifyArguments(): void }).stringifyArguments();
  return c;
}

function nsPerCall(fn: () => unknown, loops: number): number {
  for (let i = 0; i < Math.min(loops, 2000); i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < loops; i++) fn();
  return Number(process.hrtime.bigint() - t0) / loops;
}

function main(): void {
  const opts = benchArgs(
    process.argv.slice(2),
    { rounds: 6, loops: 20_000 },
    'node --import tsx bench/command-encoding.ts [--rounds R] [--loops N] [--json]',
  );
  printBenchHeader(`bench:command-encoding — ${opts.rounds} rounds of ${opts.loops} encodings per size`);
  const own = ioredisToWritable();
  const summary: Record<string, { ioredisNs: number; cell0Ns: number; ratio: number }> = {};
  for (const jobs of [1, 4, 16]) {
    const c = finishCommand(jobs);
    const { name, args } = c as unknown as { name: string; args: unknown[] };
    const theirs = own.call(c as never) as Buffer;
    if (!encodeMixed(name, args)?.equals(theirs)) throw new Error('the two encodings differ');
    const rows: { ioredis: number; cell0: number }[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      const ioredis = () => own.call(c as never);
      const cell0 = () => encodeMixed(name, args);
      // The order alternates, so neither encoder always runs right after the other's garbage.
      let a: number, b: number;
      if (r % 2 === 0) {
        a = nsPerCall(ioredis, opts.loops);
        b = nsPerCall(cell0, opts.loops);
      } else {
        b = nsPerCall(cell0, opts.loops);
        a = nsPerCall(ioredis, opts.loops);
      }
      rows.push({ ioredis: a / jobs, cell0: b / jobs });
    }
    const row = {
      ioredisNs: median(rows.map((x) => x.ioredis)),
      cell0Ns: median(rows.map((x) => x.cell0)),
      ratio: median(rows.map((x) => x.cell0 / x.ioredis)),
    };
    summary[`${jobs}`] = row;
    console.log(
      `  ${String(jobs).padStart(2)} job(s), ${theirs.length} bytes: ns per job ioredis ${row.ioredisNs.toFixed(0)}, ` +
        `cell0 ${row.cell0Ns.toFixed(0)}, median ratio ${row.ratio.toFixed(2)}`,
    );
  }
  if (opts.json) console.log(JSON.stringify(summary));
}

main();
