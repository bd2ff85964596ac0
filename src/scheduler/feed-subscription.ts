/**
 * One subscriber's view of the process's feed hub: its position in every partition's log, a
 * bounded buffer of the hub's events, and the replays that fill what the buffer dropped.
 *
 * Events leave it one of two ways. Through `next()`, the async iterator GraphQL consumes, one
 * event per call. Or, once a `LiveSink` is attached and the subscription has nothing pending,
 * straight from the hub's emit into the sink, in the same turn: a process with thousands of
 * subscribers then pays no promise, generator step or buffer per subscriber and event. A sink
 * that declines an event (its socket is backed up, or the event needs the full path) sends it
 * and what follows back through the buffer and `next()`, in order, until the subscription has
 * caught up again.
 */
import { SchedulerError } from './errors.js';
import { type FiredLog, LogTrimmed, compareSeq } from './fired-log.js';
import type { FeedHub, HubEvent } from './feed-hub.js';
import { encodeCursor } from './feed-cursor.js';
import type { FiredEvent, Task } from './task.js';

export interface FeedEvent {
  /** Resume with this to receive exactly what fired after this event. */
  cursor: string;
  task: Task;
}

/** Takes live events as the hub emits them, while its subscription is caught up. */
export interface LiveSink {
  /** Delivers the event now and returns true, or returns false to have it (and what follows) delivered through `next()`. */
  offer(event: FeedEvent): boolean;
}

/** A subscription's events: an async iterator, which may also hand its live events to a sink. */
export interface FeedEvents extends AsyncIterableIterator<FeedEvent> {
  /** From now on, live events go to `sink` whenever nothing is pending before them. */
  pushTo?(sink: LiveSink): void;
}

/** Events read from a log per page while replaying. */
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

export const cursorExpired = () =>
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

export interface Subscription {
  /** The hub's position when it subscribed. */
  readonly position: readonly string[];
  /** Its events: replayed from `start` (if any), `early` ones, then the hub's. */
  events(start: string[] | undefined, early: FeedEvent[]): FeedEvents;
  close(): void;
}

/** A subscription to `hub`; with `watched`, to those tasks' events only. */
export function createSubscription(hub: FeedHub, firedLog: FiredLog, bufferMax: number, watched: Set<string> | undefined): Subscription {
  const buffer = new Queue<HubEvent>();
  let overflowed = false;
  let closed = false;
  let failure: SchedulerError | undefined;
  let wake: (() => void) | undefined;
  let sink: LiveSink | undefined;
  /** Live events go to the sink: set only while nothing is pending (buffer empty, `next()` waiting). */
  let pushing = false;
  const wanted = (task: Task) => !watched || watched.has(task.id);
  const delivered = new Set<string>();

  /** Hands a live event to the sink; false when it declined, with the position unchanged. */
  const push = (event: HubEvent): boolean => {
    if (position === event.before) {
      // In step with the hub: the event is the next one, and its object is shared.
      if (!sink!.offer(event)) return false;
      position = event.position;
      return true;
    }
    if (compareSeq(event.seq, position[event.partition]!) <= 0) return true;
    const before = position;
    const next = advance(event);
    if (watched && delivered.has(event.task.id)) return true;
    if (sink!.offer(next)) return true;
    position = before;
    return false;
  };

  // Registered and read in one turn: every event after this position reaches the buffer.
  const stop = hub.listen({
    next(event) {
      if (closed || !wanted(event.task)) return;
      if (pushing) {
        if (push(event)) return;
        pushing = false;
      }
      if (buffer.length >= bufferMax) {
        overflowed = true;
        buffer.clear();
      } else buffer.push(event);
      wake?.();
    },
    fail(error) {
      failure = error;
      pushing = false;
      wake?.();
    },
  });
  let position: readonly string[] = hub.position();
  const subscribedAt = position;

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
    const inStep = position === event.before || position.every((seq, p) => p === event.partition || seq === event.position[p]);
    if (inStep) {
      position = event.position;
      return event;
    }
    const mine = [...position];
    mine[event.partition] = event.seq;
    position = mine;
    return { cursor: encodeCursor(mine), task: event.task };
  };

  /** Waits for the hub, handing its events to the sink meanwhile if there is one. */
  const waitForHub = async () => {
    pushing = sink !== undefined;
    await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
    pushing = false;
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
          await waitForHub();
          continue;
        }
        if (position !== event.before && compareSeq(event.seq, position[event.partition]!) <= 0) continue;
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
    pushing = false;
    stop();
    wake?.();
  };

  return {
    position: subscribedAt,
    events(start, early) {
      const generator = events(start, early);
      const iterator: FeedEvents = {
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
        pushTo(liveSink) {
          sink = liveSink;
          // Already waiting with nothing pending: push from the next event on.
          if (wake && buffer.length === 0 && !overflowed && !failure && !closed) pushing = true;
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
