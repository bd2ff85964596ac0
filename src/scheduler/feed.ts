/**
 * The fired-event feed: every task any worker fires, as a stream a client can resume.
 *
 * Live events come from the process's one hub (feed-hub.ts), shared by every subscription:
 * a subscription from now on costs no Redis command. A subscription with a cursor replays
 * the fired logs from it up to the hub's position at the moment it subscribed, then takes the
 * hub's events, which all come after that position; the same holds for a subscriber too slow
 * for its buffer (`feedBufferMax` events), which drops the buffer and replays what it held.
 * A replay that meets a trimmed log fails (`CURSOR_EXPIRED` for a cursor, `SLOW_SUBSCRIBER`
 * for a slow subscriber) rather than skip.
 *
 * With `ids`, a subscription gets only those tasks' events; one of them that fired before it
 * subscribed is delivered at once from the task's record, so a client that schedules and then
 * subscribes cannot miss its task.
 */
import type { RedisClient } from '../redis.js';
import type { Keys } from './keys.js';
import type { Channels } from './pubsub.js';
import { SchedulerError } from './errors.js';
import { compareSeq, createFiredLog } from './fired-log.js';
import { createFeedHub } from './feed-hub.js';
import { badCursor, decodeCursor, encodeCursor } from './feed-cursor.js';
import { type FeedEvent, type FeedEvents, createSubscription, cursorExpired } from './feed-subscription.js';
import type { Task } from './task.js';

export { compareSeq } from './fired-log.js';
export { decodeCursor, encodeCursor } from './feed-cursor.js';
export type { FeedEvent, FeedEvents, LiveSink } from './feed-subscription.js';

export interface FeedConnections {
  /** Commands: reads the fired logs. */
  redis: RedisClient;
  channels: Channels;
  /** The connection behind `channels`. */
  subscriber: RedisClient;
  /** Reads tasks by id, for watched tasks that fired before the subscription. */
  getTasks(ids: string[]): Promise<(Task | null)[]>;
}

export interface FeedSettings {
  /** Live events a subscription buffers; past that it drops them and reads the logs instead. */
  feedBufferMax: number;
  /** How often the hub checks the logs' tails for a lost last message. @default 1000 */
  catchUpMs?: number;
  /** Most subscriptions open at once on this process; past it, UNAVAILABLE. @default unbounded */
  maxSubscriptions?: number;
}

export interface Feed {
  /**
   * Events fired after `after` (replayed from the fired logs, then live), or from now on;
   * with `ids`, only those tasks'. Throws BAD_USER_INPUT for a malformed, future or expired
   * cursor or too many ids, UNAVAILABLE without Redis.
   */
  subscribe(after?: string, ids?: readonly string[]): Promise<FeedEvents>;
  /** Subscriptions open now. */
  readonly subscriptions: number;
  stop(): Promise<void>;
}

/** Most task ids one subscription may watch. */
export const MAX_WATCHED_IDS = 100;
/** Longest task id: ours are 18-37 characters. */
const MAX_ID_LENGTH = 64;

function checkIds(ids: readonly string[]): void {
  if (ids.length > MAX_WATCHED_IDS) throw new SchedulerError('BAD_USER_INPUT', `At most ${MAX_WATCHED_IDS} ids can be watched by one subscription.`);
  if (ids.some((id) => id.length === 0 || id.length > MAX_ID_LENGTH)) throw new SchedulerError('BAD_USER_INPUT', `A task id has 1 to ${MAX_ID_LENGTH} characters.`);
}

export function createFeed(connections: FeedConnections, keys: Keys, settings: FeedSettings): Feed {
  const firedLog = createFiredLog(connections.redis, keys);
  const hub = createFeedHub(connections, keys, firedLog, settings.catchUpMs ?? 1000);

  /** Where a cursor starts: refused when it is not ours, lies ahead of every log, or its events were trimmed. */
  const startOf = async (after: string): Promise<string[]> => {
    const start = decodeCursor(after, keys.partitions);
    const tails = await firedLog.tails();
    if (start.some((seq, p) => compareSeq(seq, tails[p]!) > 0)) throw badCursor('it is ahead of every event fired so far');
    const lost = await Promise.all(start.map((seq, p) => firedLog.lostAfter(p, seq)));
    if (lost.some(Boolean)) throw cursorExpired();
    return start;
  };

  /** Watched tasks that fired before the subscription, as events at its starting position. */
  const firedBefore = async (ids: readonly string[], position: readonly string[]): Promise<FeedEvent[]> => {
    const tasks = await connections.getTasks([...ids]);
    return tasks.filter((task): task is Task => task?.status === 'FIRED').map((task) => ({ cursor: encodeCursor(position), task }));
  };

  return {
    async subscribe(after, ids) {
      if (ids) checkIds(ids);
      // A subscription accepted while Redis is out of reach would be a false promise.
      if (connections.subscriber.status !== 'ready') throw new SchedulerError('UNAVAILABLE', 'The task store (Redis) is unreachable. Subscribe again shortly.');
      await hub.ready();
      if (hub.listeners >= (settings.maxSubscriptions ?? Infinity)) {
        throw new SchedulerError('UNAVAILABLE', `This process serves ${settings.maxSubscriptions} live subscriptions already (MAX_SUBSCRIPTIONS). Retry shortly, or on another API process.`, {
          reason: 'TOO_MANY_SUBSCRIPTIONS',
        });
      }
      const subscription = createSubscription(hub, firedLog, settings.feedBufferMax, ids ? new Set(ids) : undefined);
      try {
        const start = after === undefined ? undefined : await startOf(after);
        const early = ids && after === undefined ? await firedBefore(ids, subscription.position) : [];
        return subscription.events(start, early);
      } catch (error) {
        subscription.close();
        throw error;
      }
    },
    get subscriptions() {
      return hub.listeners;
    },
    stop: () => hub.stop(),
  };
}
