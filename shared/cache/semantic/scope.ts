import { hash } from 'node:crypto';
import { canonicalJson } from '../../queues/job-id.js';
import { NORMALIZE_VERSION } from './text.js';

/** What partitions the cache: never shared across any field. The prompt is NOT part of it. */
export interface SemanticScope {
  model: string;
  /** Output-changing parameters (temperature, top_p, top_k, repeat_penalty, max_tokens, seed, stop, num_ctx…). */
  params?: Record<string, unknown>;
  /** System prompt, and for chats the earlier messages (anything but the last user message). */
  system?: string;
  context?: unknown;
  /** Tenant: the caller's tenant id (an HMAC of its API key), or an explicit namespace. */
  tenant?: string;
}

/** Bumped when the scope's canonical form changes, so old and new scopes never share a hash. */
const SCOPE_VERSION = 'cell0/semantic/scope/v1';

/**
 * The 128-bit hash (32 hex) of a scope in a vector space. Undefined members, an empty `params` object and
 * empty `system`/`tenant` strings count as absent; everything else counts, key order aside (canonical
 * JSON), so temperature 0.7 and 0.8 are two scopes. The embedder's name and dims are part of it: vectors
 * of two embedders are never compared.
 */
export function scopeHash(scope: SemanticScope, space: string): string {
  return hash('sha256', scopeCanonical(scope, space)).slice(0, 32);
}

/** What scopeHash hashes: the scope's canonical JSON (checked as scopeHash says). */
function scopeCanonical(scope: SemanticScope, space: string): string {
  if (scope === null || typeof scope !== 'object')
    throw new TypeError('SemanticCache: scope must be an object with a "model"');
  if (typeof scope.model !== 'string' || scope.model.length === 0)
    throw new TypeError('SemanticCache: scope.model must be a non-empty string');
  let params: Record<string, unknown> | undefined;
  if (scope.params !== undefined)
    for (const [k, v] of Object.entries(scope.params))
      // a null prototype: a "__proto__" key stays a key, as Object.fromEntries made it
      if (v !== undefined) (params ??= Object.create(null) as Record<string, unknown>)[k] = v;
  // Keys in order and no undefined member: canonicalJson's fast path (one JSON.stringify) applies when the
  // params' keys are in order too. The text is the same either way, and so is the hash.
  const doc: Record<string, unknown> = {};
  if (scope.context !== undefined && scope.context !== null) doc.context = scope.context;
  doc.model = scope.model;
  if (params) doc.params = params;
  doc.space = space;
  if (scope.system) doc.system = scope.system;
  if (scope.tenant) doc.tenant = scope.tenant;
  doc.v = SCOPE_VERSION;
  return canonicalJson(doc);
}

/** Scopes a cache keeps the keys of (a cache sees few: model × parameters × tenant); cleared when full. */
const SCOPES_KEPT = 512;

/**
 * The keys of `scope`, kept in `kept` by its canonical form: a request's lookup and its store (and every
 * request of the same scope) hash it once. ScopeKeys never change, so they are shared.
 */
export function scopeKeysOf(
  kept: Map<string, ScopeKeys>,
  base: string,
  scope: SemanticScope,
  space: string,
): ScopeKeys {
  const canonical = scopeCanonical(scope, space);
  let keys = kept.get(canonical);
  if (!keys) {
    if (kept.size >= SCOPES_KEPT) kept.clear();
    keys = new ScopeKeys(base, hash('sha256', canonical).slice(0, 32));
    kept.set(canonical, keys);
  }
  return keys;
}

/**
 * The id of a normalised prompt inside its scope: 52 bits of SHA-256 as a decimal integer, so Redis keeps
 * small band sets as compact intsets and JavaScript numbers hold it exactly. A collision (p ≈ n²/2^53,
 * 1e-6 at 100k entries in one scope) only makes two prompts share a slot: lookups compare the stored
 * prompt's normal form before answering EXACT.
 */
export function promptId(normalized: string): string {
  return String(parseInt(hash('sha256', NORMALIZE_VERSION + '\0' + normalized).slice(0, 13), 16));
}

/** A short hash for index keys (model, tenant). */
export function shortHash(s: string): string {
  return hash('sha256', s).slice(0, 16);
}

/**
 * Key names of one scope. Every key carries the scope's `{hash}` tag, so all of them live in one cluster
 * slot (the Lua scripts touch several at once) and a lookup can never reach another scope's entries.
 * The cache prefix's own braces are dropped ("{cell0}" → "cell0:sem:{…}"): a key's first {…} decides its
 * slot, and that must be the scope's.
 */
