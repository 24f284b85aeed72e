/**
 * BullMQ 6.7's per-job encoding and decoding on a worker's hot path, done directly: what its backend
 * (redis-queue-backend.ts) makes of a fetched job's reply (`raw2NextJobData`: the job hash as a flat array, to
 * an object, to its JSON form with the options decoded) and the arguments of a completion's `moveToFinished`
 * call (`moveToCompletedArgs`: the keys, then the arguments with an options map packed by msgpackr), the same
 * values and bytes without the intermediate objects or BullMQ's msgpack encoding per job.
 * test/integration/lean-job-codec.test.ts compares both with BullMQ's own over a wide range of jobs and options;
 * anything not covered here goes BullMQ's own way. Part of the BullMQ internals cell0 touches (see
 * bullmq-internals.ts).
 */

/**
 * BullMQ 6.7's `optsDecodeMap` (src/utils): the stored options' short names. `tm` and `omc` are decoded into
 * `telemetry` on their own.
 */
const OPTS_DECODE: Readonly<Record<string, string>> = {
  de: 'deduplication',
  fpof: 'failParentOnFailure',
  cpof: 'continueParentOnFailure',
  idof: 'ignoreDependencyOnFailure',
  kl: 'keepLogs',
  rdof: 'removeDependencyOnFailure',
};

/** BullMQ's `optsFromJSON`: the stored options (JSON text, short names) in their public form, same key order. */
function optsFromJSON(rawOpts: string | undefined): Record<string, unknown> {
  const opts = JSON.parse(rawOpts || '{}') as Record<string, unknown>;
  const options: Record<string, unknown> = {};
  for (const name in opts) {
    if (!Object.prototype.hasOwnProperty.call(opts, name)) continue;
    const value = opts[name];
    // Looked up as BullMQ does (an inherited member counts too), so that any name decodes as there.
    const decoded = OPTS_DECODE[name];
    if (decoded) options[decoded] = value;
    else if (name === 'tm')
      options.telemetry = { ...(options.telemetry as object | undefined), metadata: value };
    else if (name === 'omc')
      options.telemetry = { ...(options.telemetry as object | undefined), omitContext: value };
    else options[name] = value;
  }
  return options;
}

/**
 * BullMQ 6.7's `raw2NextJobData(raw)`: `[jobJson, jobId, rateLimitDelay, delayUntil]` (jobJson null when the
 * reply has no job hash), `[]` for no reply. The job hash (a flat field/value array, as Redis gives HGETALL)
 * is read in one pass into the JSON form BullMQ's `rawToJobJson(array2obj(...))` makes, with the same keys in
 * the same order and the same values.
 */
export function nextJobData(raw: unknown[] | null | undefined): unknown[] {
  if (!raw) return [];
  const result: unknown[] = [null, raw[1], raw[2], raw[3]];
  const fields = raw[0] as unknown[] | null | undefined;
  if (fields) result[0] = jobJson(fields);
  return result;
}

type Field = string | undefined;

