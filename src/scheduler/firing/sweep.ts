/**
 * The sweep: the one recovery path. Every sweepEveryMs it takes the entries pending longer
 * than sweepIdleMs in each partition, whoever holds them (XAUTOCLAIM): this worker's own that
 * a lost answer left behind (a blocking read's, a call's past its resends, a print that
 * failed) and other workers'. They go through the same hold, claim and fire steps as any
 * batch, and claim.lua decides: a task FIRING for a worker that may still be alive is handed
 * back to it, one for a silent worker is taken over, a stale or finished one is dropped.
 */
import type { RedisClient } from '../../redis.js';
import type { Logger } from '../../log.js';
import { type Keys, taskIdsOfEntry } from '../keys.js';
import { entriesFor } from '../calls/firing.js';
import type { Acquirer } from './acquire.js';
import type { BatchFirer, FirerStats } from './batch.js';
import type { RefusalWatch } from './refusal.js';

export interface SweepSettings {
  fireBatch: number;
  sweepIdleMs: number;
}

/** Rounds of XAUTOCLAIM per partition and sweep: a huge backlog of idle entries does not stall one worker. */
const MAX_ROUNDS = 10;

export function createSweep(redis: RedisClient, keys: Keys, worker: string, acquirer: Acquirer, firer: BatchFirer, refusal: RefusalWatch, stats: FirerStats, settings: SweepSettings, log: Logger) {
  const sweepPartition = async (p: number, stopping: () => boolean) => {
    let cursor = '0-0';
    // Entries per round for about fireBatch tasks: full entries at first, then at the tasks per entry seen.
    let count = entriesFor(settings.fireBatch);
    let seenEntries = 0;
    let seenTasks = 0;
    for (let round = 0; round < MAX_ROUNDS && !stopping(); round++) {
      const [next, found] = (await redis.xautoclaim(keys.due(p), keys.group, worker, settings.sweepIdleMs, cursor, 'COUNT', count)) as [
        string,
        [string, string[] | null][],
      ];
      const entries = found.filter(([, fields]) => fields).map(([entry, fields]) => [entry, fields![1]!] as [string, string]);
      seenEntries += entries.length;
      for (const [, value] of entries) seenTasks += taskIdsOfEntry(value).length;
      if (seenTasks > 0) count = Math.min(settings.fireBatch, Math.ceil((settings.fireBatch * seenEntries) / seenTasks));
      const batch = entries.length > 0 ? await acquirer.claim(new Map([[p, entries]])) : null;
      if (batch) {
        const fired = batch.acquired.reduce((sum, { tasks }) => sum + tasks.length, 0);
        stats.reclaimed += fired;
        log.info({ partition: p, entries: entries.length, fired }, 'swept entries left pending past the idle time');
        const { committed } = await firer.fire(batch.acquired, batch.lease);
        await committed;
      }
      cursor = next;
      if (cursor === '0-0') break;
    }
  };

  return async (stopping: () => boolean) => {
    if (refusal.current) return;
    for (let p = 0; p < keys.partitions && !stopping(); p++) await sweepPartition(p, stopping);
  };
}
