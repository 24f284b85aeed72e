import os from 'node:os';

/**
 * Reads `--name value` options of a bench: each numeric option (a key of `defaults`) must be a number > 0,
 * `--json` is a flag, and the names in `strings` take any non-empty text (in `.text`). Anything else prints
 * `usage` and exits 2.
 */
export function benchArgs<N extends string>(
  argv: readonly string[],
  defaults: Record<N, number>,
  usage: string,
  strings: readonly string[] = [],
): Record<N, number> & { json: boolean; text: Record<string, string> } {
  const numbers: Record<string, number> = { ...defaults };
  const text: Record<string, string> = {};
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? '';
    if (flag === '--json') {
      json = true;
      continue;
    }
    const name = flag.replace(/^--/, '');
    const value = argv[++i];
    if (strings.includes(name) && value) {
      text[name] = value;
      continue;
    }
    if (!flag.startsWith('--') || !(name in defaults) || !(Number(value) > 0)) {
      console.error(`bad argument ${flag}${value === undefined ? '' : ` ${value}`}\nusage: ${usage}`);
      process.exit(2);
    }
    numbers[name] = Number(value);
  }
  return { ...(numbers as Record<N, number>), json, text };
}

/** The 1/5/15-minute load averages, as text. */
export function loadText(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

/** Prints a bench's first lines: its title, the date, the machine and the load at the start. */
export function printBenchHeader(title: string): void {
  console.log(title);
  console.log(`date     ${new Date().toISOString()}`);
  console.log(`machine  ${os.cpus()[0]?.model.trim()}, ${os.cpus().length} cores, node ${process.version}`);
  console.log(`load     ${loadText()} (at start)`);
}
