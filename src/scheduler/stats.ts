/**
 * A snapshot of the scheduler for dashboards: counts by status (the live ones from the
 * indexes, the ended ones as running totals from each partition's totals hash), the backlog
 * of overdue tasks, the age of the oldest one, and the live workers. Read in a few
 * pipelined round trips and timed by Redis TIME.
 */
import type { RedisClient } from '../redis.js';
import { type Keys, dueEntryValue, taskIdsOfEntry } from './keys.js';
import { countLiveWorkers } from './worker.js';
import { compareSeq } from './fired-log.js';
import { reachRedis } from './errors.js';
import { execPerPartition, redisTimeMs } from '../redis.js';

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
  /** Running totals since the data began: tasks that ended FIRED, CANCELLED and DEAD. */
  fired: number;
  cancelled: number;
  dead: number;
}

export interface StatsSettings {
  /** Workers beat once per sweep; three missed beats count a worker as gone. */
  sweepMs: number;
}

/** One partition as Redis holds it right now. */
export interface PartitionState {
  /** Tasks in the schedule. */
  scheduled: number;
  /** Of those, tasks whose time has come (not yet promoted). */
  overdue: number;
  /** Tasks of the due entries no worker has read yet. */
  unread: number;
  /** Tasks of the due entries delivered to a worker and not yet committed (an entry's tasks count until it is acknowledged). */
  pending: number;
  /** Events in the fired log: complete.lua's count (`logged`), else, for a log an earlier version wrote (an event per entry), its length. */
  firedInLog: number;
  /** Running totals of tasks that ended FIRED, CANCELLED and DEAD (the totals hash). */
  totals: { fired: number; cancelled: number; dead: number };
  /** Due time of the earliest task whose time has come and that has not fired, if any. */
  oldestDue: number | undefined;
}

/** The totals hash's count of events in the fired log, or the log's length where a version before that count wrote it. */
function firedInLog(totals: unknown, length: unknown): number {
  const logged = (totals as (string | null)[] | undefined)?.[3];
  return Number(logged ?? length);
}

export interface SchedulerState {
  /** Redis time of the reading, ms. */
  now: number;
  partitions: PartitionState[];
  /** The liveness hash every worker beats in (partition 0's). */
  beats: Record<string, string>;
}

/** The consumer group's view of a due stream (XINFO GROUPS), or nothing before any worker read it. */
function groupInfo(reply: unknown, group: string): { lastDelivered: string; lag: number | null } | undefined {
  for (const flat of (reply as unknown[][] | undefined) ?? []) {
    const info: Record<string, unknown> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) info[String(flat[i])] = flat[i + 1];
    if (info.name === group) return { lastDelivered: String(info['last-delivered-id']), lag: info.lag === null ? null : Number(info.lag) };
  }
  return undefined;
}

function totalsFrom(reply: unknown): PartitionState['totals'] {
  const [fired, cancelled, dead] = (reply as (string | null)[] | undefined) ?? [];
  return { fired: Number(fired ?? 0), cancelled: Number(cancelled ?? 0), dead: Number(dead ?? 0) };
}

/** Due entries read per partition to count their tasks; past them, tasks are counted at the mean of those read. */
const COUNTED_ENTRIES = 200;

/**
 * Counts in tasks the unread and pending entries of a due stream (an entry names one task or
 * more), from its unfinished entries as read (`entries`, from the oldest pending one on), the
 * ids of its pending ones and the group's last delivered id. Each answers, from the count of
 * entries, the count of tasks: those read exactly, the rest at the mean of those read.
 */
function taskCounts(entries: [string, string[]][], pendingIds: [string][], lastDelivered: string | undefined) {
  const pending = new Set(pendingIds.map(([id]) => id));
  const tally = { unread: { read: 0, named: 0 }, pending: { read: 0, named: 0 } };
  for (const [id, fields] of entries) {
    const kind = lastDelivered === undefined || compareSeq(id, lastDelivered) > 0 ? 'unread' : pending.has(id) ? 'pending' : undefined;
    if (!kind) continue;
    tally[kind].read += 1;
    tally[kind].named += taskIdsOfEntry(dueEntryValue(fields)).length;
  }
  // Of `all` entries: with none read, one task each; with all read, the tasks they named; else those, and the rest at their mean.
  const tasks =
    ({ read, named }: { read: number; named: number }) =>
    (all: number) => {
      if (read === 0) return all;
      if (read >= all) return named;
      return named + Math.round(((all - read) * named) / read);
    };
  return { unread: tasks(tally.unread), pending: tasks(tally.pending) };
}

/**
 * Reads every partition's state in four pipelined round trips: Redis time, the indexes,
 * each partition's oldest unfinished entry, and its task's due time. The stats query and
 * the metrics gauges both come from here.
 *
 * A due stream also holds entries already acknowledged (complete.lua trims them behind the
 * oldest pending one), so its length is not the backlog: unread entries are the group's
 * lag, and the oldest unfinished entry is the oldest pending one, else the first unread.
 */