/** BullMQ's rawToJobJson(array2obj(fields)). */
function jobJson(fields: unknown[]): Record<string, unknown> {
  let id: Field, name: Field, data: Field, opts: Field, progress: Field, delay: Field, priority: Field;
  let timestamp: Field, ats: Field, attemptsMade: Field, atm: Field, stc: Field, finishedOn: Field;
  let processedOn: Field, rjk: Field, deid: Field, failedReason: Field, defa: Field, stacktrace: Field;
  let returnvalue: Field, parentKey: Field, parent: Field, pb: Field;
  for (let i = 0; i < fields.length; i += 2) {
    const v = fields[i + 1] as Field;
    // array2obj's object keys are strings: a field name that is not one is compared as BullMQ's would be.
    switch (String(fields[i])) {
      case 'id': id = v; break; // prettier-ignore
      case 'name': name = v; break; // prettier-ignore
      case 'data': data = v; break; // prettier-ignore
      case 'opts': opts = v; break; // prettier-ignore
      case 'progress': progress = v; break; // prettier-ignore
      case 'delay': delay = v; break; // prettier-ignore
      case 'priority': priority = v; break; // prettier-ignore
      case 'timestamp': timestamp = v; break; // prettier-ignore
      case 'ats': ats = v; break; // prettier-ignore
      case 'attemptsMade': attemptsMade = v; break; // prettier-ignore
      case 'atm': atm = v; break; // prettier-ignore
      case 'stc': stc = v; break; // prettier-ignore
      case 'finishedOn': finishedOn = v; break; // prettier-ignore
      case 'processedOn': processedOn = v; break; // prettier-ignore
      case 'rjk': rjk = v; break; // prettier-ignore
      case 'deid': deid = v; break; // prettier-ignore
      case 'failedReason': failedReason = v; break; // prettier-ignore
      case 'defa': defa = v; break; // prettier-ignore
      case 'stacktrace': stacktrace = v; break; // prettier-ignore
      case 'returnvalue': returnvalue = v; break; // prettier-ignore
      case 'parentKey': parentKey = v; break; // prettier-ignore
      case 'parent': parent = v; break; // prettier-ignore
      case 'pb': pb = v; break; // prettier-ignore
    }
  }
  return {
    id,
    name,
    data: data || '{}',
    opts: optsFromJSON(opts),
    progress: JSON.parse(progress || '0') as unknown,
    delay: parseInt(delay as string),
    priority: parseInt(priority as string),
    timestamp: parseInt(timestamp as string),
    attemptsStarted: parseInt(ats || '0'),
    attemptsMade: parseInt(attemptsMade || atm || '0'),
    stalledCounter: parseInt(stc || '0'),
    finishedOn: finishedOn ? parseInt(finishedOn) : undefined,
    processedOn: processedOn ? parseInt(processedOn) : undefined,
    repeatJobKey: rjk,
    debounceId: deid,
    deduplicationId: deid,
    failedReason,
    deferredFailure: defa,
    stacktrace,
    returnvalue,
    parentKey,
    parent: parent ? (JSON.parse(parent) as unknown) : undefined,
    processedBy: pb,
  };
}

/** A worker's completion arguments (see {@link completedArgsOf}), with how many were built which way. */
export type CompletedArgs = ((
  job: FinishingJob,
  value: string,
  removeOnComplete: unknown,
  token: string,
  fetchNext: boolean,
) => unknown[]) & { readonly counts: { direct: number; own: number } };

/** The members of BullMQ 6.7's Redis backend {@link completedArgsOf} reads, as its moveToFinishedArgs does. */
export interface FinishingBackend {
  moveToFinishedKeys: unknown[];
  queue: {
    keys: Record<string, string>;
    opts: {
      name?: unknown;
      limiter?: unknown;
      lockDuration?: unknown;
      removeOnComplete?: unknown;
      metrics?: { maxDataPoints?: unknown };
    };
    closing?: unknown;
    toKey(type: string): string;
  };
}

/** The job members moveToFinishedArgs reads. */
interface FinishingJob {
  id?: string;
  opts: {
    attempts?: unknown;
    failParentOnFailure?: unknown;
    continueParentOnFailure?: unknown;
    ignoreDependencyOnFailure?: unknown;
    removeDependencyOnFailure?: unknown;
  };
}

/** Most packed option tails kept per worker. */
const MAX_TAILS = 64;

/** Where moveToFinishedArgs puts the packed options: after the 14 keys and 7 arguments. */
const PACKED_AT = 21;

/** The key `token` as msgpackr writes it (a fixstr), and the empty string after it. */
const TOKEN_KEY = Buffer.from([0xa5, ...Buffer.from('token'), 0xa0]);

/**
 * The bytes of a packed options map (whose first entry is the empty token) before the token's value (the
 * map's header, map16 or fixmap as msgpackr chose, and the key), and those after it; undefined when it is
 * not laid out so.
 */
function splitAtToken(packed: Buffer): { head: Buffer; tail: Buffer } | undefined {
  const header = packed[0] === 0xde ? 3 : packed[0] !== undefined && (packed[0] & 0xf0) === 0x80 ? 1 : 0;
  if (header === 0 || !packed.subarray(header, header + TOKEN_KEY.length).equals(TOKEN_KEY)) return undefined;
  const at = header + TOKEN_KEY.length - 1;
  return { head: Buffer.from(packed.subarray(0, at)), tail: Buffer.from(packed.subarray(at + 1)) };
}

