import { beforeSend } from '../../redis/connection.js';
import { type RedisClient } from '../../redis/redis-client.js';
import { type ScopeKeys } from './scope.js';
import { type BandMirror } from './semantic-mirror.js';
import { type Arg, commands, MAX_GENERATIONS } from './semantic-scripts.js';

/** One lookup's reads (see shared/lua/semantic-lookup.lua): its scope's keys, id, and query band fields. */
export interface LookupRead {
  keys: ScopeKeys;
  /** The prompt's entry key (ScopeKeys.entry of its id): the script names the scope's other keys from it. */
  entryKey: string;
  id: string;
  /** Read the exact entry first (else the buckets only). */
  exactFirst: boolean;
  /** The query's band fields ("index:value", comma-separated). */
  fields: string;
  /** The last band stream entry the mirror of the scope applied (BandMirror.since; '' when none). */
  since: string;
}

/**
 * { 1, value JSON, prompt, stored at } on an exact hit; else { 0, generations, null, MIRRORED } when the
 * scope's mirror (caught up by this reply, semantic-mirror.ts) has the buckets, or { 0, generations, null,
 * null } when it fell behind (it is then dropped: rebuild it and ask again).
 */
export type LookupReply = [number, ...(Buffer | null)[]];
/** A LookupReply's fourth field when the buckets are the mirror's. */
export const MIRRORED: Buffer = Buffer.from('1');

/** A lookup's flags argument (semantic-lookup.lua): exact entry first ('x'), band fields ('b'), by bits. */
const FLAGS = ['--', '-b', 'x-', 'xb'] as const;

/** Most lookups per script call (its keys and arguments grow with each; Lua's unpack has a limit). */
export const MAX_LOOKUPS_PER_CALL = 32;

interface Batch {
  reads: LookupRead[];
  resolve: ((reply: LookupReply) => void)[];
  reject: ((err: unknown) => void)[];
}

/**
 * Sends the lookups a process starts within one turn of the event loop in ONE semantic-lookup.lua call
 * (up to MAX_LOOKUPS_PER_CALL): the first lookup of a turn asks the connection to run the send right before
 * the turn's held writes go out (connection.ts beforeSend), and the lookups started until then join it. The
 * connection writes a turn's commands in one write anyway, so nothing waits longer than it did; Redis runs
 * one script call (one EVALSHA, one Lua call, one ZRANGE and one XRANGE per scope) instead of one
 * per lookup, and the client encodes and parses one command. When the connection does not hold its writes
 * (a Cluster, or not connected), each lookup is sent at once, alone.
 */
export class LookupBatcher {
  private open: Batch | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly mirror: BandMirror,
  ) {}

  /** The reads of one lookup; rejects (with the RedisClient's typed errors) when the call fails. */
  read(r: LookupRead): Promise<LookupReply> {
    return new Promise<LookupReply>((resolve, reject) => {
      const open = this.open;
      if (open) {
        open.reads.push(r);
        open.resolve.push(resolve);
        open.reject.push(reject);
        if (open.reads.length >= MAX_LOOKUPS_PER_CALL) this.open = undefined;
        return;
      }
      const batch: Batch = { reads: [r], resolve: [resolve], reject: [reject] };
      if (beforeSend(this.redis.connection, () => this.send(batch))) this.open = batch;
      else this.send(batch);
    });
  }

  private send(batch: Batch): void {
    if (this.open === batch) this.open = undefined;
    const { reads } = batch;
    // One key per lookup, its entry key: the script names the scope's other keys (and the id) from it.
    const args: Arg[] = [reads.length];
    for (const r of reads) args.push(r.entryKey);
    args.push(MAX_GENERATIONS);
    // The script reads neither the band key prefix nor the band fields (only whether there are any: the
    // mirror ranks): neither is sent, ~200 bytes per lookup less for the client to encode and Redis to read.
    for (const r of reads)
      args.push(FLAGS[(r.exactFirst ? 2 : 0) + (r.fields === '' ? 0 : 1)]!, r.since ?? '');
    this.redis
      .run((c) => commands(c).cell0SemanticLookupBuffer(...(args as [number, ...Arg[]])))
      .then(
        (replies) => {
          const complete = Array.isArray(replies) && replies.length === 4 * reads.length;
          // The mirrors catch up first (every lookup of the call then ranks from them): the stream entries
          // since each mirror's position, or that it fell behind.
          if (complete)
            for (let i = 0; i < reads.length; i++) {
              const since = reads[i]!.since;
              if (since === '' || Number(replies[4 * i]) === 1) continue;
              if (isOne(replies[4 * i + 3])) {
                const events = replies[4 * i + 2];
                if (events instanceof Buffer && events.length > 0)
                  this.mirror.apply(reads[i]!.keys, events.toString('latin1'));
              } else this.mirror.fellBehind(reads[i]!.keys, since);
            }
          for (let i = 0; i < reads.length; i++) {
            if (!complete) {
              batch.reject[i]!(new Error(`semantic-lookup: no reply for lookup ${i + 1} of ${reads.length}`));
              continue;
            }
            const o = 4 * i;
            const flag = Number(replies[o]);
            const r = replies as (Buffer | null)[];
            // an exact hit: its entry; else the generations and, when band fields were given, the buckets
            if (flag === 1) batch.resolve[i]!([1, r[o + 1]!, r[o + 2]!, r[o + 3]!]);
            else if (reads[i]!.since !== '' && isOne(r[o + 3]))
              batch.resolve[i]!([0, r[o + 1]!, null, MIRRORED]);
            else batch.resolve[i]!([0, r[o + 1]!, null, null]);
          }
        },
        (err: unknown) => {
          for (const reject of batch.reject) reject(err);
        },
      );
  }
}

