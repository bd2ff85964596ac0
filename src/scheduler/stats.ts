/**
 * A snapshot of the scheduler for dashboards: counts by status where an index gives them
 * cheaply, the backlog of overdue tasks, the age of the oldest one, and the live workers.
 * Everything is read in one round trip (auto-pipelined) and timed by Redis TIME.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';
import { countLiveWorkers } from './worker.js';
import { reachRedis } from './errors.js';
import { redisTimeMs } from '../redis.js';

export interface SchedulerStats {
  /** Redis time of the snapshot, ms. */
  now: number;
  partitions: number;
  /** Tasks waiting in the schedules. */
  scheduled: number;
  /** Tasks due and waiting for a worker (entries not yet delivered). */
  due: number;
  /** Tasks delivered to a worker and not yet committed. */
  firing: number;
  /** Fired events the fired logs still hold (capped at about FIRED_LOG_MAX per partition). */
  firedInLog: number;
  /** Tasks whose time has come and that have not fired yet. */
  backlog: number;
  /** How long the oldest of those has been overdue, ms; null when nothing is. */
  oldestOverdueMs: number | null;
  /** Workers whose heartbeat is recent. */
  workers: number;
}

export interface StatsSettings {
  /** Workers beat once per sweep; three missed beats count a worker as gone. */
  sweepMs: number;
}

export function createStatsReader(redis: Redis, keys: Keys, settings: StatsSettings): () => Promise<SchedulerStats> {
  const partitionList = Array.from({ length: keys.partitions }, (_, p) => p);

  const readPartition = async (p: number, now: number) => {
    const [scheduled, overdue, head, dueLength, pending, oldestEntry, firedInLog] = await Promise.all([
      redis.zcard(keys.schedule(p)),
      redis.zcount(keys.schedule(p), '-inf', now),
      redis.zrange(keys.schedule(p), 0, 0, 'WITHSCORES'),
      redis.xlen(keys.due(p)),
      redis.xpending(keys.due(p), keys.group).catch(() => [0]) as Promise<unknown[]>,
      redis.xrange(keys.due(p), '-', '+', 'COUNT', 1) as Promise<[string, string[]][]>,
      redis.xlen(keys.fired(p)),
    ]);
    const firing = Number(pending[0] ?? 0);
    let oldestDue: number | null = head[1] !== undefined && Number(head[1]) <= now ? Number(head[1]) : null;
    const entry = oldestEntry[0];
    if (entry) {
      const taskId = entry[1][entry[1].indexOf('id') + 1];
      const time = taskId ? await redis.hget(keys.task(p, taskId), 't') : null;
      if (time !== null && (oldestDue === null || Number(time) < oldestDue)) oldestDue = Number(time);
    }
    return { scheduled, overdue, due: Math.max(dueLength - firing, 0), firing, firedInLog, oldestDue };
  };

  return () =>
    reachRedis(async () => {
      const now = await redisTimeMs(redis);
      const [perPartition, beats] = await Promise.all([Promise.all(partitionList.map((p) => readPartition(p, now))), redis.hgetall(keys.liveness(0))]);
      const sum = (pick: (s: (typeof perPartition)[number]) => number) => perPartition.reduce((total, s) => total + pick(s), 0);
      const oldest = perPartition.reduce<number | null>((min, s) => (s.oldestDue !== null && (min === null || s.oldestDue < min) ? s.oldestDue : min), null);
      return {
        now,
        partitions: keys.partitions,
        scheduled: sum((s) => s.scheduled),
        due: sum((s) => s.due),
        firing: sum((s) => s.firing),
        firedInLog: sum((s) => s.firedInLog),
        backlog: sum((s) => s.overdue + s.due + s.firing),
        oldestOverdueMs: oldest === null ? null : Math.max(now - oldest, 0),
        workers: countLiveWorkers(beats, now, settings.sweepMs),
      };
    });
}
