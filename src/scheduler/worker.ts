/**
 * A worker: promotion, firing and recovery together, plus a heartbeat so `stats` can count
 * live workers. Every worker does all three; any number of them share one Redis.
 */
import { type RedisClient, execPerPartition } from '../redis.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Keys } from './keys.js';
import type { Channels } from './pubsub.js';
import { createPromoter, type Promoter, type PromoterSettings } from './promoter.js';
import { createFirer, type Firer, type FirerSettings } from './firer.js';
import type { Printer } from './print.js';
import { heartbeat as beatCall, leaseName } from './calls/worker.js';
import type { Logger } from '../log.js';
import { firingTimings } from './timings.js';

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

/** Another live process runs as this worker (lease.lua): two would claim each other's entries as their own. */
export class WorkerNameTaken extends Error {
  constructor(
    readonly workerName: string,
    readonly holder: string,
  ) {
    super(`WORKER_NAME "${workerName}" is in use by another live process (${holder}); give each process its own name, or leave WORKER_NAME unset`);
    this.name = 'WorkerNameTaken';
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function createWorker(
  connections: { redis: RedisClient; blocking: RedisClient[]; channels: Channels },
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
  const timings = firingTimings(settings);
  const beat = (leaving = false) => {
    const all = Array.from({ length: keys.partitions }, (_, p) => p);
    return execPerPartition(connections.redis, all, (pipeline, p) => void beatCall(pipeline, keys, p, name, timings.heartbeatGapMs, leaving)).catch(() => {});
  };

  // The name is this process's while it holds the name's lease, renewed with every beat.
  const token = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const lease = (ms: number) => leaseName(connections.redis, keys, name, token, ms);
  let leaseLost = false;
  const renewLease = () =>
    lease(timings.nameLeaseMs).then(
      (holder) => {
        if (holder !== '' && !leaseLost) workerLog.error({ holder }, 'another process holds this worker name: two processes fire as one worker');
        leaseLost = holder !== '';
      },
      () => {},
    );
  /** Takes the name, waiting out the lease of a holder that crashed (it renews no more); refuses one that is alive. */
  const takeName = async () => {
    const deadline = Date.now() + timings.nameLeaseMs + settings.sweepMs;
    for (;;) {
      const holder = await lease(timings.nameLeaseMs);
      if (holder === '') return;
      if (Date.now() > deadline) throw new WorkerNameTaken(name, holder);
      await sleep(Math.min(200, settings.sweepMs));
    }
  };

  return {
    name,
    promoter,
    firer,
    async start() {
      await takeName();
      await beat();
      await firer.start();
      await promoter.start();
      heartbeat = setInterval(() => {
        void beat();
        void renewLease();
      }, settings.sweepMs);
      workerLog.info({ partitions: keys.partitions }, 'worker started');
    },
    async stop() {
      clearInterval(heartbeat);
      await promoter.stop();
      await firer.stop();
      await beat(true);
      // Last: the name is free only once this worker left the group with nothing pending.
      await lease(0).catch(() => {});
      workerLog.info({ printed: firer.stats.printed, fired: firer.stats.fired }, 'worker stopped');
    },
  };
}