/** Whether a reply field is the text "1" (read as a Buffer: its byte, not a string made of it). */
function isOne(field: unknown): boolean {
  return field instanceof Buffer ? field.length === 1 && field[0] === 0x31 : String(field) === '1';
}

interface RecordBatch {
  vecKey: string;
  slots: string[];
  /** Where each read's slots start in `slots`, and how many it has. */
  from: number[];
  count: number[];
  resolve: ((records: (Buffer | null)[]) => void)[];
  reject: ((err: unknown) => void)[];
}

/** Most slots per HMGET of candidate records (a read of one lookup has at most CANDIDATES). */
export const MAX_RECORDS_PER_CALL = 32 * 24;

/**
 * Reads candidate records (HMGET of a scope's vec hash) the way LookupBatcher sends lookups: the reads of
 * one scope started within one turn of the event loop go in ONE HMGET (the lookups whose script replies
 * came in one Redis read all rank their slots in that turn), each read then given its own part of the reply.
 * One command for Redis to parse and run, and for the client to encode, send and parse, instead of one per
 * lookup. When the connection does not hold its writes, each read is sent at once, alone.
 */
export class RecordReader {
  /** The open batch of each scope's vec hash in this turn. */
  private readonly open = new Map<string, RecordBatch>();

  constructor(private readonly redis: RedisClient) {}

  /** The records of `slots` (each null when missing); rejects when Redis fails. */
  read(vecKey: string, slots: readonly string[]): Promise<(Buffer | null)[]> {
    return new Promise<(Buffer | null)[]>((resolve, reject) => {
      const open = this.open.get(vecKey);
      if (open && open.slots.length + slots.length <= MAX_RECORDS_PER_CALL) {
        add(open, slots, resolve, reject);
        return;
      }
      const batch: RecordBatch = { vecKey, slots: [], from: [], count: [], resolve: [], reject: [] };
      add(batch, slots, resolve, reject);
      if (beforeSend(this.redis.connection, () => this.send(batch))) this.open.set(vecKey, batch);
      else this.send(batch);
    });
  }

  private send(batch: RecordBatch): void {
    if (this.open.get(batch.vecKey) === batch) this.open.delete(batch.vecKey);
    this.redis
      .run((c) => c.hmgetBuffer(batch.vecKey, ...batch.slots))
      .then(
        (records) => {
          if (!Array.isArray(records)) {
            for (const reject of batch.reject) reject(new Error('HMGET of candidate records: no reply'));
            return;
          }
          if (batch.resolve.length === 1) return batch.resolve[0]!(records);
          for (let i = 0; i < batch.resolve.length; i++)
            batch.resolve[i]!(records.slice(batch.from[i]!, batch.from[i]! + batch.count[i]!));
        },
        (err: unknown) => {
          for (const reject of batch.reject) reject(err);
        },
      );
  }
}

function add(
  batch: RecordBatch,
  slots: readonly string[],
  resolve: (records: (Buffer | null)[]) => void,
  reject: (err: unknown) => void,
): void {
  batch.from.push(batch.slots.length);
  batch.count.push(slots.length);
  for (const s of slots) batch.slots.push(s);
  batch.resolve.push(resolve);
  batch.reject.push(reject);
}
