/**
 * The one loader of cell0's Redis Lua scripts.
 *
 * Convention:
 * - Every script is `shared/lua/<name>.lua` (kebab-case); shared Lua functions are
 *   `shared/lua/includes/<name>.lua`, inserted where a script has the line `-- #include <name>` (Redis
 *   scripts cannot load one another).
 * - A script opens with a `--[[ … ]]` header that lists its `KEYS[i]` and `ARGV[i]`, one per line. The
 *   header is the contract: the number of keys given to `defineCommand` is read from it, so it cannot drift
 *   from the script. `KEYS[n..]` declares a variable number of keys: the caller passes the count first.
 * - The ioredis command is `cell0` + the name in PascalCase (`job-outcome` → `cell0JobOutcome`), with the
 *   `…Buffer` variant ioredis adds.
 *
 * The folder sits next to the compiled code too: the build copies `shared/lua` to `dist/shared/lua`, so the
 * same relative path works from the TypeScript sources and from dist/, and the package and the image ship
 * the scripts with dist/ without a list of their own.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RedisConnection } from './cluster.js';

/** Where the scripts are, relative to this module (shared/redis → shared/lua; same under dist/). */
export const LUA_DIR = join(__dirname, '..', 'lua');

/** A loaded script: its source with includes inserted, and what its header declares. */
export interface LuaScript {
  /** The file name without `.lua`. */
  readonly name: string;
  /** The ioredis command it is defined as. */
  readonly command: string;
  /** Keys the command takes; undefined when the header declares a variable number (`KEYS[n..]`). */
  readonly numberOfKeys: number | undefined;
  readonly lua: string;
}

const loaded = new Map<string, LuaScript>();

/** `job-outcome` → `cell0JobOutcome`. */
export function commandName(name: string): string {
  return 'cell0' + name.replace(/(^|-)([a-z0-9])/g, (_m, _dash: string, c: string) => c.toUpperCase());
}

/** What a script's header declares: its key count (undefined = variable) and whether it names ARGV. */
export function parseHeader(name: string, lua: string): { numberOfKeys: number | undefined } {
  const header = /^\s*--\[\[([\s\S]*?)\]\]/.exec(lua)?.[1];
  if (header === undefined) throw new Error(`Lua script ${name}: no --[[ … ]] header naming KEYS and ARGV`);
  const keys = [...header.matchAll(/^\s*KEYS\[(\d+)(\.\.)?\]/gm)];
  const argv = /^\s*ARGV\[\d+\]/m.test(header);
  if (keys.length === 0 || !argv)
    throw new Error(`Lua script ${name}: its header must list its KEYS[i] and ARGV[i], one per line`);
  const fixed = keys.filter((k) => k[2] === undefined).map((k) => Number(k[1]));
  fixed.forEach((n, i) => {
    if (n !== i + 1)
      throw new Error(`Lua script ${name}: header lists KEYS[${n}] where KEYS[${i + 1}] belongs`);
  });
  const variadic = keys.find((k) => k[2] !== undefined);
  if (variadic && Number(variadic[1]) !== fixed.length + 1)
    throw new Error(`Lua script ${name}: KEYS[${variadic[1]}..] must follow KEYS[${fixed.length}]`);
  return { numberOfKeys: variadic ? undefined : fixed.length };
}

/** The text of the shared Lua functions `shared/lua/includes/<name>.lua`, for a script built in code. */
export function luaInclude(name: string): string {
  const path = join(LUA_DIR, 'includes', `${name}.lua`);
  if (!existsSync(path)) throw new Error(`Lua include ${name}: ${path} does not exist`);
  return readFileSync(path, 'utf8');
}

/** Reads (once) the script `name` with its includes inserted. Throws naming the file when it is missing. */
export function luaScript(name: string): LuaScript {
  const cached = loaded.get(name);
  if (cached) return cached;
  const file = join(LUA_DIR, `${name}.lua`);
  if (!existsSync(file)) throw new Error(`Lua script ${name}: ${file} does not exist`);
  const lua = readFileSync(file, 'utf8').replace(/^-- #include ([a-z0-9-]+)$/gm, (_line, inc: string) => {
    const path = join(LUA_DIR, 'includes', `${inc}.lua`);
    if (!existsSync(path)) throw new Error(`Lua script ${name}: include ${inc} (${path}) does not exist`);
    return readFileSync(path, 'utf8');
  });
  const script: LuaScript = { name, command: commandName(name), ...parseHeader(name, lua), lua };
  loaded.set(name, script);
  return script;
}

/**
 * Defines the scripts on a connection as ioredis commands (idempotent per connection; ioredis sends
 * EVALSHA, and the source once when Redis does not know it yet) and returns the connection typed with them.
 */
export function defineScripts<C>(redis: RedisConnection, ...names: string[]): RedisConnection & C {
  const r = redis as unknown as Record<string, unknown>;
  for (const name of names) {
    const s = luaScript(name);
    if (typeof r[s.command] === 'function') continue;
    redis.defineCommand(
      s.command,
      s.numberOfKeys === undefined ? { lua: s.lua } : { numberOfKeys: s.numberOfKeys, lua: s.lua },
    );
  }
  return redis as RedisConnection & C;
}
