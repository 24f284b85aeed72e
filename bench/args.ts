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
