import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { integerArgsAsStrings } from '../../shared/redis/lua-integer-args';

/** BullMQ's own text of one of its scripts, as it defines it on a connection. */
async function bullmqLua(script: string): Promise<string> {
  const mod = (await import(join('bullmq', 'dist', 'cjs', 'scripts', `${script}.js`))) as Record<
    string,
    unknown
  >;
  const found = Object.values(mod).find((v) => typeof (v as { content?: unknown })?.content === 'string');
  return (found as { content: string }).content;
}

/*
 * Redis 7.0 formats every Lua number given to redis.call with snprintf("%.17g"); an integer literal written as
 * the string that format makes of it gives the command the same argument without the conversion.
 */
describe('integer literals given to redis.call as strings', () => {
  test("only a call's own integer-literal arguments are rewritten, as the digits Redis would make", () => {
    const lua = [
      'local rcall = redis.call',
      'local n = rcall("HINCRBY", k, "atm", 1) - 1',
      'rcall("LREM", k, -1, id)',
      'redis.call("SPOP", k, 1000000)',
      'redis.pcall("LRANGE", k, 0, -1)',
      'rcall("A", rcall("B", 2), 3, f(4), t[5], { 6 }, 007, 1.5, 0x10, 1e3, n - 1, -(n + 1))',
    ].join('\n');
    expect(integerArgsAsStrings(lua)).toBe(
      [
        'local rcall = redis.call',
        'local n = rcall("HINCRBY", k, "atm", "1") - 1',
        'rcall("LREM", k, "-1", id)',
        'redis.call("SPOP", k, "1000000")',
        'redis.pcall("LRANGE", k, "0", "-1")',
        // Nested calls are calls too; anything but a plain integer literal is left as written.
        'rcall("A", rcall("B", "2"), "3", f(4), t[5], { 6 }, 007, 1.5, 0x10, 1e3, n - 1, -(n + 1))',
      ].join('\n'),
    );
  });

  test('strings, comments, other functions and an rcall that is not redis.call are left alone', () => {
    const lua = [
      '-- rcall("X", 1)',
      '--[[ redis.call("X", 2) ]]',
      'local s = "redis.call(\\"X\\", 3)" .. \'rcall(4)\'',
      'local l = [[redis.call("X", 5)]]',
      'foo.rcall(6)',
      'myrcall(7)',
      'rcall("Y", 8)',
    ].join('\n');
    // Without `local rcall = redis.call` in the text, rcall is someone else's function.
    expect(integerArgsAsStrings(lua)).toBe(lua);
    expect(integerArgsAsStrings(`local rcall = redis.call\n${lua}`)).toBe(
      `local rcall = redis.call\n${lua.replace('rcall("Y", 8)', 'rcall("Y", "8")')}`,
    );
  });

  test('a text the scan cannot follow is returned unchanged', () => {
    for (const lua of ['redis.call("X", 1', 'redis.call("X", 1, "open)', 'redis.call("X", 1]'])
      expect(integerArgsAsStrings(lua)).toBe(lua);
  });

  test("BullMQ's finish and add: their literals rewritten, nothing else", async () => {
    for (const [script, literals] of [
      ['moveToFinished-14', 21],
      ['addStandardJob-9', 7],
    ] as const) {
      const lua = await bullmqLua(script);
      const out = integerArgsAsStrings(lua);
      // Each rewritten literal gains its two quotes, and that is the only difference.
      expect(out.length - lua.length).toBe(2 * literals);
      const unquoted = (text: string) => text.replace(/"(-?\d+)"/g, '$1');
      expect(unquoted(out)).toBe(unquoted(lua));
      expect(out).toContain(
        script.startsWith('move')
          ? 'rcall("HINCRBY", jobIdKey, "atm", "1")'
          : 'rcall("ZADD", markerKey, "0", "0")',
      );
    }
  });

  test("cell0's own reply script passes its pop count as a string", () => {
    const lua = readFileSync(join(__dirname, '../../shared/lua/includes/inbox-replies.lua'), 'utf8');
    expect(integerArgsAsStrings(lua)).toBe(lua);
  });
});