/**
 * BullMQ 6.7's `backend.moveToCompletedArgs(job, value, removeOnComplete, token, fetchNext)` for `backend`,
 * built directly: the same keys (the backend's shared key array updated as BullMQ updates it), the same
 * arguments and the same packed options bytes. The packed map's entries after the token depend only on the
 * worker's options and on the job's `attempts`, failure flags and `removeOnComplete` (when a number, a
 * boolean or absent): they are taken from BullMQ's own call (with an empty token) once per such combination
 * and kept; the token (ASCII, under 256 bytes) is written in front of them as msgpackr writes a string. Anything else (an object
 * `removeOnComplete`, another token) is BullMQ's own call. Returns undefined when `backend` is not as
 * expected (then call BullMQ's own).
 */
export function completedArgsOf(
  backend: FinishingBackend & {
    moveToCompletedArgs(
      job: unknown,
      value: string,
      removeOnComplete: unknown,
      token: string,
      fetchNext: boolean,
    ): unknown[];
  },
): CompletedArgs | undefined {
  const keys = backend.moveToFinishedKeys;
  const queue = backend.queue;
  if (!Array.isArray(keys) || keys.length !== 14 || !queue || typeof queue.toKey !== 'function')
    return undefined;
  const counts = { direct: 0, own: 0 };
  const bullmqs = backend.moveToCompletedArgs.bind(backend);
  const own: typeof bullmqs = (...a) => (counts.own++, bullmqs(...a));
  /** The worker options the packed tails were made with (compared by identity on every call). */
  let seen: Record<string, unknown> = { name: {} };
  let tails = new Map<string, { head: Buffer; tail: Buffer }>();
  const metricsKey = queue.toKey('metrics:completed');
  const build = (
    job: FinishingJob,
    value: string,
    removeOnComplete: unknown,
    token: string,
    fetchNext: boolean,
  ): unknown[] => {
    const rc = removeOnComplete;
    const o = job.opts;
    const kind = typeof rc;
    if (
      !(rc === undefined || kind === 'number' || kind === 'boolean') ||
      token.length >= 0x100 ||
      Buffer.byteLength(token) !== token.length
    )
      return own(job, value, removeOnComplete, token, fetchNext);
    const opts = queue.opts;
    const metrics = opts.metrics;
    if (
      opts.name !== seen.name ||
      opts.limiter !== seen.limiter ||
      opts.lockDuration !== seen.lockDuration ||
      opts.removeOnComplete !== seen.removeOnComplete ||
      metrics !== seen.metrics ||
      metrics?.maxDataPoints !== seen.maxDataPoints
    ) {
      seen = {
        name: opts.name,
        limiter: opts.limiter,
        lockDuration: opts.lockDuration,
        removeOnComplete: opts.removeOnComplete,
        metrics,
        maxDataPoints: metrics?.maxDataPoints,
      };
      tails = new Map();
    }
    const flags =
      (o.failParentOnFailure ? 1 : 0) |
      (o.continueParentOnFailure ? 2 : 0) |
      (o.ignoreDependencyOnFailure ? 4 : 0) |
      (o.removeDependencyOnFailure ? 8 : 0);
    const attempts = o.attempts;
    if (!(attempts === undefined || typeof attempts === 'number'))
      return own(job, value, removeOnComplete, token, fetchNext);
    const tailKey = `${kind}:${String(rc)}:${String(attempts)}:${flags}`;
    let parts = tails.get(tailKey);
    if (parts === undefined) {
      // BullMQ's own arguments for this job with an empty token: their packed options, split at the token.
      const packed = bullmqs(job, value, removeOnComplete, '', fetchNext)[PACKED_AT];
      if (!Buffer.isBuffer(packed)) return own(job, value, removeOnComplete, token, fetchNext);
      parts = splitAtToken(packed);
      if (parts === undefined) return own(job, value, removeOnComplete, token, fetchNext);
      // A bound on what is kept (a removeOnComplete count per job would make a tail per job).
      if (tails.size >= MAX_TAILS) tails.clear();
      tails.set(tailKey, parts);
    }
    const { head: start, tail } = parts;
    const n = token.length;
    const head = n < 0x20 ? 1 : 2;
    const out = Buffer.allocUnsafe(start.length + head + n + tail.length);
    let at = start.copy(out, 0);
    if (head === 1) out[at++] = 0xa0 | n;
    else {
      out[at++] = 0xd9;
      out[at++] = n;
    }
    at += out.write(token, at, 'latin1');
    tail.copy(out, at);
    const id = job.id;
    keys[10] = queue.keys.completed;
    keys[11] = queue.toKey(id ?? '');
    keys[12] = metricsKey;
    keys[13] = queue.keys.marker;
    const args = keys.slice();
    args.push(
      id,
      Date.now(),
      'returnvalue',
      typeof value === 'undefined' ? 'null' : value,
      'completed',
      !fetchNext || queue.closing ? 0 : 1,
      queue.keys[''],
      out,
      undefined,
    );
    counts.direct++;
    return args;
  };
  return Object.assign(build, { counts });
}