export class ScopeKeys {
  readonly tag: string;
  readonly entryPrefix: string;
  readonly bandPrefix: string;
  readonly lru: string;
  readonly exp: string;
  readonly meta: string;
  readonly vec: string;
  readonly free: string;
  readonly next: string;
  /** Generations of band buckets (generation -> when its buckets expire). */
  readonly gens: string;
  /** Slots freed while their entry may still be live, held before reuse (slot -> reusable from, ms). */
  readonly held: string;
  /** The band stream: the changes to the band buckets, read by the processes' mirrors (semantic-mirror.ts). */
  readonly stream: string;

  constructor(
    base: string,
    readonly hash: string,
  ) {
    this.tag = `${base}:{${hash}}`;
    this.entryPrefix = `${this.tag}:e:`;
    this.bandPrefix = `${this.tag}:b:`;
    this.lru = `${this.tag}:lru`;
    this.exp = `${this.tag}:exp`;
    this.meta = `${this.tag}:meta`;
    this.vec = `${this.tag}:vec`;
    this.free = `${this.tag}:free`;
    this.next = `${this.tag}:next`;
    this.gens = `${this.tag}:gens`;
    this.held = `${this.tag}:held`;
    this.stream = `${this.tag}:bx`;
  }

  /** The per-scope containers, in the order the set and drop scripts take them. */
  containers(): [string, string, string, string, string, string, string, string, string] {
    return [this.lru, this.exp, this.meta, this.vec, this.free, this.next, this.gens, this.held, this.stream];
  }

  entry(id: string): string {
    return this.entryPrefix + id;
  }

  /**
   * Band bucket key of a generation (see shared/lua/semantic-set.lua); the value in base 36 (what the
   * scripts rebuild from the meta record).
   */
  band(generation: string, index: number, value: number): string {
    return `${this.bandPrefix}${generation}:${bandSuffix(index, value)}`;
  }
}

/** A band bucket key without its prefix and generation: band index and value (base 36). */
export function bandSuffix(index: number, value: number): string {
  return `${index}:${value.toString(36)}`;
}

/**
 * A prompt's band fields as the lookup scripts take them: every bandSuffix, comma-separated, in band order.
 * Written as bytes into a buffer kept for it and read back as one string: concatenating 20 bandSuffix
 * strings made ~40 strings and cons-strings (2.5 KB per lookup, the young generation's to collect) for a
 * result of ~120 characters. No intermediate array either: when the lookup's optimised code inlined
 * `bands.map(…).join(',')`, the array map() made had another hidden class than the one join() had seen,
 * and V8 threw the optimised lookup away ("wrong map") and compiled it again in steady state.
 */
export function bandFields(bands: readonly number[]): string {
  // an index (up to 16 digits), ':', a base-36 value (up to 11 characters), ','
  if (bands.length * 32 > FIELDS.length) return bandFieldsJoined(bands);
  let n = 0;
  for (let i = 0; i < bands.length; i++) {
    const v = bands[i]!;
    if (!(Number.isSafeInteger(v) && v >= 0)) return bandFieldsJoined(bands);
    if (i > 0) FIELDS[n++] = COMMA;
    n = writeDigits(i, 10, n);
    FIELDS[n++] = COLON;
    n = writeDigits(v, 36, n);
  }
  return FIELDS.toString('latin1', 0, n);
}

/** bandFields by concatenation: for band values that are not non-negative integers, or very many bands. */
function bandFieldsJoined(bands: readonly number[]): string {
  let out = '';
  for (let i = 0; i < bands.length; i++) out += (i === 0 ? '' : ',') + bandSuffix(i, bands[i]!);
  return out;
}

/** Writes `x` (a non-negative safe integer) in `radix` at FIELDS[at], as toString(radix) does; returns the end. */
function writeDigits(x: number, radix: number, at: number): number {
  let end = at;
  let y = x;
  do {
    end++;
    y = Math.floor(y / radix);
  } while (y > 0);
  let p = end;
  y = x;
  do {
    FIELDS[--p] = DIGITS.charCodeAt(y % radix);
    y = Math.floor(y / radix);
  } while (y > 0);
  return end;
}

const FIELDS = Buffer.allocUnsafeSlow(1024);
const DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz';
const COMMA = 0x2c;
const COLON = 0x3a;

/** The base of every key of a cache with `prefix` ("{cell0}" → "cell0:sem"). */
export function keyBase(prefix: string): string {
  return `${prefix.replace(/[{}]/g, '')}:sem`;
}
