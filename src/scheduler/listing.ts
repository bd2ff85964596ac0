/**
 * Listing tasks by status, ordered by due time (then id), a page at a time with an opaque
 * cursor (the last task's time and id). Each status is read from where it lives:
 *
 * - SCHEDULED: the schedules, sorted sets ordered by (time, id): exact and cheap.
 * - DUE, FIRING: the due streams (their length is the backlog): read whole, filtered.
 * - FIRED: the fired logs (about the last FIRED_LOG_MAX events per partition): read from `from` on.
 * - CANCELLED, DEAD: their indexes, sorted sets by when each task ended, written by the
 *   scripts that end them. These two are listed in that order (endedAt, then id), the order
 *   their index keeps: a scan of every stored task took 1.15 s of the process's time per
 *   listing with 40,000 stored. Entries whose task has expired are dropped as they are met.
 */
import type { RedisClient } from '../redis.js';
import { type Keys, dueEntryValue, taskIdOfMember, taskIdsOfEntry } from './keys.js';
import { SchedulerError, reachRedis } from './errors.js';
import type { Task, TaskStatus } from './task.js';
import { readEvents } from './fired-log.js';
import { readTasks as readTasksOf } from './calls/store.js';
import { defineScripts } from './scripts.js';

export interface ListQuery {
  status: TaskStatus;
  /** Page size. */
  first: number;
  /** Cursor of the last task of the previous page. */
  after?: string | undefined;
  /** Earliest due time, ms, inclusive. */
  from?: number | undefined;
  /** Latest due time, ms, inclusive. */
  to?: number | undefined;
}

export interface TaskPage {
  tasks: { cursor: string; task: Task }[];
  hasNextPage: boolean;
  endCursor: string | null;
}

export const MAX_PAGE_SIZE = 500;
/** Most entries one request examines per partition for the statuses read whole or filtered (all but SCHEDULED). */
export const MAX_CANDIDATES = 10_000;
const PAGE = 500;
/** The largest sequence part of a stream id. */
const MAX_SEQ = '18446744073709551615';

interface Position {
  time: number;
  id: string;
}

const CURSOR_VERSION = 'l1';

const encode = ({ time, id }: Position) => `${CURSOR_VERSION}.${Buffer.from(`${time}:${id}`).toString('base64url')}`;

function decode(cursor: string): Position {
  const [version, body] = cursor.split('.');
  const match = version === CURSOR_VERSION && body && /^[A-Za-z0-9_-]{1,200}$/.test(body) ? /^(-?\d{1,16}):([0-9a-z-]{1,64})$/.exec(Buffer.from(body, 'base64url').toString()) : null;
  if (!match) throw new SchedulerError('BAD_USER_INPUT', 'The cursor is not valid: use endCursor from an earlier page of tasks, or none.', { reason: 'BAD_CURSOR' });
  return { time: Number(match[1]), id: match[2]! };
}