/**
 * The options a standard add built directly may carry besides the job id and the adder token (their values
 * are taken from BullMQ's own call once per options object): those that change nothing in how BullMQ adds
 * a job. Any other (a delay, a priority, a parent, deduplication, a size limit, telemetry, a timestamp…)
 * sends the add BullMQ's own way.
 */
const LEAN_ADD_OPTIONS: ReadonlySet<string> = new Set([
  'attempts',
  'backoff',
  'removeOnComplete',
  'removeOnFail',
  'keepLogs',
  'stackTraceLimit',
  'lifo',
]);

/** BullMQ 6.7's addStandardJob: 9 keys, then the packed arguments, the data and the packed options. */
const ADD_KEYS = 9;

/** The members of BullMQ 6.7's Job constructor and `addJob(client)` {@link standardAddsOf} calls. */
export type JobClass = new (
  queue: never,
  name: string,
  data: unknown,
  opts: Record<string, unknown>,
  id: string,
) => { addJob(client: unknown): Promise<unknown> };

/** What a standard add of BullMQ 6.7 sends for jobs of one name and one options object, split for reuse. */
interface AddTemplate {
  /** The script command BullMQ calls (`addStandardJob:<version>`). */
  command: string;
  /** The add's 9 keys. */
  keys: unknown[];
  /** The packed arguments before the job id (array header, the queue's key prefix). */
  argsHead: Buffer;
  /** The packed job name, after the job id. */
  argsName: Buffer;
  /** The packed options up to the job id's value (map header, the entries before it, its key). */
  optsHead: Buffer;
  /** The adder token's key, packed, between the job id and the token. */
  optsMid: Buffer;
  /** The packed options after the token. */
  optsTail: Buffer;
}

/** A msgpack string header's length and the string's start at `at` of `b` (str8/str16/fixstr), if one is there. */
function strAt(b: Buffer, at: number): { start: number; end: number } | undefined {
  const h = b[at];
  if (h === undefined) return undefined;
  let start: number, n: number;
  if ((h & 0xe0) === 0xa0) {
    start = at + 1;
    n = h & 0x1f;
  } else if (h === 0xd9 && at + 1 < b.length) {
    start = at + 2;
    n = b[at + 1]!;
  } else if (h === 0xda && at + 2 < b.length) {
    start = at + 3;
    n = b.readUInt16BE(at + 1);
  } else return undefined;
  return start + n <= b.length ? { start, end: start + n } : undefined;
}

/** msgpackr's bytes of an ASCII string shorter than 65,536 characters: str header, then the characters. */
function writeStr(out: Buffer, at: number, s: string): number {
  const n = s.length;
  if (n < 0x20) out[at++] = 0xa0 | n;
  else if (n < 0x100) {
    out[at++] = 0xd9;
    out[at++] = n;
  } else {
    out[at++] = 0xda;
    out[at++] = n >> 8;
    out[at++] = n & 0xff;
  }
  return at + out.write(s, at, 'latin1');
}

