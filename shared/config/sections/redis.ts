import { z } from 'zod';
import { type EnvVar, type ParsedEnv } from '../env-var.js';
import { bool, int, redisUrl } from '../schemas.js';
import { MAX_QUEUE_SHARDS } from '../../queues/shards.js';
import { clusterUrl, isClusterUrl, parseClusterNodes, parseClusterUrl } from '../../redis/cluster.js';

/*
 * Redis: where the queues, caches and fleet state live, and how producers fail fast when it is away.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const REDIS_ENV = {
  REDIS_URL: {
    section: 'redis',
    schema: z
      .string()
      .trim()
      .refine(
        (v) => (isClusterUrl(v) ? validClusterUrl(v) : redisUrl.safeParse(v).success),
        'expected a redis:// or rediss:// URL, for example redis://:password@host:6379/0, or redis-cluster://host:port,host:port',
      ),
    doc: 'Redis URL; wins over CELL0_REDIS_HOST/PORT. redis://[:password@]host:port[/db], rediss:// for TLS; redis-cluster://[:password@]host:port,host:port (rediss-cluster:// for TLS) for a Redis Cluster',
    secret: true,
  },
  REDIS_CLUSTER_NODES: {
    section: 'redis',
    schema: z
      .string()
      .trim()
      .transform((v, ctx) => {
        try {
          parseClusterNodes(v);
          return v;
        } catch (err) {
          ctx.addIssue({
            code: 'custom',
            message: `expected host:port,host:port,... (${(err as Error).message})`,
          });
          return z.NEVER;
        }
      }),
    doc: 'Redis Cluster seed nodes, host:port,host:port,...; when set cell0 runs on the cluster (REDIS_URL then only lends its password and rediss:// TLS). See docs/scaling.md',
  },
  CELL0_REDIS_HOST: {
    section: 'redis',
    default: 'localhost',
    schema: z.string().trim().min(1, 'expected a host name'),
    doc: 'Redis host (when REDIS_URL is unset)',
  },
  CELL0_REDIS_PORT: {
    section: 'redis',
    default: '6379',
    schema: int(1, 65535),
    doc: 'Redis port (when REDIS_URL is unset)',
  },
  CELL0_QUEUE_PREFIX: {
    section: 'redis',
    default: '{cell0}',
    schema: z.string().regex(/^\{[A-Za-z0-9_.-]+\}$/, 'expected a Redis Cluster hash tag such as {cell0}'),
    doc: 'Key prefix of every queue; a {hash tag} keeps each queue in one cluster slot',
  },
  CELL0_QUEUE_SHARDS: {
    section: 'redis',
    default: '1',
    schema: int(1, MAX_QUEUE_SHARDS),
    doc: 'Shards per work queue, each its own hash tag, so a cluster spreads a queue over its masters; the same in every process of a fleet (drain the queues before changing it). See docs/scaling.md',
  },
  CELL0_QUEUE_EVENTS: {
    section: 'redis',
    default: '0',
    schema: bool,
    doc: "Write BullMQ's event stream entries (added, waiting, active, completed with the result, drained) for the jobs cell0's producers add, for BullMQ QueueEvents listeners. Nothing in cell0 or Bull Board reads them; 0 leaves them out of cell0's batched adds, takes and finishes (a job a plain BullMQ producer added keeps its completed or failed entry, and BullMQ's own calls still write theirs). See docs/redis.md",
  },
  CELL0_REDIS_COMMAND_TIMEOUT_MS: {
    section: 'redis',
    default: '2000',
    schema: int(50, 60_000),
    doc: "A Redis command that takes longer fails, in producers (503 CELL0_REDIS_TIMEOUT: slow, not down; it does not open the breaker) and in workers' cache writes",
  },
  CELL0_REDIS_MEMORY_WATERMARK: {
    section: 'redis',
    default: '90',
    schema: int(0, 100),
    doc: 'Redis used memory (% of maxmemory) at which new work is refused with 503 CELL0_REDIS_FULL, before Redis refuses writes (0 = off; no effect without maxmemory)',
  },
  CELL0_REDIS_BREAKER_THRESHOLD: {
    section: 'redis',
    default: '5',
    schema: int(1, 1000),
    doc: 'Consecutive Redis failures that open the breaker',
  },
  CELL0_REDIS_BREAKER_RESET_MS: {
    section: 'redis',
    default: '5000',
    schema: int(100, 600_000),
    doc: 'How long the Redis breaker stays open before a trial call (half-open)',
  },
  CELL0_EMBEDDED_REDIS: {
    section: 'redis',
    default: 'auto',
    schema: z.enum(['auto', 'never'], 'expected auto or never'),
    doc: '`cell0 start`: launch a private redis-server when none answers (auto) or never',
  },
  CELL0_DATA_DIR: {
    section: 'redis',
    default: '.cell0',
    schema: z.string().trim().min(1, 'expected a folder path'),
    doc: 'Where `cell0 start` keeps the embedded Redis data; workers measure disk use on the filesystem holding it (the working folder until it exists)',
  },
} satisfies Record<string, EnvVar>;

/** How a process reaches Redis. */
export interface RedisConfig {
  /**
   * REDIS_URL when given, else built from host and port; with REDIS_CLUSTER_NODES a cluster URL
   * (redis-cluster://host:port,host:port, see shared/redis/cluster.ts).
   */
  url: string;
  /** True when the URL names a Redis Cluster. */
  cluster: boolean;
  /** True when REDIS_URL was given explicitly. */
  explicitUrl: boolean;
  host: string;
  port: number;
  prefix: string;
  /** Shards per work queue (CELL0_QUEUE_SHARDS). */
  queueShards: number;
  /** Whether cell0's queue scripts write BullMQ's event stream (CELL0_QUEUE_EVENTS). */
  queueEvents: boolean;
  commandTimeoutMs: number;
  breakerThreshold: number;
  breakerResetMs: number;
  memoryWatermarkPercent: number;
}

