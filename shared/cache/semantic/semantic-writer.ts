import { AsyncBatchProcessor } from '../../batch/async-batch-processor.js';
import { isCluster, type RedisConnection } from '../../redis/cluster.js';
import { type RedisClient } from '../../redis/redis-client.js';
import { type ScopeKeys } from './scope.js';
import { type BandMirror } from './semantic-mirror.js';
import { commands, EXPIRED_CLEANUP, INDEX_SAMPLE, SLOT_HOLD_MS, type Arg } from './semantic-scripts.js';

/** One prepared store: what semantic-set.lua needs of an entry, and where its scope's index records go. */
export interface SemanticWrite {
  keys: ScopeKeys;
  id: string;
  json: string;
  prompt: string;
  vector: Buffer;
  ttlMs: number;
  /**
   * Band fields as the lookup scripts take them (scope.ts bandFields: "index:value", comma-separated; '' when
   * the entry is not indexed): the prompt's lookup built them already, and the script appends to them as given.
   */
  fields: string;
  /**
   * The band values the fields name, in band order (undefined when not indexed): the mirror applies the
   * store's own join from them (BandMirror.applyStored), not from its fields as text.
   */
  bands: readonly number[] | undefined;
  /**
   * The index sets of the scope (model, and tenant when there is one): asked for only when a store renews
   * them (a new generation, or a sample), as each name costs a hash.
   */
  indexKeys: () => string[];
  /**
   * Called once the store's script call has been handed to the connection (or the store failed before
   * that): a command sent later on any connection of the same Redis then runs after it. On a Redis Cluster,
   * where nothing orders commands to different masters (or connections still being opened), once the call
   * is answered.
   */
  sent?: () => void;
  /**
   * A connection to the same Redis the store's call may go on instead of the writer's own, while it is
   * ready (SemanticCache.set): a call of several stores takes its first store's.
   */
  connection?: RedisConnection;
}

/**
 * What one store cost its scope (entries evicted and expired entries removed by its script call), and where
 * its entry went: its slot (-1 when it has none: not indexed, out of slots, evicted by its own call, or a
 * later store of the same prompt in the batch was written instead), when its candidate record says it
 * expires (Redis's clock, ms), and when the call was sent (this process's clock, taken before the send).
 */
export interface SemanticWriteOutcome {
  evicted: number;
  expired: number;
  slot: number;
  expiresAt: number;
  sentAt: number;
}

/** How stores are grouped into script calls. */
export interface SemanticWriteBatching {
  /** Most stores of one scope per script call. Default 32; 1 = one call per store. */
  maxBatchSize?: number;
  /**
   * How long the first store of a batch waits for others of its scope, ms. Default 1; 0 = only stores made
   * in the same turn of the event loop share a call.
   */
  maxWaitMs?: number;
}

/**
 * Sends the semantic cache's stores to Redis: the stores of one scope that arrive together (within
 * `maxWaitMs`) go in ONE semantic-set.lua call, which appends their band codes with one HMGET and one HSET
 * per generation, writes the vec / meta / LRU / expiry records with one command each and runs the scope's
 * upkeep (container expiry, expired cleanup, size bound) once. A store still resolves only after its entry
 * is in Redis, so the next identical request finds it; a store's `sent` callback says when its call has gone
 * to the connection (a worker completes the job then, without waiting for the reply; on a cluster, once the
 * call is answered). Two stores of the same prompt in one batch: the later one is written, both resolve.
 */
export class SemanticWriter {
  private readonly batcher: AsyncBatchProcessor<SemanticWrite, SemanticWriteOutcome>;

  constructor(
    private readonly redis: RedisClient,
    private readonly maxEntriesPerScope: number,
    batching: SemanticWriteBatching = {},
    /**
     * The process's mirrors of the band buckets: a call sends its scope's mirror position, and the mirror
     * applies the call's own stream entry from the reply once it is at the entry that one follows
     * (BandMirror.applyStored).
     */
    private readonly mirror?: BandMirror,
  ) {
    this.batcher = new AsyncBatchProcessor<SemanticWrite, SemanticWriteOutcome>({
      handler: (items) => this.write(items),
      keyOf: (w) => w.keys.hash,
      maxBatchSize: batching.maxBatchSize ?? 32,
      maxWaitMs: batching.maxWaitMs ?? 1,
      maxConcurrentBatches: 8,
    });
  }

  /** Stores one entry (with whatever else of its scope is waiting); rejects when Redis fails. */
  store(w: SemanticWrite): Promise<SemanticWriteOutcome> {
    return this.batcher.add(w);
  }

