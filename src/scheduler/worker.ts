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
import { runScript } from './scripts.js';
import type { Logger } from '../log.js';

export type WorkerSettings = PromoterSettings & FirerSettings;

export interface Worker {
  readonly name: string;
  readonly promoter: Promoter;
  readonly firer: Firer;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Workers that beat within the last max(3 sweeps, 3 s), from a liveness hash (HGETALL of
 * keys.liveness(p): name -> "lastBeatMs:aliveSinceMs"). Every worker beats in every
 * partition, so partition 0's hash is enough to count them.
 */
export function countLiveWorkers(beats: Record<string, string>, nowMs: number, sweepMs: number): number {
  const liveSince = nowMs - Math.max(3 * sweepMs, 3000);
  return Object.values(beats).filter((beat) => Number(beat.split(':')[0]) >= liveSince).length;
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
  const firer = createFirer(connections.redis, connections.blocking, keys, name, printer, settings, workerLog);
  const promoter = createPromoter(connections.redis, connections.channels, keys, settings, workerLog, firer.take);
  let heartbeat: NodeJS.Timeout | undefined;
  // Any silence as long as the reclaim idle time must restart "alive since": see heartbeat.lua.
  const gapMs = Math.min(3 * settings.sweepMs, Math.floor(settings.reclaimIdleMs / 2));
  const beat = (leaving = false) => {
    const pipeline = connections.redis.pipeline();
    for (let p = 0; p < keys.partitions; p++) runScript(pipeline, 'heartbeat', [keys.liveness(p)], [name, gapMs, leaving ? 1 : 0]);
    return pipeline.exec().catch(() => {});
  };

  return {
    name,
    promoter,
    firer,
    async start() {
      await beat();
      await firer.start();
      await promoter.start();
      heartbeat = setInterval(() => void beat(), settings.sweepMs);
      workerLog.info({ partitions: keys.partitions }, 'worker started');
    },
    async stop() {
      clearInterval(heartbeat);
      await promoter.stop();
      await firer.stop();
      await beat(true);
      workerLog.info({ printed: firer.stats.printed, fired: firer.stats.fired }, 'worker stopped');
    },
  };
}