/** Whether `s` is ASCII and short enough for {@link writeStr}. */
function plainStr(s: string): boolean {
  if (s.length >= 0x10000) return false;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** The length of {@link writeStr}'s bytes for `s`. */
function strBytes(s: string): number {
  const n = s.length;
  return (n < 0x20 ? 1 : n < 0x100 ? 2 : 3) + n;
}

/**
 * BullMQ's own add of a job named `name` with the options `{ ...defaults, jobId: '', [adderKey]: '' }`, its
 * arguments captured (no command is sent: BullMQ calls the client given to `addJob`), split where the job
 * id, the token and the timestamp go. Undefined when they are not laid out as expected.
 */
function addTemplate(
  queue: unknown,
  JobOf: JobClass,
  name: string,
  defaults: object,
  adderKey: string,
): AddTemplate | undefined {
  for (const k of Object.keys(defaults)) if (!LEAN_ADD_OPTIONS.has(k)) return undefined;
  if (!plainStr(adderKey) || !plainStr(name)) return undefined;
  let command: unknown;
  let args: unknown[] | undefined;
  const capture = {
    runCommand(c: unknown, a: unknown[]): Promise<unknown> {
      command = c;
      args = a;
      return Promise.resolve('');
    },
  };
  try {
    const job = new JobOf(queue as never, name, {}, { ...defaults, jobId: '', [adderKey]: '' }, '');
    void job.addJob(capture).catch(() => undefined);
  } catch {
    return undefined;
  }
  if (typeof command !== 'string' || !command.startsWith('addStandardJob:')) return undefined;
  if (!args || args.length !== ADD_KEYS + 3 || args[ADD_KEYS + 1] !== '{}') return undefined;
  const packedArgs = args[ADD_KEYS];
  const packedOpts = args[ADD_KEYS + 2];
  if (!Buffer.isBuffer(packedArgs) || !Buffer.isBuffer(packedOpts)) return undefined;
  // The packed arguments: [prefix, jobId '', name, timestamp (float64), then 6 nils].
  if (packedArgs[0] !== 0x9a) return undefined;
  const prefix = strAt(packedArgs, 1);
  if (!prefix || packedArgs[prefix.end] !== 0xa0) return undefined;
  const nameAt = strAt(packedArgs, prefix.end + 1);
  if (!nameAt || packedArgs.toString('latin1', nameAt.start, nameAt.end) !== name) return undefined;
  const rest = packedArgs.subarray(nameAt.end);
  if (rest.length !== 9 + 6 || rest[0] !== 0xcb || !rest.subarray(9).equals(Buffer.alloc(6, 0xc0)))
    return undefined;
  // The packed options: the job id's key and its empty value, right before the token's key and its empty one.
  const idKey = Buffer.alloc(strBytes('jobId'));
  writeStr(idKey, 0, 'jobId');
  const optsMid = Buffer.alloc(strBytes(adderKey));
  writeStr(optsMid, 0, adderKey);
  const marker = Buffer.concat([idKey, Buffer.from([0xa0]), optsMid, Buffer.from([0xa0])]);
  const at = packedOpts.indexOf(marker);
  if (at < 0 || packedOpts.indexOf(marker, at + 1) >= 0) return undefined;
  return {
    command,
    keys: args.slice(0, ADD_KEYS),
    argsHead: Buffer.from(packedArgs.subarray(0, prefix.end)),
    argsName: Buffer.from(packedArgs.subarray(prefix.end + 1, nameAt.end)),
    optsHead: Buffer.from(packedOpts.subarray(0, at + idKey.length)),
    optsMid,
    optsTail: Buffer.from(packedOpts.subarray(at + marker.length)),
  };
}

/**
 * A queue's standard adds built directly (see {@link standardAddsOf}): the script command and its arguments
 * for a job `name` with `data`, the options `{ ...defaults, jobId, [adderKey]: token }`, added at `timestamp`;
 * undefined when this job goes BullMQ's own way.
 */
export type StandardAdds = ((
  name: string,
  data: unknown,
  defaults: object,
  jobId: string,
  token: string,
  timestamp?: number,
) => { command: string; args: unknown[] } | undefined) & { readonly counts: { direct: number; own: number } };

/** Most templates kept per queue (one per job name and options object). */
const MAX_TEMPLATES = 64;

/**
 * BullMQ 6.7's standard add of a job (`new Job(queue, name, data, opts, jobId).addJob(client)`, which builds
 * the Job, its `asJSON`, validates its options, packs `optsAsJSON(opts)` and its arguments with msgpackr, and
 * calls `addStandardJob`) for `queue`, built directly: the same script command with the same 12 arguments,
 * byte for byte (test/integration/lean-job-codec.test.ts compares them with BullMQ's over many option sets).
 * The options are `{ ...defaults, jobId, [adderKey]: token }`: what BullMQ packs for each options object
 * and job name is taken from its own call once (with an empty id and token) and kept by the object's
 * identity (so an options object must not change once used); the job id, the token and the timestamp are
 * written into it as msgpackr writes them. Goes BullMQ's own way (undefined) for options other than
 * {@link LEAN_ADD_OPTIONS}, an id or token that is not ASCII, an id BullMQ refuses (an integer, one with
 * a `:` but not two), and anything not laid out as expected.
 */
export function standardAddsOf(queue: unknown, JobOf: JobClass, adderKey: string): StandardAdds {
  const counts = { direct: 0, own: 0 };
  const templates = new WeakMap<object, Map<string, AddTemplate | undefined>>();
  let kept = 0;
  const build = (
    name: string,
    data: unknown,
    defaults: object,
    jobId: string,
    token: string,
    timestamp = Date.now(),
  ): { command: string; args: unknown[] } | undefined => {
    // BullMQ's validateOptions refuses an integer id, and one with a ':' unless it has exactly two: its way
    // (it throws there).
    const c = jobId.charCodeAt(0);
    if (
      !plainStr(jobId) ||
      !plainStr(token) ||
      (jobId.includes(':') && jobId.split(':').length !== 3) ||
      ((c === 45 || (c >= 48 && c <= 57)) && `${parseInt(jobId, 10)}` === jobId) ||
      !Number.isInteger(timestamp) ||
      timestamp <= 0xffffffff ||
      timestamp > Number.MAX_SAFE_INTEGER
    ) {
      counts.own++;
      return undefined;
    }
    let byName = templates.get(defaults);
    if (byName === undefined) templates.set(defaults, (byName = new Map()));
    let t = byName.get(name);
    if (t === undefined && !byName.has(name)) {
      if (kept >= MAX_TEMPLATES) return (counts.own++, undefined);
      kept++;
      byName.set(name, (t = addTemplate(queue, JobOf, name, defaults, adderKey)));
    }
    if (t === undefined) return (counts.own++, undefined);
    const argsLen = t.argsHead.length + strBytes(jobId) + t.argsName.length + 9 + 6;
    const optsLen =
      t.optsHead.length + strBytes(jobId) + t.optsMid.length + strBytes(token) + t.optsTail.length;
    const mem = Buffer.allocUnsafe(argsLen + optsLen);
    let at = t.argsHead.copy(mem, 0);
    at = writeStr(mem, at, jobId);
    at += t.argsName.copy(mem, at);
    mem[at++] = 0xcb;
    at = mem.writeDoubleBE(timestamp, at);
    mem.fill(0xc0, at, at + 6);
    at += 6;
    const packedArgs = mem.subarray(0, at);
    at += t.optsHead.copy(mem, at);
    at = writeStr(mem, at, jobId);
    at += t.optsMid.copy(mem, at);
    at = writeStr(mem, at, token);
    at += t.optsTail.copy(mem, at);
    const packedOpts = mem.subarray(argsLen, at);
    const args = t.keys.slice();
    args.push(packedArgs, JSON.stringify(typeof data === 'undefined' ? {} : data), packedOpts);
    counts.direct++;
    return { command: t.command, args };
  };
  return Object.assign(build, { counts });
}
