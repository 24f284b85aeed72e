/**
 * Integer literals passed to redis.call written as the strings Redis would make of them. Redis 7.0 turns
 * every Lua number given to redis.call into its argument with snprintf("%.17g"): ~2,400 instructions per
 * number (callgrind, Redis 7.0.15), as much as a cheap command. BullMQ's scripts pass literals such as
 * `rcall("HINCRBY", key, "atm", 1)`, `rcall("LREM", key, -1, id)` or `rcall("ZADD", marker, 0, "0")`: ~9 per
 * finish that fetches the next job. Written as "1", "-1", "0", the command gets the same bytes (an integer
 * below 10^15 prints as its digits under %.17g) without the conversion.
 */

/** A call of redis.call or redis.pcall, or of BullMQ's alias of redis.call (`local rcall = redis.call`). */
const CALL = /\b(?:redis\.call|redis\.pcall|rcall)\s*\(/y;
/** An argument that is an integer literal Redis prints as written: no leading zero, no exponent. */
const INTEGER = /^-?(?:0|[1-9]\d{0,14})$/;

/**
 * `lua` with every argument of a redis.call / redis.pcall call (or of `rcall`, when the text defines it as
 * `local rcall = redis.call`) that is an integer literal written as a string literal. Only arguments of
 * those calls themselves are changed (not of calls nested in them), strings and comments are skipped;
 * anything the scan does not follow (an unbalanced parenthesis) leaves the text unchanged.
 */
export function integerArgsAsStrings(lua: string): string {
  const rcallIsRedisCall = /^local rcall = redis\.call\s*$/m.test(lua);
  /** Each literal found: where it starts and ends. */
  const literals: [number, number][] = [];
  let i = 0;
  const n = lua.length;
  while (i < n) {
    const skip = skipStringOrComment(lua, i);
    if (skip < 0) return lua;
    if (skip > i) {
      i = skip;
      continue;
    }
    // A call starts only where an identifier cannot continue from the left.
    if (i === 0 || !/[\w.]/.test(lua[i - 1]!)) {
      CALL.lastIndex = i;
      const m = CALL.exec(lua);
      if (m && (rcallIsRedisCall || !m[0].startsWith('rcall'))) {
        const open = i + m[0].length;
        const args = splitArgs(lua, open);
        if (!args) return lua;
        for (const [from, to] of args.spans) {
          const text = lua.slice(from, to);
          const lead = text.length - text.trimStart().length;
          const core = text.trim();
          if (INTEGER.test(core)) literals.push([from + lead, from + lead + core.length]);
        }
        // Nested calls inside the arguments are scanned as the loop goes on.
        i = open;
        continue;
      }
    }
    i++;
  }
  // In the text's order (a call's own arguments are found before those of the calls nested in them).
  literals.sort((a, b) => a[0] - b[0]);
  let out = '';
  let copied = 0;
  for (const [from, to] of literals) {
    out += `${lua.slice(copied, from)}"${lua.slice(from, to)}"`;
    copied = to;
  }
  return out + lua.slice(copied);
}

/**
 * Where the string literal or comment at `i` ends (i itself when there is none there), or -1 when it does
 * not end.
 */
function skipStringOrComment(s: string, i: number): number {
  const c = s[i];
  if (c === '"' || c === "'") {
    for (let j = i + 1; j < s.length; j++) {
      if (s[j] === '\\') j++;
      else if (s[j] === c) return j + 1;
      else if (s[j] === '\n') return -1;
    }
    return -1;
  }
  const long = /\[(=*)\[/y;
  if (c === '[') {
    long.lastIndex = i;
    const m = long.exec(s);
    if (m) {
      const end = s.indexOf(`]${m[1]}]`, i + m[0].length);
      return end < 0 ? -1 : end + m[1]!.length + 2;
    }
  }
  if (c === '-' && s[i + 1] === '-') {
    long.lastIndex = i + 2;
    const m = long.exec(s);
    if (m) {
      const end = s.indexOf(`]${m[1]}]`, i + 2 + m[0].length);
      return end < 0 ? -1 : end + m[1]!.length + 2;
    }
    const eol = s.indexOf('\n', i);
    return eol < 0 ? s.length : eol;
  }
  return i;
}

/**
 * The top-level arguments of the call whose argument list starts at `open` (just after its parenthesis), as
 * [from, to) spans, or undefined when its closing parenthesis is not found.
 */
function splitArgs(s: string, open: number): { spans: [number, number][] } | undefined {
  const spans: [number, number][] = [];
  let depth = 0;
  let start = open;
  let i = open;
  while (i < s.length) {
    const skip = skipStringOrComment(s, i);
    if (skip < 0) return undefined;
    if (skip > i) {
      i = skip;
      continue;
    }
    const c = s[i];
    if (c === '(' || c === '{' || c === '[') depth++;
    else if (c === ')' || c === '}' || c === ']') {
      if (depth === 0) {
        if (c !== ')') return undefined;
        spans.push([start, i]);
        return { spans };
      }
      depth--;
    } else if (c === ',' && depth === 0) {
      spans.push([start, i]);
      start = i + 1;
    }
    i++;
  }
  return undefined;
}

/**
 * `cell0Text(x)`: a Lua number that is an integer below 10^15 in magnitude as the string Redis would make of it
 * for redis.call (its digits, as snprintf("%.17g") prints it), anything else as it is. `string.format('%d')`
 * costs ~2,000 instructions against ~3,700 for Redis's conversion (callgrind, Redis 7.0.15), and a 0 none.
 * For numbers that a script computes or unpacks, where {@link integerArgsAsStrings} cannot see a literal.
 */
export const NUMBER_TEXT_LUA = `local function cell0Text(x)
  if x == 0 then return "0" end
  if type(x) == "number" and x == math.floor(x) and x > -1e15 and x < 1e15 then return string.format("%d", x) end
  return x
end`;
