/**
 * Firing, put together. Its script calls are typed in ../calls/firing.ts (claim, grab, take,
 * complete), beside the store's and the worker's (every script's layout lives in ./calls).
 * The parts, each in ./firing:
 *   holdings.ts  the entries this process has in hand; every path holds before it claims
 *   acquire.ts   hold and claim, for every path; a call whose answer is lost is sent again
 *   batch.ts     print what was claimed, then commit it; a poison message fails alone
 *   committer.ts a commit is sent again until Redis has it
 *   refusal.ts   Redis refusing writes stops claiming and says why
 *   loop.ts      the fire loop: blocking read or grab, claim, print, commit
 *   take.ts      promote and claim in one call when the worker is idle
 *   sweep.ts     the one recovery path: entries left pending past the idle time
 * One rule covers lost answers: a call that acquires entries is sent again under the same
 * call id until it is answered; what it cannot be (Redis gone past the budget) the sweep
 * finds, as it finds everything left pending. Nothing this worker printed is printed again
 * by it: an entry has one holder in this process, and only a commit ends it.
 */
import type { RedisClient } from '../redis.js';
import type { Logger } from '../log.js';
import type { Keys } from './keys.js';
import type { Printer } from './print.js';
import { createPartitionClocks } from './redis-clock.js';
import { firingTimings } from './timings.js';
import { createFiringCalls, type FiringTask } from './calls/firing.js';
import { createHoldings } from './firing/holdings.js';
import { createRefusalWatch } from './firing/refusal.js';
import { createCommitter } from './firing/committer.js';
import { createBatchFirer, type FirerStats } from './firing/batch.js';
import { createAcquirer } from './firing/acquire.js';
import { createFireLoop } from './firing/loop.js';
import { createDueReader } from './firing/reader.js';
import { createTake, type Take } from './firing/take.js';
import { createSweep } from './firing/sweep.js';

export type { FirerStats } from './firing/batch.js';
export type { Take } from './firing/take.js';
export type { PromoteResult } from './calls/firing.js';
export type FiredTask = FiringTask;

export interface FirerSettings {
  fireBatch: number;
  dueEntryTasks: number;
  readBlockMs: number;
  reclaimIdleMs: number;
  sweepMs: number;
  maxDeliveries: number;
  retentionMs: number;
  firedLogMax: number;
}

export interface Firer {
  start(): Promise<void>;
  /** Stops reading, finishes and commits the batch in hand, then leaves the group if nothing is pending. */
  stop(): Promise<void>;
  readonly stats: FirerStats;
  /** Local clock (ms) when the fire loop last began a round; 0 before start. Readiness uses it to spot a stalled loop. */
  readonly lastLoopAt: number;
  /** Why Redis refuses this worker's writes (it claims nothing meanwhile), or undefined. */
  readonly refusal: string | undefined;
  /** Called after each committed batch; the metrics use it. */
  onFired?: (tasks: FiredTask[]) => void;
  /** The promoter's way to promote a partition and fire it in one call when this worker is idle (see take.lua). */
  take: Take;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function createFirer(redis: RedisClient, blocking: RedisClient[], keys: Keys, name: string, printer: Printer, settings: FirerSettings, log: Logger): Firer {
  const timings = firingTimings(settings);
  const stats: FirerStats = { printed: 0, fired: 0, dead: 0, dropped: 0, reclaimed: 0, redelivered: 0, deferred: 0 };
  const calls = createFiringCalls(redis, createPartitionClocks(redis, keys), keys, name, settings, timings);
  const holdings = createHoldings();
  const refusal = createRefusalWatch(log);
  const committer = createCommitter(calls, refusal, timings.commitRetryMs, log);
  const batches = createBatchFirer(printer, calls, committer, stats, log, (tasks) => firer.onFired?.(tasks));
  const acquirer = createAcquirer(calls, holdings, refusal);
  const reader = createDueReader(redis, blocking, keys, name, settings);
  const loop = createFireLoop(reader, keys, acquirer, batches, refusal, settings, log);
  const sweep = createSweep(redis, keys, name, acquirer, batches, refusal, stats, { fireBatch: settings.fireBatch, sweepIdleMs: timings.sweepIdleMs }, log);
  let stopping = false;
  let running: Promise<void> | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  let sweeping: Promise<void> | undefined;

  const ensureGroups = async () => {
    for (let p = 0; p < keys.partitions; p++) {
      await redis.xgroup('CREATE', keys.due(p), keys.group, '0', 'MKSTREAM').catch((error: Error) => {
        if (!/BUSYGROUP/.test(error.message)) throw error;
      });
    }
  };

  const scheduleSweep = () => {
    sweepTimer = setTimeout(() => {
      sweeping = sweep(() => stopping)
        .catch((error: unknown) => {
          if (!refusal.refused(error)) log.warn({ err: error }, 'sweeping for idle entries failed; the next sweep tries again');
        })
        .finally(() => {
          sweeping = undefined;
          if (!stopping) scheduleSweep();
        });
    }, timings.sweepEveryMs);
  };

  /** Leaves the group only with nothing pending: deleting a consumer drops its pending entries. */
  const leaveGroup = async () => {
    try {
      for (let p = 0; p < keys.partitions; p++) {
        const pending = (await redis.xpending(keys.due(p), keys.group, '-', '+', 1, name)) as unknown[];
        if (pending.length === 0) await redis.xgroup('DELCONSUMER', keys.due(p), keys.group, name);
      }
    } catch (error) {
      log.warn({ err: error }, 'could not leave the consumer group; the entry stays until Redis forgets it');
    }
  };

  const firer: Firer = {
    stats,
    take: createTake(acquirer, batches, refusal, settings.fireBatch, () => !loop.busy && !stopping, (error) => log.warn({ err: error }, 'firing what a promotion took failed')),
    get lastLoopAt() {
      return loop.lastLoopAt;
    },
    get refusal() {
      return refusal.current;
    },
    async start() {
      stopping = false;
      await ensureGroups();
      await reader.start();
      running = loop.run(ensureGroups);
      scheduleSweep();
    },
    async stop() {
      stopping = true;
      loop.stop();
      clearTimeout(sweepTimer);
      await reader.stop();
      const finished = await Promise.race([running?.then(() => true), sleep(settings.readBlockMs + 5000).then(() => false)]);
      if (!finished) log.warn('the fire loop did not finish in time; its batch will be swept');
      await sweeping;
      await committer.stop(5000);
      await leaveGroup();
    },
  };
  return firer;
}