  /** Stores, in one script call, entries of one scope. */
  private async write(items: SemanticWrite[]): Promise<SemanticWriteOutcome[]> {
    // The last store of each prompt wins (the script needs distinct ids).
    const last = new Map<string, SemanticWrite>();
    for (const w of items) last.set(w.id, w);
    const writes = [...last.values()];
    const keys = writes[0]!.keys;
    // read in the same turn as the send (or earlier: a stale position only means the reply is not applied)
    const since = this.mirror?.position(keys) ?? '';
    const args: Arg[] = [
      9 + writes.length,
      ...keys.containers(),
      ...writes.map((w) => keys.entry(w.id)),
      this.maxEntriesPerScope,
      keys.entryPrefix,
      keys.bandPrefix,
      EXPIRED_CLEANUP,
      SLOT_HOLD_MS,
      since,
    ];
    let maxTtl = 0;
    for (const w of writes) args.push(w.id);
    for (const w of writes) {
      // the prompt's length in bytes for the entry record (the script would turn #prompt into text with sprintf)
      args.push(w.json, w.prompt, Buffer.byteLength(w.prompt), w.vector, w.ttlMs, w.fields);
      maxTtl = Math.max(maxTtl, w.ttlMs);
    }
    const sent = (): void => {
      for (const w of items) w.sent?.();
    };
    let reply: (number | string)[];
    const sentAt = Date.now();
    // the first store's connection while it is ready (its commands then go in one socket write with this
    // call), else the client's own
    const via = writes[0]!.connection;
    try {
      reply = await this.redis.run((own) => {
        const r = via !== undefined && via.status === 'ready' ? via : own;
        const call = commands(r).cell0SemanticSet(...(args as [number, ...Arg[]]));
        // On one Redis, a command sent after this call on any connection runs after it. On a cluster the
        // entry's master is usually not the one the caller writes to next (the job's completion), and even
        // on the same master another connection may be open while this one is still being opened, so
        // nothing orders them: there the stores count as sent once the call is answered (below).
        if (!isCluster(r)) sent();
        return call;
      });
    } finally {
      // answered (on a cluster), or the breaker refused the call, or it failed: nothing more will be sent
      sent();
    }
    const [evicted, expired, renewIndex, indexLifeMs] = reply;
    // The call's own band stream entry and the entry it follows: applied to the mirror once the mirror is
    // there (now, or when a lookup's catch-up or another call's reply brings it there), so this process's
    // lookups do not read back (and parse) what it wrote.
    const streamId = reply[5 + writes.length];
    const prev = reply[6 + writes.length];
    const events = reply[7 + writes.length];
    if (
      since !== '' &&
      typeof streamId === 'string' &&
      typeof prev === 'string' &&
      typeof events === 'string'
    )
      this.mirror?.applyStored(keys, prev, streamId, events, (id) => last.get(id)?.bands);
    // The scope's index records for invalidate() and the sweep (each in its own slot, so separate calls)
    // must outlive its entries: kept as long as the generation these stores joined or the containers'
    // expiry the call set, so they are renewed when a store opens a new generation or sets that expiry (a
    // new scope, then once per TTL or two; a scope whose entries are stored for their exact key only joins
    // no generation), and on a sample of other calls in case such a renewal was lost.
    if (Number(renewIndex) === 1 || Math.random() < INDEX_SAMPLE) {
      const lifeMs = Math.max(maxTtl, Number(indexLifeMs) + 1000);
      await Promise.all(
        writes[0]!
          .indexKeys()
          .map((indexKey) =>
            this.redis.run((r) => commands(r).cell0SemanticIndex(indexKey, keys.hash, lifeMs)),
          ),
      );
    }
    // Each written entry's slot (the reply's sixth field on, in the order of `writes`): a store whose prompt
    // a later store of the batch wrote instead gets none.
    const now = Number(reply[4]);
    const slotOf = new Map<SemanticWrite, number>();
    for (let k = 0; k < writes.length; k++) {
      const slot = reply[5 + k];
      if (typeof slot === 'number' && slot >= 0 && now > 0) slotOf.set(writes[k]!, slot);
    }
    // The call's evictions and removals are counted once, on its first store.
    return items.map((w, i) => ({
      evicted: i === 0 ? Number(evicted) : 0,
      expired: i === 0 ? Number(expired) : 0,
      slot: slotOf.get(w) ?? -1,
      expiresAt: now + w.ttlMs,
      sentAt,
    }));
  }
}
