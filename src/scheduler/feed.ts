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
import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';
import type { Channels } from './pubsub.js';
import { SchedulerError } from './errors.js';
import { type FiredLog, LogTrimmed, compareSeq, createFiredLog } from './fired-log.js';
import { type FeedHub, type HubEvent, createFeedHub } from './feed-hub.js';
import { badCursor, decodeCursor, encodeCursor } from './feed-cursor.js';
import type { FiredEvent, Task } from './task.js';

export { compareSeq } from './fired-log.js';
export { decodeCursor, encodeCursor } from './feed-cursor.js';

export interface FeedEvent {
  /** Resume with this to receive exactly what fired after this event. */
  cursor: string;
  task: Task;
}

export interface FeedConnections {
  /** Commands: reads the fired logs. */
  redis: Redis;
  channels: Channels;
  /** The connection behind `channels`. */
  subscriber: Redis;
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
  subscribe(after?: string, ids?: readonly string[]): Promise<AsyncIterableIterator<FeedEvent>>;
  /** Subscriptions open now. */
  readonly subscriptions: number;
  stop(): Promise<void>;
}

/** Most task ids one subscription may watch. */
export const MAX_WATCHED_IDS = 100;
/** Longest task id: ours are 18-37 characters. */
const MAX_ID_LENGTH = 64;
/** Entries read from a log per XRANGE while replaying. */
const REPLAY_PAGE = 500;

/** A first-in first-out queue whose shift is O(1). */
class Queue<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  clear(): void {
    this.items = [];
    this.head = 0;
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

/** Merges the logs' events in (from, to] in seq order, reading a page of each log at a time. */
async function* replay(firedLog: FiredLog, from: readonly string[], to: readonly string[]): AsyncGenerator<FiredEvent> {
  const partitions = from.map((_, p) => p);
  const pending = partitions.map(() => new Queue<FiredEvent>());
  const next = [...from];
  const exhausted = partitions.map((p) => compareSeq(next[p]!, to[p]!) >= 0);
  const refill = async (p: number) => {
    const page = await firedLog.range(p, next[p]!, to[p]!, REPLAY_PAGE);
    for (const event of page) pending[p]!.push(event);
    if (page.length < REPLAY_PAGE) exhausted[p] = true;
    else next[p] = page[page.length - 1]!.seq;
  };
  for (;;) {
    await Promise.all(partitions.filter((p) => pending[p]!.length === 0 && !exhausted[p]).map(refill));
    let earliest: Queue<FiredEvent> | undefined;
    for (const queue of pending) {
      const head = queue.peek();
      if (head && (!earliest || compareSeq(head.seq, earliest.peek()!.seq) < 0)) earliest = queue;
    }
    if (!earliest) return;
    yield earliest.shift()!;
  }
}


const cursorExpired = () =>
  new SchedulerError(
    'BAD_USER_INPUT',
    'The cursor is older than the fired log keeps (FIRED_LOG_MAX events per partition): some events after it are gone. Subscribe without after.',
    { reason: 'CURSOR_EXPIRED' },
  );

const tooSlow = () =>
  new SchedulerError(
    'UNAVAILABLE',
    'This subscription fell further behind than the fired log keeps (FIRED_LOG_MAX events per partition): some events are gone. Subscribe again without after.',
    { reason: 'SLOW_SUBSCRIBER' },
  );

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

interface Subscription {
  /** The hub's position when it subscribed. */
  readonly position: readonly string[];
  /** Its events: replayed from `start` (if any), `early` ones, then the hub's. */
  events(start: string[] | undefined, early: FeedEvent[]): AsyncIterableIterator<FeedEvent>;
  close(): void;
}

/** One subscriber's view of the hub: a bounded buffer of its events, and its position. */
function createSubscription(hub: FeedHub, firedLog: FiredLog, bufferMax: number, watched: Set<string> | undefined): Subscription {
  const buffer = new Queue<HubEvent>();
  let overflowed = false;
  let closed = false;
  let failure: SchedulerError | undefined;
  let wake: (() => void) | undefined;
  const wanted = (task: Task) => !watched || watched.has(task.id);
  // Registered and read in one turn: every event after this position reaches the buffer.
  const stop = hub.listen({
    next(event) {
      if (closed || !wanted(event.task)) return;
      if (buffer.length >= bufferMax) {
        overflowed = true;
        buffer.clear();
      } else buffer.push(event);
      wake?.();
    },
    fail(error) {
      failure = error;
      wake?.();
    },
  });
  let position: readonly string[] = hub.position();
  const subscribedAt = position;
  const delivered = new Set<string>();

  /**
   * Replays (position, to] and moves the position to `to`, or past it where it already was
   * (a cursor from a process whose hub was a little ahead of this one's); `lost` names what a
   * trimmed log means.
   */
  async function* catchUp(to: readonly string[], lost: () => SchedulerError): AsyncGenerator<FeedEvent> {
    const moving = [...position];
    try {
      for await (const event of replay(firedLog, position, to)) {
        if (closed) return;
        moving[event.partition] = event.seq;
        if (wanted(event.task)) yield { cursor: encodeCursor(moving), task: event.task };
      }
    } catch (error) {
      throw error instanceof LogTrimmed ? lost() : error;
    }
    position = to.map((seq, p) => (compareSeq(seq, moving[p]!) > 0 ? seq : moving[p]!));
  }

  /** The event at this subscription's position: the hub's own object when the two positions agree, so its result is shared. */
  const advance = (event: HubEvent): FeedEvent => {
    const inStep = position.every((seq, p) => p === event.partition || seq === event.position[p]);
    if (inStep) {
      position = event.position;
      return event;
    }
    const mine = [...position];
    mine[event.partition] = event.seq;
    position = mine;
    return { cursor: encodeCursor(mine), task: event.task };
  };

  async function* events(start: string[] | undefined, early: FeedEvent[]): AsyncGenerator<FeedEvent> {
    try {
      if (start) {
        const to = position;
        position = start;
        yield* catchUp(to, cursorExpired);
      }
      for (const event of early) {
        delivered.add(event.task.id);
        yield event;
      }
      while (!closed) {
        if (failure) throw failure;
        if (overflowed) {
          // Read what the buffer dropped from the logs, unless they no longer have it.
          overflowed = false;
          yield* catchUp(hub.position(), tooSlow);
          continue;
        }
        const event = buffer.shift();
        if (!event) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          continue;
        }
        if (compareSeq(event.seq, position[event.partition]!) <= 0) continue;
        const next = advance(event);
        if (watched && delivered.has(event.task.id)) continue;
        yield next;
      }
    } finally {
      close();
    }
  }

  const close = () => {
    closed = true;
    stop();
    wake?.();
  };

  return {
    position: subscribedAt,
    events(start, early) {
      const generator = events(start, early);
      const iterator: AsyncIterableIterator<FeedEvent> = {
        next: () => generator.next(),
        async return() {
          // A generator waiting for an event would hold return() until the next one: wake it,
          // so a client that leaves is released at once.
          close();
          await generator.return(undefined);
          return { done: true, value: undefined };
        },
        async throw(error: unknown) {
          close();
          return generator.throw(error);
        },
        [Symbol.asyncIterator]() {
          return iterator;
        },
      };
      return iterator;
    },
    close,
  };
}
