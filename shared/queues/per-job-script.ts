/**
 * A BullMQ script's text as a Lua function of (KEYS, ARGV) that a cell0 script calls once per job (the
 * batched adds of add-batch.ts, the take of take-jobs.ts), with the helpers its includes define made once
 * per script call instead of once per job.
 *
 * BullMQ's scripts open with a few locals read from KEYS and ARGV (`local waitKey = KEYS[1]`, `local opts =
 * cmsgpack.unpack(ARGV[3])`, `local rcall = redis.call`), then the helpers of their includes (`local
 * function …` at the left margin, addStandardJob 6.7 has 28, moveToActive 10), then the script proper.
 * Wrapped whole in a function, every call of it makes a closure per helper again, for nothing: Redis's Lua
 * (5.1) makes one per `local function` statement each time the statement runs. Here the opening locals are
 * declared once, outside the function, and assigned at the start of each call (with `nil` for a bare
 * `local x`), the helpers are defined once, after those declarations, and the function runs the rest. A
 * helper sees the same variables as before (its upvalues are the opening locals, now assigned per call,
 * which is when the wrapped text assigned them; a helper runs only from the rest), and each call starts
 * with every opening local assigned afresh, as a new call of the wrapped text would. The shape is taken
 * only when it is plain (see {@link perJobFunction}); else the whole text runs per call, as before.
 * Part of the BullMQ internals cell0 touches (see bullmq-internals.ts).
 */

/** A helper's first line at the left margin: `local function name(` or `local name = function(`. */
const HELPER_START = /^local (?:function [A-Za-z_]\w*\s*\(|[A-Za-z_]\w*\s*=\s*function\s*\()/;
/** An opening local of one name on one line: `local name` or `local name = expression`. */
const OPENING_LOCAL = /^local ([A-Za-z_]\w*)(?:\s*=\s*(\S.*?))?\s*;?\s*$/;
/** A read of the script's KEYS or ARGV. */
const KEYS_OR_ARGV = /\b(KEYS|ARGV)\b/;

/** The text's code without its comments, line for line (block comments, then the rest of a line after --). */
function codeLines(lua: string): string[] {
  return lua
    .replace(/--\[(=*)\[[\s\S]*?\]\1\]/g, (c) => c.replace(/[^\n]/g, ''))
    .replace(/--.*$/gm, '')
    .split('\n');
}

/**
 * Whether an opening local's expression stands whole on its line: its brackets balanced, no comma outside
 * them (one value), no string (a quote or long bracket could hide any of these), no function, and no
 * operator at its end (the expression would go on on the next line).
 */
function wholeExpression(expr: string): boolean {
  if (/["']|\[=*\[|\bfunction\b|\bend\b|(\.\.|\b(and|or|not)|[-+*/^%<>=~(,{[])\s*$/.test(expr)) return false;
  let depth = 0;
  for (const ch of expr) {
    if (ch === '(' || ch === '{' || ch === '[') depth++;
    else if (ch === ')' || ch === '}' || ch === ']') {
      if (--depth < 0) return false;
    } else if (ch === ',' && depth === 0) return false;
  }
  return depth === 0;
}

/** The parts of a plain BullMQ script (see {@link splitOpening}). */
export interface ScriptParts {
  /** The opening locals, in order: each name and the expression it is assigned (`nil` for none). */
  opening: { name: string; value: string }[];
  /** The helpers' lines, as in the text (comments kept). */
  helpers: string;
  /** The rest of the text, as in the text. */
  rest: string;
}

/**
 * Splits BullMQ's script text into its opening locals, its helpers and the rest, when the text is plain:
 * before the first helper, only lines at the left margin that each declare one local (`local x` or
 * `local x = e`, `e` whole on its line, see wholeExpression); then helpers, each from its first line at
 * the left margin to its `end` at the left margin, with only blank or comment lines between them, and no
 * KEYS or ARGV anywhere in them (a helper reading the wrapper's KEYS or ARGV could not be moved out of it);
 * then the rest, from the first other line at the left margin. Else undefined.
 */
export function splitOpening(lua: string): ScriptParts | undefined {
  const lines = lua.split('\n');
  const code = codeLines(lua);
  const opening: { name: string; value: string }[] = [];
  let i = 0;
  for (; i < code.length; i++) {
    const l = code[i]!;
    if (l.trim() === '') continue;
    if (HELPER_START.test(l)) break;
    const m = OPENING_LOCAL.exec(l);
    if (!m) return undefined;
    if (m[2] !== undefined && !wholeExpression(m[2])) return undefined;
    opening.push({ name: m[1]!, value: m[2] ?? 'nil' });
  }
  if (i === code.length || opening.length === 0) return undefined;
  const first = i;
  let end = first;
  let inHelper = false;
  for (; i < code.length; i++) {
    const l = code[i]!;
    if (inHelper) {
      if (KEYS_OR_ARGV.test(l)) return undefined;
      if (/^end\s*$/.test(l)) {
        inHelper = false;
        end = i + 1;
      } else if (/^\S/.test(l)) return undefined;
      continue;
    }
    if (l.trim() === '') continue;
    if (HELPER_START.test(l)) {
      if (KEYS_OR_ARGV.test(l)) return undefined;
      // A helper on one line (`local function f() … end`) is not taken: its end is not a line of its own.
      if (/\bend\s*$/.test(l)) return undefined;
      inHelper = true;
      continue;
    }
    // The rest begins at the left margin.
    if (!/^\S/.test(l)) return undefined;
    break;
  }
  if (inHelper || end === first) return undefined;
  return {
    opening,
    helpers: lines.slice(first, end).join('\n'),
    rest: lines.slice(end).join('\n'),
  };
}

/**
 * Lua defining `local <name>` as BullMQ's script text `lua` run as a function of (KEYS, ARGV), its helpers
 * made once (see the top of this file) when {@link splitOpening} takes the text, else the whole text as the
 * function's body. The definition is a block of its own: the names it declares do not reach the script
 * around it.
 */
export function perJobFunction(name: string, lua: string): string {
  const parts = splitOpening(lua);
  if (!parts) return `local function ${name}(KEYS, ARGV)\n${lua}\nend`;
  const names = parts.opening.map((o) => o.name);
  return `local ${name}
do
local ${[...new Set(names)].join(', ')}
${parts.helpers}
${name} = function(KEYS, ARGV)
${parts.opening.map((o) => `${o.name} = ${o.value}`).join('\n')}
${parts.rest}
end
end`;
}
