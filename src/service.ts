/**
 * One process of Punctual: the connections, the task store, and the roles the config asks
 * for. Nothing connects until `start`; `stop` undoes it in order (a worker first finishes
 * and commits its batch).
 */
import type { Writable } from 'node:stream';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { type RedisClient, createRedis, isCluster, redisTarget } from './redis.js';
import { logClusterLayout } from './cluster-layout.js';
import { createKeys, type Keys } from './scheduler/keys.js';
import { defineScripts, loadScripts } from './scheduler/scripts.js';
import { createTaskStore, type TaskStore } from './scheduler/tasks.js';
import { createChannels, type Channels } from './scheduler/pubsub.js';
import { createWorker, workerName, type Worker } from './scheduler/worker.js';
import { createPrinter } from './scheduler/print.js';
import { createFeed, type Feed } from './scheduler/feed.js';
import { createTaskListing } from './scheduler/listing.js';
import { createStatsReader } from './scheduler/stats.js';
import type { ApiServer } from './server.js';
import { createMetrics, instrumentStore, type Metrics } from './metrics.js';
import { createHealth } from './health.js';
import { checkDurability } from './durability.js';
import { createOpsRoutes, createOpsServer, type OpsServer } from './ops-routes.js';

export interface Service {
  readonly config: Config;
  readonly keys: Keys;
  readonly redis: RedisClient;
  readonly store: TaskStore;
  readonly channels: Channels;
  /** Present when the role includes the API: the live feed every subscription of this process shares. */
  readonly feed: Feed | undefined;
  /** Present when the role includes the worker. */
  readonly worker: Worker | undefined;
  /** Present when the role includes the API. */
  readonly server: ApiServer | undefined;
  /** Present when the role has no API: serves /metrics, /healthz and /readyz alone on PORT. */
  readonly opsServer: OpsServer | undefined;
  readonly metrics: Metrics;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface ServiceOptions {
  log: Logger;
  /** Where fired messages are printed. @default process.stdout */
  out?: Writable;
}

export function createService(config: Config, options: ServiceOptions): Service {
  const { log } = options;
  const target = redisTarget(config);
  const keys = createKeys(config.keyPrefix, config.partitions, 'clusterNodes' in target);
  const name = config.workerName ?? workerName();
  const redis = createRedis(target, 'commands');
  const subscriber = createRedis(target, 'subscriber');
  defineScripts(redis);
  const channels = createChannels(subscriber);
  const runsWorker = config.role === 'all' || config.role === 'worker';
  // A blocking read holds its connection: on a cluster, where no read spans two partitions' slots, one per partition.
  const blocking = runsWorker ? Array.from({ length: keys.cluster ? keys.partitions : 1 }, () => createRedis(target, 'blocking', name)) : undefined;
  const worker = blocking
    ? createWorker({ redis, blocking, channels }, keys, name, createPrinter(options.out ?? process.stdout), config, log)
    : undefined;
  const runsApi = config.role === 'all' || config.role === 'api';
  const plainStore = createTaskStore(redis, keys, config);
  const feed = runsApi ? createFeed({ redis, channels, subscriber, getTasks: (ids) => plainStore.getMany(ids) }, keys, config) : undefined;
  const metrics = createMetrics({ redis, keys, worker, sweepMs: config.sweepMs });
  const store = instrumentStore(plainStore, metrics);
  // Every process serves the ops routes on PORT: in front of the API, or on a server of their own.
  const health = createHealth({ redis, worker, readBlockMs: config.readBlockMs, reclaimIdleMs: config.reclaimIdleMs, durability: config.durability });
  const opsRoutes = createOpsRoutes({ metrics, health, log, livePage: runsApi });
  // The GraphQL server is loaded only where it runs: a worker-only process starts in a
  // fraction of the time without graphql, yoga and Pothos, which matters when workers restart.
  let server: ApiServer | undefined;
  const createApiServer = async () => {
    const { createServer } = await import('./server.js');
    return createServer(
      config,
      {
        store,
        feed: feed!,
        listTasks: createTaskListing(redis, keys),
        readStats: createStatsReader(redis, keys, config),
      },
      log,
      opsRoutes,
      metrics.registry,
    );
  };
  const opsServer = runsApi ? undefined : createOpsServer(config.port, opsRoutes, log);

  return {
    config,
    keys,
    redis,
    store,
    channels,
    feed,
    worker,
    get server() {
      return server;
    },
    opsServer,
    metrics,
    async start() {
      await redis.connect();
      if (isCluster(redis)) await logClusterLayout(redis, keys, log);
      await loadScripts(redis);
      await checkDurability(redis, config.durability, log);
      await subscriber.connect();
      if (blocking) await Promise.all(blocking.map((connection) => connection.connect()));
      await worker?.start();
      if (runsApi) {
        server = await createApiServer();
        await server.start();
      }
      await opsServer?.start();
    },
    async stop() {
      // Refuse new requests first; a worker still finishes and commits its batch.
      await server?.stop();
      await feed?.stop();
      await opsServer?.stop();
      await worker?.stop();
      for (const connection of [...(blocking ?? []), subscriber, redis]) {
        if (!connection) continue;
        await connection.quit().catch(() => connection.disconnect());
      }
    },
  };
}
