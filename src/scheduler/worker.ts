/**
 * A worker: promotion, firing and recovery together, plus a heartbeat so `stats` can count
 * live workers. Every worker does all three; any number of them share one Redis.
 */
import type { Redis } from 'ioredis';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Keys } from './keys.js';
import type { Channels } from './pubsub.js';
import { createPromoter, type Promoter, type PromoterSettings } from './promoter.js';
import { createFirer, type Firer, type FirerSettings } from './firer.js';
import type { Printer } from './print.js';
import type { Logger } from '../log.js';

export type WorkerSettings = PromoterSettings & FirerSettings;

export interface Worker {
  readonly name: string;
  readonly promoter: Promoter;
  readonly firer: Firer;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function workerName(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export function createWorker(
  connections: { redis: Redis; blocking: Redis; channels: Channels },
  keys: Keys,
  name: string,
  printer: Printer,
  settings: WorkerSettings,
  log: Logger,
): Worker {
  const workerLog = log.child({ worker: name });
  const promoter = createPromoter(connections.redis, connections.channels, keys, settings, workerLog);
  const firer = createFirer(connections.redis, connections.blocking, keys, name, printer, settings, workerLog);
  let heartbeat: NodeJS.Timeout | undefined;
  const beat = () => connections.redis.hset(keys.workers, name, Math.round(promoter.redisNow())).catch(() => {});

  return {
    name,
    promoter,
    firer,
    async start() {
      await firer.start();
      await promoter.start();
      void beat();
      heartbeat = setInterval(beat, settings.sweepMs);
      workerLog.info({ partitions: keys.partitions }, 'worker started');
    },
    async stop() {
      clearInterval(heartbeat);
      await promoter.stop();
      await firer.stop();
      await connections.redis.hdel(keys.workers, name).catch(() => {});
      workerLog.info({ printed: firer.stats.printed, fired: firer.stats.fired }, 'worker stopped');
    },
  };
}
