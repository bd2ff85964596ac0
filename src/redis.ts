/**
 * Redis connections. Each process keeps separate connections for commands, blocking stream
 * reads and pub/sub, so a blocking read never delays a command. Nothing connects until a
 * factory is called.
 *
 * On a Redis Cluster (REDIS_CLUSTER_NODES) each is an ioredis `Cluster`: a command goes to
 * the master of its key's slot and follows MOVED and failovers by itself. Every script and
 * every pipeline of ours touches one partition, and a partition's keys share one slot.
 */
import { Cluster, Redis, type ChainableCommander, type ClusterOptions, type RedisOptions } from 'ioredis';

export type ConnectionPurpose = 'commands' | 'blocking' | 'subscriber';

/** A connection to one Redis or to a cluster: every command of ours runs on either. */
export type RedisClient = Redis | Cluster;

/** Where Redis is: one server's URL, or a cluster's seed nodes. */
export type RedisTarget = { url: string } | { clusterNodes: { host: string; port: number }[] };

/** The Redis a config names: a cluster when REDIS_CLUSTER_NODES is set, else REDIS_URL. */
export function redisTarget(config: { redisUrl: string; redisClusterNodes?: { host: string; port: number }[] | undefined }): RedisTarget {
  return config.redisClusterNodes ? { clusterNodes: config.redisClusterNodes } : { url: config.redisUrl };
}

/** How long a command may wait (queued while reconnecting, or in flight) before it fails. */
export const COMMAND_TIMEOUT_MS = 1200;

function connectionOptions(purpose: ConnectionPurpose, name: string): RedisOptions {
  const options: RedisOptions = {
    connectionName: `${name}:${purpose}`,
    // Reconnect forever, quickly at first: workers must resume by themselves after a Redis restart.
    retryStrategy: (times) => Math.min(50 * times, 1000),
    maxRetriesPerRequest: purpose === 'commands' ? 1 : null,
    // No auto-pipelining: it holds each batch until the one before is answered, so one
    // command stuck on a paused Redis would make every later one wait its whole timeout.
    enableAutoPipelining: false,
    lazyConnect: true,
  };
  // A blocking XREADGROUP legitimately waits; every other command fails fast, never hangs.
  if (purpose !== 'blocking') options.commandTimeout = COMMAND_TIMEOUT_MS;
  return options;
}

export function createRedis(target: RedisTarget, purpose: ConnectionPurpose, name = 'punctual'): RedisClient {
  const options = connectionOptions(purpose, name);
  if ('clusterNodes' in target) {
    const clusterOptions: ClusterOptions = {
      redisOptions: options,
      lazyConnect: true,
      enableAutoPipelining: false,
      // Never give up on the cluster: a failover takes cluster-node-timeout plus an election.
      clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
      // A command to a master that died waits for the replica's promotion, then goes there.
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      retryDelayOnTryAgain: 100,
      // A failover changes who serves a slot without a MOVED reaching idle connections.
      slotsRefreshInterval: 1000,
      slotsRefreshTimeout: 1000,
      shardedSubscribers: purpose === 'subscriber',
      scaleReads: 'master',
    };
    const cluster = new Cluster(target.clusterNodes, clusterOptions);
    cluster.on('error', () => {});
    cluster.on('node error', () => {});
    return cluster;
  }
  const redis = new Redis(target.url, options);
  // ioredis emits 'error' on every failed reconnect; callers log state changes themselves.
  redis.on('error', () => {});
  return redis;
}

export const isCluster = (redis: RedisClient): redis is Cluster => redis instanceof Cluster;

/**
 * A pipeline's replies as they came, after a look for redirections: ioredis follows MOVED for a
 * single command, but for a pipeline only when every command got it, so a pipeline that mixes
 * (a script and the WAIT after it) refreshes the slot table here; its caller sends it again.
 */
export function noteRedirections(redis: RedisClient, replies: [Error | null, unknown][]): [Error | null, unknown][] {
  if (isCluster(redis) && replies.some(([error]) => error && /^(MOVED|ASK) /.test(error.message))) redis.refreshSlotsCache();
  return replies;
}

/**
 * Runs commands that touch several partitions in one round trip, their replies in the order
 * queued: one pipeline on a single Redis; on a cluster one pipeline per partition, all sent at
 * once (a cluster pipeline must stay in one slot).
 */
export async function execPerPartition(redis: RedisClient, partitions: readonly number[], queue: (pipeline: ChainableCommander, partition: number) => void): Promise<[Error | null, unknown][]> {
  if (!isCluster(redis)) {
    const pipeline = redis.pipeline();
    for (const p of partitions) queue(pipeline, p);
    return ((await pipeline.exec()) ?? []) as [Error | null, unknown][];
  }
  const replies = await Promise.all(
    partitions.map(async (p) => {
      const pipeline = redis.pipeline();
      queue(pipeline, p);
      const length = pipeline.length;
      return pipeline.exec().then(
        (reply) => noteRedirections(redis, (reply ?? []) as [Error | null, unknown][]),
        (error: Error) => Array.from({ length }, () => [error, null] as [Error, null]),
      );
    }),
  );
  return replies.flat();
}

/** Redis TIME in whole milliseconds. */
export async function redisTimeMs(redis: RedisClient): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}