export async function readSchedulerState(redis: RedisClient, keys: Keys): Promise<SchedulerState> {
  const now = await redisTimeMs(redis);
  const all = Array.from({ length: keys.partitions }, (_, p) => p);
  const [replies, beats] = await Promise.all([
    execPerPartition(redis, all, (pipeline, p) => {
      pipeline
      .zcard(keys.schedule(p))
      .zcount(keys.schedule(p), '-inf', now)
      .zrange(keys.schedule(p), 0, 0, 'WITHSCORES')
      .xlen(keys.due(p))
      .xpending(keys.due(p), keys.group)
      .xinfo('GROUPS', keys.due(p))
      .xlen(keys.fired(p))
      .hmget(keys.totals(p), 'fired', 'cancelled', 'dead', 'logged');
    }),
    redis.hgetall(keys.liveness(0)),
  ]);
  const reply = (i: number): unknown => {
    const [error, value] = replies[i] ?? [new Error('no reply')];
    // A partition no worker has read yet has no group (nor, maybe, a stream): nothing is pending.
    if (error && /NOGROUP|no such key/.test(error.message)) return [];
    if (error) throw error;
    return value;
  };
  const PER_PARTITION = 8;
  const partitions: PartitionState[] = [];
  const oldestFrom: string[] = [];
  const lastDelivered: (string | undefined)[] = [];
  for (let p = 0; p < keys.partitions; p++) {
    const base = PER_PARTITION * p;
    const head = reply(base + 2) as string[];
    const length = Number(reply(base + 3));
    const [pending, smallestPending] = reply(base + 4) as [number?, string?];
    const group = groupInfo(reply(base + 5), keys.group);
    const pendingCount = Number(pending ?? 0);
    partitions.push({
      scheduled: Number(reply(base)),
      overdue: Number(reply(base + 1)),
      // Without a group nobody read anything; an unknown lag (rare) is bounded by the length.
      unread: group ? (group.lag ?? Math.max(length - pendingCount, 0)) : length,
      pending: pendingCount,
      firedInLog: firedInLog(reply(base + 7), reply(base + 6)),
      totals: totalsFrom(reply(base + 7)),
      oldestDue: head[1] !== undefined && Number(head[1]) <= now ? Number(head[1]) : undefined,
    });
    oldestFrom.push(smallestPending ?? (group ? `(${group.lastDelivered}` : '-'));
    lastDelivered.push(group?.lastDelivered);
  }
  // The unfinished entries, from the oldest, and which of them are pending: their tasks are counted.
  const unfinished = await execPerPartition(redis, all, (pipeline, p) => {
    pipeline.xrange(keys.due(p), oldestFrom[p]!, '+', 'COUNT', COUNTED_ENTRIES).xpending(keys.due(p), keys.group, '-', '+', COUNTED_ENTRIES);
  });
  const oldestEntries = all.map((p) => {
    const [, range] = unfinished[2 * p] ?? [];
    const [, pendingList] = unfinished[2 * p + 1] ?? [];
    const entries = (range as [string, string[]][] | undefined) ?? [];
    const counts = taskCounts(entries, (pendingList as [string][] | undefined) ?? [], lastDelivered[p]);
    const state = partitions[p]!;
    state.unread = counts.unread(state.unread);
    state.pending = counts.pending(state.pending);
    // An entry names its tasks in due order: its first is its oldest.
    return taskIdsOfEntry(dueEntryValue(entries[0]?.[1] ?? []))[0];
  });
  // An entry in a due stream is a task whose time has come; its due time may be older than the schedule's head.
  const withEntry = oldestEntries.flatMap((id, p) => (id ? [[p, id] as const] : []));
  if (withEntry.length > 0) {
    const timeReplies = await execPerPartition(
      redis,
      withEntry.map(([p]) => p),
      (pipeline, p) => void pipeline.hget(keys.task(p, oldestEntries[p]!), 't'),
    );
    withEntry.forEach(([p], i) => {
      const time = timeReplies[i]?.[1];
      const state = partitions[p]!;
      if (typeof time === 'string' && (state.oldestDue === undefined || Number(time) < state.oldestDue)) state.oldestDue = Number(time);
    });
  }
  return { now, partitions, beats };
}

export function createStatsReader(redis: RedisClient, keys: Keys, settings: StatsSettings): () => Promise<SchedulerStats> {
  return () =>
    reachRedis(async () => {
      const { now, partitions, beats } = await readSchedulerState(redis, keys);
      const sum = (pick: (s: PartitionState) => number) => partitions.reduce((total, s) => total + pick(s), 0);
      const oldest = Math.min(...partitions.map((s) => s.oldestDue ?? Infinity));
      return {
        now,
        partitions: keys.partitions,
        scheduled: sum((s) => s.scheduled),
        due: sum((s) => s.unread),
        firing: sum((s) => s.pending),
        firedInLog: sum((s) => s.firedInLog),
        backlog: sum((s) => s.overdue + s.unread + s.pending),
        oldestOverdueMs: oldest === Infinity ? null : Math.max(now - oldest, 0),
        workers: countLiveWorkers(beats, now, settings.sweepMs),
        fired: sum((s) => s.totals.fired),
        cancelled: sum((s) => s.totals.cancelled),
        dead: sum((s) => s.totals.dead),
      };
    });
}
