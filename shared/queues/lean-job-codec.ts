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

/**
 * The packed options of the completion arguments {@link completedArgsOf} built, each with the same options
 * packed with an empty token (one Buffer per kind of job and worker options, shared by every job of that
 * kind) and the token: the batched finish sends such a job's options as its token alone, and the shared ones
 * once per call (finish-batch.ts), so Redis unpacks them once per call instead of once per job.
 */
const tokenSplits = new WeakMap<Buffer, { shared: Buffer; token: string }>();

/**
 * For packed options that {@link completedArgsOf} built: the same options packed with an empty token (the
 * same Buffer for every job of the same kind and worker options) and the token; else undefined.
 */
export function optsTokenSplit(packed: unknown): { shared: Buffer; token: string } | undefined {
  return Buffer.isBuffer(packed) ? tokenSplits.get(packed) : undefined;
}

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
  let tails = new Map<string, { head: Buffer; tail: Buffer; shared: Buffer }>();
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
      const split = splitAtToken(packed);
      if (split === undefined) return own(job, value, removeOnComplete, token, fetchNext);
      parts = { ...split, shared: packed };
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
    tokenSplits.set(out, { shared: parts.shared, token });
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
