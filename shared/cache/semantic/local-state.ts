import { type RedisClient } from '../../redis/redis-client.js';
import { LookupRecords } from './lookup-records.js';
import { BandMirror } from './semantic-mirror.js';

/**
 * What a process knows of the semantic cache's scopes besides Redis: its mirrors of their band buckets
 * (semantic-mirror.ts) and the candidate records it read or wrote lately (lookup-records.ts).
 *
 * SemanticCaches of one process on the same Redis and key prefix, with the same embedder and LSH layout, may
 * share one (SemanticCacheOptions.localState): `cell0 start` runs an API, whose cache looks up, and a worker,
 * whose cache stores, in one process. With a state each, the storing cache had no mirror, so its stores'
 * stream entries could not be applied from their replies (BandMirror.applyStored) and the API's lookups read
 * every one back from Redis, and the records it wrote were kept where no lookup used them, so the API's
 * lookups read them again (0.33 candidate-record reads per request in bench:http-commands, 0.10 with one
 * cache). Shared, a store is applied to the mirror the other cache ranks from and its record is kept for
 * that cache's lookups. Either is only ever a copy of what Redis holds, kept by the same rules whichever
 * cache reads or writes it, so sharing changes no answer.
 */
export class SemanticLocalState {
  /** The candidate records read or written lately, by scope and slot. */
  readonly records = new LookupRecords();
  private mirror: BandMirror | undefined;
  private layout: string | undefined;

  /**
   * The band mirror of caches of `layout` (their key base, vector space and LSH bands × rows: what makes two
   * caches' scopes and bucket numbers the same), made by the first cache that asks (its builds then go
   * through `redis` unless the caller of BandMirror.build gives another). Throws for another layout: such
   * caches cannot share a state.
   */
  mirrorFor(redis: RedisClient, bands: number, rows: number, layout: string): BandMirror {
    if (this.layout !== undefined && this.layout !== layout)
      throw new TypeError(
        `SemanticCache: localState is shared by caches of another layout (${this.layout}, not ${layout})`,
      );
    this.layout = layout;
    return (this.mirror ??= new BandMirror(redis, bands, rows));
  }
}