export function loadRedis(p: ParsedEnv<typeof REDIS_ENV>): {
  redis: RedisConfig;
  embeddedRedis: 'auto' | 'never';
  dataDir: string;
} {
  const explicitUrl = p.REDIS_URL !== undefined || p.REDIS_CLUSTER_NODES !== undefined;
  const given = p.REDIS_URL ?? `redis://${bracketed(p.CELL0_REDIS_HOST)}:${p.CELL0_REDIS_PORT}`;
  // A cluster URL given as REDIS_URL lends its credentials as a redis:// URL would.
  const base = isClusterUrl(given) ? parseClusterUrl(given) : undefined;
  const parsedUrl = base ? undefined : new URL(given);
  const credentials = base ?? {
    ...(parsedUrl!.username ? { username: decodeURIComponent(parsedUrl!.username) } : {}),
    ...(parsedUrl!.password ? { password: decodeURIComponent(parsedUrl!.password) } : {}),
    tls: parsedUrl!.protocol === 'rediss:',
  };
  const url = p.REDIS_CLUSTER_NODES !== undefined ? clusterUrl(p.REDIS_CLUSTER_NODES, credentials) : given;
  const first = isClusterUrl(url) ? parseClusterUrl(url).nodes[0] : undefined;
  return {
    redis: {
      url,
      cluster: first !== undefined,
      explicitUrl,
      host: first?.host ?? parsedUrl!.hostname.replace(/^\[|\]$/g, ''),
      port: first?.port ?? Number(parsedUrl!.port || 6379),
      prefix: p.CELL0_QUEUE_PREFIX,
      queueShards: p.CELL0_QUEUE_SHARDS,
      queueEvents: p.CELL0_QUEUE_EVENTS,
      commandTimeoutMs: p.CELL0_REDIS_COMMAND_TIMEOUT_MS,
      breakerThreshold: p.CELL0_REDIS_BREAKER_THRESHOLD,
      breakerResetMs: p.CELL0_REDIS_BREAKER_RESET_MS,
      memoryWatermarkPercent: p.CELL0_REDIS_MEMORY_WATERMARK,
    },
    embeddedRedis: p.CELL0_EMBEDDED_REDIS,
    dataDir: p.CELL0_DATA_DIR,
  };
}

function bracketed(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function validClusterUrl(v: string): boolean {
  try {
    parseClusterUrl(v);
    return true;
  } catch {
    return false;
  }
}
