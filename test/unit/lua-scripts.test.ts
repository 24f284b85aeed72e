import { readdirSync } from 'node:fs';
import { commandName, LUA_DIR, luaScript, parseHeader } from '../../shared/redis/lua-scripts';

const scripts = readdirSync(LUA_DIR)
  .filter((f) => f.endsWith('.lua'))
  .map((f) => f.slice(0, -4))
  .sort();

describe('the Lua script loader', () => {
  test('reads every script of shared/lua; the key count comes from its header', () => {
    const keys = Object.fromEntries(
      scripts.map((name) => [name, luaScript(name).numberOfKeys ?? 'variadic']),
    );
    expect(keys).toEqual({
      'active-marks': 2,
      'batch-record': 3,
      'batch-transition': 1,
      'job-outcome': 3,
      'register-waiter': 4,
      'register-waiters': 2,
      'reply-finished': 'variadic',
      'reply-waiters': 'variadic',
      'semantic-candidates': 'variadic',
      'semantic-drop': 9,
      'semantic-fetch': 2,
      'semantic-index': 1,
      'semantic-lookup': 'variadic',
      'semantic-mirror': 3,
      'semantic-set': 'variadic',
      'semantic-touch': 1,
      'token-bucket': 2,
      'token-stream-leave': 4,
      'token-stream-open': 6,
      'token-write': 'variadic',
    });
  });

  test('inserts includes where a script asks for them', () => {
    const drop = luaScript('semantic-drop');
    expect(drop.lua).not.toMatch(/^-- #include/m);
    expect(drop.lua).toContain('local function unpackFrom(key, c)');
    expect(luaScript('job-outcome').lua).not.toContain('unpackFrom');
  });

  test('names the ioredis command after the file', () => {
    expect(commandName('job-outcome')).toBe('cell0JobOutcome');
    expect(commandName('semantic-set')).toBe('cell0SemanticSet');
    expect(luaScript('token-bucket').command).toBe('cell0TokenBucket');
  });

  test('refuses a script without a header naming KEYS and ARGV, or with keys out of order', () => {
    expect(() => parseHeader('x', 'return 1')).toThrow(/x: no --\[\[ … \]\] header/);
    expect(() => parseHeader('x', '--[[\n  KEYS[1] a\n]]\nreturn 1')).toThrow(/KEYS\[i\] and ARGV\[i\]/);
    expect(() => parseHeader('x', '--[[\n  KEYS[1] a\n  KEYS[3] b\n  ARGV[1] c\n]]')).toThrow(
      /KEYS\[3\] where KEYS\[2\] belongs/,
    );
    expect(() => parseHeader('x', '--[[\n  KEYS[1] a\n  KEYS[3..] b\n  ARGV[1] c\n]]')).toThrow(
      /KEYS\[3\.\.\] must follow KEYS\[1\]/,
    );
    expect(parseHeader('x', '--[[\n  KEYS[1] a\n  KEYS[2..] b\n  ARGV[1] c\n]]')).toEqual({
      numberOfKeys: undefined,
    });
  });

  test('a missing script or include is named', () => {
    expect(() => luaScript('no-such-script')).toThrow(/no-such-script.*does not exist/);
  });
});
