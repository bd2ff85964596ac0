/**
 * Listing tasks by status, ordered by due time (then id), a page at a time with an opaque
 * cursor (the last task's time and id). Each status is read from where it lives:
 *
 * - SCHEDULED: the schedules, sorted sets ordered by (time, id): exact and cheap.
 * - DUE, FIRING: the due streams (their length is the backlog): read whole, filtered.
 * - FIRED: the fired logs (the last FIRED_LOG_MAX per partition): read from `from` on.
 * - CANCELLED, DEAD: no index yet, so the task keys are SCANned: cost grows with the
 *   number of tasks stored. Bounded by MAX_CANDIDATES per partition and request.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';
import { SchedulerError, reachRedis } from './errors.js';
import { type Task, type TaskStatus, firedTaskFromJson, taskFromBufferHash } from './task.js';

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
/** Most entries or keys one request examines per partition for the unindexed statuses. */
export const MAX_CANDIDATES = 10_000;
const PAGE = 500;

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

export function createTaskListing(redis: Redis, keys: Keys): (query: ListQuery) => Promise<TaskPage> {
  const partitionList = Array.from({ length: keys.partitions }, (_, p) => p);

  /** Up to `want` scheduled ids after `after`, in (time, id) order, from one partition's schedule. */
  const scheduledIds = async (p: number, want: number, after: Position | undefined, from: number, to: number) => {
    const found: Position[] = [];
    const min = Math.max(after?.time ?? -Infinity, from);
    for (let offset = 0; found.length < want; offset += PAGE) {
      const reply = await redis.zrange(keys.schedule(p), Number.isFinite(min) ? min : '-inf', Number.isFinite(to) ? to : '+inf', 'BYSCORE', 'LIMIT', offset, PAGE, 'WITHSCORES');
      for (let i = 0; i < reply.length; i += 2) {
        const position = { id: reply[i]!, time: Number(reply[i + 1]) };
        // Ties on the cursor's time sort by id, as the sorted set does.
        if (!after || compare(position, after) > 0) found.push(position);
      }
      if (reply.length < 2 * PAGE) break;
    }
    return found.slice(0, want);
  };

  const readTasks = async (p: number, ids: string[]) => {
    const hashes = await Promise.all(ids.map((id) => redis.hgetallBuffer(keys.task(p, id))));
    return hashes.map((hash, i) => taskFromBufferHash(ids[i]!, hash)).filter((task): task is Task => task !== null);
  };

  /** Every task of one partition that might have the status, for the unindexed statuses. */
  const candidates = async (p: number, status: TaskStatus, from: number): Promise<Task[]> => {
    if (status === 'DUE' || status === 'FIRING') {
      const entries = (await redis.xrange(keys.due(p), '-', '+', 'COUNT', MAX_CANDIDATES)) as [string, string[]][];
      return readTasks(p, entries.map(([, fields]) => fields[fields.indexOf('id') + 1]!).filter(Boolean));
    }
    if (status === 'FIRED') {
      // An entry is appended when its task fires, which is at or after its time.
      const start = Number.isFinite(from) ? `${Math.max(from, 0)}-0` : '-';
      const entries = (await redis.xrange(keys.fired(p), start, '+', 'COUNT', MAX_CANDIDATES)) as [string, string[]][];
      return entries.map(([, fields]) => firedTaskFromJson(fields[fields.indexOf('e') + 1] ?? '{}'));
    }
    const ids: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${keys.taskPrefix(p).replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 1000);
      cursor = next;
      for (const key of found) ids.push(key.slice(keys.taskPrefix(p).length));
    } while (cursor !== '0' && ids.length < MAX_CANDIDATES);
    return readTasks(p, ids);
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
          const tasks = (await candidates(p, query.status, from)).filter(
            (task) => task.status === query.status && task.time >= from && task.time <= to && (!after || compare(task, after) > 0),
          );
          return tasks.sort(compare).slice(0, want);
        }),
      ),
    );
    const merged = perPartition.flat().sort(compare);
    const page = merged.slice(0, query.first);
    const last = page[page.length - 1];
    return {
      tasks: page.map((task) => ({ cursor: encode(task), task })),
      hasNextPage: merged.length > query.first,
      endCursor: last ? encode(last) : null,
    };
  };
}
