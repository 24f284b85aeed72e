import { randomBytes } from 'node:crypto';
import { type RedisConnection } from '../../shared/redis/cluster.js';

/** A stored input file, as OpenAI's Files API shows it (times in Unix seconds). */
export interface FileObject {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  /** When cell0 drops it (its retention, CELL0_BATCH_TTL). */
  expires_at: number;
  filename: string;
  purpose: string;
  /** OpenAI's (deprecated) processing status: a stored file is always `processed`. */
  status: 'processed';
  status_details: null;
}

const ID_RE = /^file-[0-9a-f]{24}$/;

/** Whether `id` has the shape of an uploaded file's id. */
export function isFileId(id: string): boolean {
  return ID_RE.test(id);
}

/** Runs one Redis call (through the producer's breaker). */
export type RedisRun = <T>(fn: (r: RedisConnection) => Promise<T>) => Promise<T>;

/**
 * The input files of OpenAI-shaped batches (`POST /v1/files` with purpose `batch`), kept in Redis: one hash
 * per file (its object and its content) that expires with the batch retention, and one sorted set per owner
 * (a tenant id, or '' for none) listing them by creation time. A file is its owner's: another owner is
 * answered as for an unknown id.
 */
export class BatchFiles {
  constructor(
    private readonly run: RedisRun,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  private key(id: string): string {
    return `${this.prefix}:file:${id}`;
  }

  private index(owner: string): string {
    return `${this.prefix}:files:${owner}`;
  }

  /** Stores a file's content and returns its object. */
  async create(opts: {
    owner: string;
    filename: string;
    purpose: string;
    content: string;
  }): Promise<FileObject> {
    const id = `file-${randomBytes(12).toString('hex')}`;
    const now = Date.now();
    const file: FileObject = {
      id,
      object: 'file',
      bytes: Buffer.byteLength(opts.content),
      created_at: Math.floor(now / 1000),
      expires_at: Math.floor(now / 1000) + this.ttlSeconds,
      filename: opts.filename,
      purpose: opts.purpose,
      status: 'processed',
      status_details: null,
    };
    const key = this.key(id);
    await this.run(async (r) => {
      await r
        .multi()
        .hset(key, { meta: JSON.stringify(file), owner: opts.owner, content: opts.content })
        .expire(key, this.ttlSeconds)
        .exec();
      // The index: listed newest first; ids whose file has expired are dropped when a listing meets them.
      await r.zadd(this.index(opts.owner), now, id);
      await r.expire(this.index(opts.owner), this.ttlSeconds);
    });
    return file;
  }

  /** A file's object, or undefined (no such file of this owner). */
  async get(id: string, owner: string): Promise<FileObject | undefined> {
    if (!isFileId(id)) return undefined;
    const [meta, o] = await this.run((r) => r.hmget(this.key(id), 'meta', 'owner'));
    if (meta == null || o !== owner) return undefined;
    return JSON.parse(meta) as FileObject;
  }

  /** A file's object and content, or undefined. */
  async read(id: string, owner: string): Promise<{ file: FileObject; content: string } | undefined> {
    if (!isFileId(id)) return undefined;
    const [meta, o, content] = await this.run((r) => r.hmget(this.key(id), 'meta', 'owner', 'content'));
    if (meta == null || o !== owner || content == null) return undefined;
    return { file: JSON.parse(meta) as FileObject, content };
  }

  /** Deletes a file; false when there was none of this owner. */
  async delete(id: string, owner: string): Promise<boolean> {
    if (!(await this.get(id, owner))) return false;
    await this.run(async (r) => {
      await r.del(this.key(id));
      await r.zrem(this.index(owner), id);
    });
    return true;
  }

  /** The owner's files, newest first, at most `limit`, those created before `after` (a file id) when given. */
  async list(
    owner: string,
    opts: { limit: number; after?: string; purpose?: string },
  ): Promise<FileObject[]> {
    const ids = await this.run((r) => r.zrevrange(this.index(owner), 0, -1));
    let start = 0;
    if (opts.after !== undefined) {
      const at = ids.indexOf(opts.after);
      start = at < 0 ? ids.length : at + 1;
    }
    const out: FileObject[] = [];
    const gone: string[] = [];
    // read 100 at a time (their commands leave together), until the page is full
    for (let i = start; i < ids.length && out.length < opts.limit; i += 100) {
      const part = ids.slice(i, i + 100);
      const files = await Promise.all(part.map((id) => this.get(id, owner)));
      for (let k = 0; k < part.length && out.length < opts.limit; k++) {
        const f = files[k];
        if (!f) gone.push(part[k]!);
        else if (opts.purpose === undefined || f.purpose === opts.purpose) out.push(f);
      }
    }
    if (gone.length > 0) await this.run((r) => r.zrem(this.index(owner), ...gone));
    return out;
  }
}