/** Negative when a comes before b in listing order. */
const compare = (a: Position, b: Position) => (a.time !== b.time ? a.time - b.time : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** Whether a status is listed from an index by when its tasks ended. */
const byEnd = (status: TaskStatus) => status === 'CANCELLED' || status === 'DEAD';

/** Where a task sits in the listing of its status: by due time, or by when it ended for CANCELLED and DEAD. */
const positionOf = (status: TaskStatus, task: Task): Position => ({ time: byEnd(status) ? (task.endedAt ?? 0) : task.time, id: task.id });

export function createTaskListing(redis: RedisClient, keys: Keys): (query: ListQuery) => Promise<TaskPage> {
  defineScripts(redis);
  const partitionList = Array.from({ length: keys.partitions }, (_, p) => p);

  /** Up to `want` scheduled ids after `after`, in (time, id) order, from one partition's schedule. */
  const scheduledIds = async (p: number, want: number, after: Position | undefined, from: number, to: number) => {
    const found: Position[] = [];
    const min = Math.max(after?.time ?? -Infinity, from);
    for (let offset = 0; found.length < want; offset += PAGE) {
      const reply = await redis.zrange(keys.schedule(p), Number.isFinite(min) ? min : '-inf', Number.isFinite(to) ? to : '+inf', 'BYSCORE', 'LIMIT', offset, PAGE, 'WITHSCORES');
      for (let i = 0; i < reply.length; i += 2) {
        const position = { id: taskIdOfMember(reply[i]!), time: Number(reply[i + 1]) };
        // Ties on the cursor's time sort by id, as the sorted set does.
        if (!after || compare(position, after) > 0) found.push(position);
      }
      if (reply.length < 2 * PAGE) break;
    }
    return found.slice(0, want);
  };

  const readTasks = async (p: number, ids: string[]) => {
    const tasks = await readTasksOf(redis, keys, p, ids);
    return tasks.filter((task): task is Task => task !== null);
  };

  /** Every task of one partition that might have the status, for the unindexed statuses. */
  const candidates = async (p: number, status: TaskStatus, from: number): Promise<Task[]> => {
    if (status === 'DUE' || status === 'FIRING') {
      const entries = (await redis.xrange(keys.due(p), '-', '+', 'COUNT', MAX_CANDIDATES)) as [string, string[]][];
      const ids = entries.flatMap(([, fields]) => taskIdsOfEntry(dueEntryValue(fields)));
      return readTasks(p, ids.slice(0, MAX_CANDIDATES));
    }
    if (status === 'FIRED') {
      // An event's seq is in the millisecond its batch was committed, at or after its task's
      // time: events from `from` on are those after the last seq of the millisecond before.
      const after = Number.isFinite(from) && from > 0 ? `${from - 1}-${MAX_SEQ}` : '0-0';
      const events = await readEvents(redis, keys.fired(p), p, after, '+', MAX_CANDIDATES);
      return events.map((event) => event.task);
    }
    return [];
  };

  /**
   * Up to `want` tasks of an ended status after `after`, in (endedAt, id) order, from one
   * partition's index: a page of entries at a time, their tasks read, those expired dropped
   * from the index, those outside [from, to] (by due time) skipped; at most MAX_CANDIDATES
   * entries examined.
   */
  const endedTasks = async (p: number, status: TaskStatus, want: number, after: Position | undefined, from: number, to: number): Promise<Task[]> => {
    const index = status === 'CANCELLED' ? keys.cancelled(p) : keys.dead(p);
    const found: Task[] = [];
    // Small pages for small listings: `first: 1` reads a few tasks, not 500.
    const size = Math.min(PAGE, Math.max(want, 16));
    for (let offset = 0, examined = 0; found.length < want && examined < MAX_CANDIDATES; ) {
      const ids = await redis.zrange(index, after ? after.time : '-inf', '+inf', 'BYSCORE', 'LIMIT', offset, size);
      examined += ids.length;
      const tasks = await readTasks(p, ids);
      const present = new Set(tasks.map((task) => task.id));
      const expired = ids.filter((id) => !present.has(id));
      if (expired.length > 0) await redis.zrem(index, ...expired);
      offset += ids.length - expired.length;
      for (const task of tasks) {
        if (task.status === status && task.time >= from && task.time <= to && (!after || compare(positionOf(status, task), after) > 0)) found.push(task);
      }
      if (ids.length < size) break;
    }
    return found.slice(0, want);
  };

  return async (query) => {
    if (!Number.isSafeInteger(query.first) || query.first < 1 || query.first > MAX_PAGE_SIZE) {
      throw new SchedulerError('BAD_USER_INPUT', `first must be from 1 to ${MAX_PAGE_SIZE}.`);
    }
    const after = query.after === undefined ? undefined : decode(query.after);
    const from = query.from ?? -Infinity;
    const to = query.to ?? Infinity;
    const want = query.first + 1;
    const perPartition = await reachRedis(() =>
      Promise.all(
        partitionList.map(async (p): Promise<Task[]> => {
          if (query.status === 'SCHEDULED') {
            const positions = await scheduledIds(p, want, after, from, to);
            // A task may have moved on between the two reads: keep those still scheduled.
            return (await readTasks(p, positions.map((position) => position.id))).filter((task) => task.status === 'SCHEDULED');
          }
          if (byEnd(query.status)) return endedTasks(p, query.status, want, after, from, to);
          const tasks = (await candidates(p, query.status, from)).filter(
            (task) => task.status === query.status && task.time >= from && task.time <= to && (!after || compare(task, after) > 0),
          );
          return tasks.sort(compare).slice(0, want);
        }),
      ),
    );
    const position = (task: Task) => positionOf(query.status, task);
    const merged = perPartition.flat().sort((a, b) => compare(position(a), position(b)));
    const page = merged.slice(0, query.first);
    const last = page[page.length - 1];
    return {
      tasks: page.map((task) => ({ cursor: encode(position(task)), task })),
      hasNextPage: merged.length > query.first,
      endCursor: last ? encode(position(last)) : null,
    };
  };
}
