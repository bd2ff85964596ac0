/**
 * The fired-event feed: every task any worker fires, as a stream a client can resume.
 *
 * Each partition has its own fired log (a capped stream) and complete.lua publishes the
 * same events, a batch per message, each with the log's entry id as `seq`, on the taskFired
 * channel. A cursor is the vector of the last seq seen in every partition, so it stays
 * exact across partitions.
 *
 * Resuming without a gap or a repeat: subscribe to the live channel first (buffering), then
 * read each log's tail T; replay each log from the cursor's position up to T (everything
 * after T reached the buffer, since the subscription was confirmed before T was read), then
 * drain the buffer, dropping any event at or before the position already delivered.
 *
 * Pub/sub delivers at most once: a message published while the subscriber connection is
 * down (a Redis restart, a network cut) is lost. So a live subscription also compares its
 * position with the logs' tails every `catchUpMs` and replays anything the channel missed.
 * A subscriber too slow for the live rate is not cut off either: past `feedBufferMax`
 * buffered events the buffer is dropped and the subscriber reads from the logs, and it
 * fails only if it falls further behind than the logs keep.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';
import type { Channels } from './pubsub.js';
import { SchedulerError, reachRedis } from './errors.js';
import { type FiredEvent, type Task, firedTaskFromJson, parseFiredMessage } from './task.js';

export interface FeedEvent {
  /** Resume with this to receive exactly what fired after this event. */
  cursor: string;
  task: Task;
}

export interface FeedConnections {
  /** Commands: reads the fired logs. */
  redis: Redis;
  channels: Channels;
  /** The connection behind `channels`: a PING on it flushes the messages already sent to it. */
  subscriber: Redis;
}

export interface FeedSettings {
  /** Live events a subscription buffers; past that it drops them and reads the logs instead. */
  feedBufferMax: number;
  /** How often a live subscription checks the logs for events the channel lost. @default 2000 */
  catchUpMs?: number;
}

export interface Feed {
  /**
   * Events fired after `after` (replayed from the fired logs, then live), or from now on.
   * Resolves once the live subscription is confirmed, so nothing fired later is missed.
   * Throws BAD_USER_INPUT for a malformed or expired cursor, UNAVAILABLE without Redis.
   */
  subscribe(after?: string): Promise<AsyncIterableIterator<FeedEvent>>;
}

/** Entries read from a log per XRANGE while replaying. */
const REPLAY_PAGE = 500;
const CURSOR_VERSION = 'f1';
const SEQ_PATTERN = /^\d{1,20}-\d{1,20}$/;

/** Orders stream entry ids: negative when a is before b. */
export function compareSeq(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bMs, bSeq] = b.split('-').map(BigInt) as [bigint, bigint];
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  if (aSeq !== bSeq) return aSeq < bSeq ? -1 : 1;
  return 0;
}

/** The stream id just before seq: a position from which seq is the next event. */
function justBefore(seq: string): string {
  const [ms, counter] = seq.split('-').map(BigInt) as [bigint, bigint];
  if (counter > 0n) return `${ms}-${counter - 1n}`;
  return ms > 0n ? `${ms - 1n}-18446744073709551615` : '0-0';
}

export function encodeCursor(position: readonly string[]): string {
  return `${CURSOR_VERSION}.${Buffer.from(position.join(',')).toString('base64url')}`;
}

const badCursor = (why: string) =>
  new SchedulerError('BAD_USER_INPUT', `The cursor is not valid: ${why}. Use a cursor from a taskFired event, or none.`, { reason: 'BAD_CURSOR' });

/** The per-partition positions a cursor holds; throws BAD_USER_INPUT when it is not one of ours. */
export function decodeCursor(cursor: string, partitions: number): string[] {
  const [version, body, extra] = cursor.split('.');
  // A position takes at most 41 characters, 56 once in base64: anything longer is not ours.
  if (version !== CURSOR_VERSION || body === undefined || extra !== undefined || body.length > partitions * 56 || !/^[A-Za-z0-9_-]+$/.test(body)) {
    throw badCursor('unknown format');
  }
  const position = Buffer.from(body, 'base64url').toString('utf8').split(',');
  if (position.length !== partitions) {
    throw badCursor(`it was made for ${position.length} partitions, this deployment has ${partitions}`);
  }
  if (!position.every((seq) => SEQ_PATTERN.test(seq))) throw badCursor('unknown format');
  return position;
}

type StreamEntry = [id: string, fields: string[]];

const eventOf = (partition: number, [seq, fields]: StreamEntry): FiredEvent => {
  const json = fields[fields.indexOf('e') + 1];
  return { partition, seq, task: firedTaskFromJson(json ?? '{}') };
};

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
  peekAll(): T[] {
    return this.items.slice(this.head);
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

export function createFeed({ redis, channels, subscriber }: FeedConnections, keys: Keys, settings: FeedSettings): Feed {
  const partitionList = Array.from({ length: keys.partitions }, (_, p) => p);

  /** The id of each log's newest entry, or 0-0 when a log is empty. */
  const readTails = () =>
    reachRedis(() =>
      Promise.all(
        partitionList.map(async (p) => {
          const [last] = (await redis.xrevrange(keys.fired(p), '+', '-', 'COUNT', 1)) as StreamEntry[];
          return last ? last[0] : '0-0';
        }),
      ),
    );

  /**
   * Tails for the catch-up rounds, read at most once per half round for every subscription
   * of the process: a hint of where the logs are, so a slightly old one is fine.
   */
  let recentTails: { at: number; tails: Promise<string[]> } | undefined;
  const catchUpMs = settings.catchUpMs ?? 2000;
  const sharedTails = () => {
    if (!recentTails || Date.now() - recentTails.at > catchUpMs / 2) {
      const tails = readTails();
      tails.catch(() => (recentTails = undefined));
      recentTails = { at: Date.now(), tails };
    }
    return recentTails.tails;
  };

  /**
   * True when events after the position were trimmed off a log (it keeps about FIRED_LOG_MAX
   * per partition). Conservative: Redis does not say which ids it trimmed, only that some
   * were and which entry is now first, so a position just before the first entry counts too.
   */
  const lostAfter = async (position: readonly string[]): Promise<boolean> => {
    const infos = await reachRedis(() =>
      Promise.all(
        partitionList.map((p) =>
          redis.xinfo('STREAM', keys.fired(p)).then(
            (reply) => reply as unknown[],
            (error: Error) => {
              if (/no such key/i.test(error.message)) return null;
              throw error;
            },
          ),
        ),
      ),
    );
    return infos.some((info, p) => {
      if (!info) return false;
      const field = (name: string) => info[info.indexOf(name) + 1];
      const first = field('first-entry') as StreamEntry | null;
      return Number(field('entries-added')) > Number(field('length')) && first !== null && compareSeq(position[p]!, first[0]) < 0;
    });
  };

  /** Merges the logs' entries in (position, tails] in seq order, reading a page at a time. */
  async function* replay(position: readonly string[], tails: readonly string[]): AsyncGenerator<FiredEvent> {
    const pending = partitionList.map(() => new Queue<StreamEntry>());
    const from = [...position];
    const exhausted = partitionList.map((p) => compareSeq(from[p]!, tails[p]!) >= 0);
    const refill = async (p: number) => {
      const page = (await reachRedis(() =>
        redis.xrange(keys.fired(p), `(${from[p]}`, tails[p]!, 'COUNT', REPLAY_PAGE),
      )) as StreamEntry[];
      for (const entry of page) pending[p]!.push(entry);
      if (page.length < REPLAY_PAGE) exhausted[p] = true;
      else from[p] = page[page.length - 1]![0];
    };
    for (;;) {
      await Promise.all(partitionList.filter((p) => pending[p]!.length === 0 && !exhausted[p]).map(refill));
      let next: number | undefined;
      let nextSeq = '';
      for (const p of partitionList) {
        const head = pending[p]!.peek();
        if (head && (next === undefined || compareSeq(head[0], nextSeq) < 0)) {
          next = p;
          nextSeq = head[0];
        }
      }
      if (next === undefined) return;
      yield eventOf(next, pending[next]!.shift()!);
    }
  }

  return {
    async subscribe(after) {
      const start = after === undefined ? undefined : decodeCursor(after, keys.partitions);
      const live = new Queue<FiredEvent>();
      let overflowed = false;
      let closed = false;
      let wake: (() => void) | undefined;
      const stopListening = await reachRedis(() =>
        channels.listen(keys.firedChannel, (message) => {
          if (closed) return;
          let events: FiredEvent[];
          try {
            events = parseFiredMessage(message);
          } catch {
            return; // not an event of ours: nothing to deliver
          }
          if (live.length + events.length > settings.feedBufferMax) {
            // Too far behind to buffer: drop the buffer, the logs have every event in it.
            overflowed = true;
            live.clear();
          } else for (const event of events) live.push(event);
          wake?.();
        }),
      );
      let unlistened: Promise<void> | undefined;
      const unlisten = () => (unlistened ??= stopListening());

      let position: string[];
      let tails: string[];
      try {
        tails = await readTails();
        // No event fired past the logs' ends: a cursor beyond one was made up, and would wait
        // silently for events that may never come.
        if (start?.some((seq, p) => compareSeq(seq, tails[p]!) > 0)) throw badCursor('it is past the newest event fired');
        if (start && (await lostAfter(start))) {
          throw new SchedulerError(
            'BAD_USER_INPUT',
            'The cursor is older than the fired log keeps (FIRED_LOG_MAX events per partition): some events after it are gone. Subscribe without after.',
            { reason: 'CURSOR_EXPIRED' },
          );
        }
        // Redis wrote every message published before the tails were read to the subscriber
        // connection already; a PING's answer comes after them, so they are all buffered now.
        else await reachRedis(() => subscriber.ping());
        // A new subscription starts where the logs end, except that every event published
        // after SUBSCRIBE was confirmed is delivered, even one the tails already include.
        position = start ?? [...tails];
        if (!start) {
          for (const event of live.peekAll()) {
            if (position[event.partition] === undefined) continue;
            const before = justBefore(event.seq);
            if (compareSeq(before, position[event.partition]!) < 0) position[event.partition] = before;
          }
        }
      } catch (error) {
        await unlisten();
        throw error;
      }

      const deliver = (event: FiredEvent): FeedEvent => {
        position[event.partition] = event.seq;
        return { cursor: encodeCursor(position), task: event.task };
      };

      let lastCatchUp = Date.now();
      let timer: NodeJS.Timeout | undefined;

      /** Delivers what the logs hold after the position, up to the tails given. */
      async function* catchUp(upTo: readonly string[]): AsyncGenerator<FeedEvent> {
        for await (const event of replay(position, upTo)) {
          if (closed) return;
          yield deliver(event);
        }
      }

      async function* events(): AsyncGenerator<FeedEvent> {
        try {
          yield* catchUp(tails);
          while (!closed) {
            if (overflowed) {
              // Read what the buffer dropped from the logs, unless they no longer have it.
              overflowed = false;
              if (await lostAfter(position)) {
                throw new SchedulerError(
                  'UNAVAILABLE',
                  'This subscription fell further behind than the fired log keeps (FIRED_LOG_MAX events per partition): some events are gone. Subscribe again without after.',
                  { reason: 'SLOW_SUBSCRIBER' },
                );
              }
              yield* catchUp(await readTails());
              continue;
            }
            if (Date.now() - lastCatchUp >= catchUpMs) {
              lastCatchUp = Date.now();
              let latest: string[] | undefined;
              try {
                latest = await sharedTails();
              } catch {
                // Redis unreachable: the next round tries again; live events still flow if they can.
              }
              if (latest) yield* catchUp(latest);
              continue;
            }
            const event = live.shift();
            if (!event) {
              await new Promise<void>((resolve) => {
                wake = resolve;
                timer = setTimeout(resolve, Math.max(catchUpMs - (Date.now() - lastCatchUp), 0));
              });
              clearTimeout(timer);
              wake = undefined;
              continue;
            }
            const seen = position[event.partition];
            if (seen === undefined || compareSeq(event.seq, seen) <= 0) continue;
            yield deliver(event);
          }
        } finally {
          closed = true;
          clearTimeout(timer);
          await unlisten();
        }
      }

      const generator = events();
      const iterator: AsyncIterableIterator<FeedEvent> = {
        next: () => generator.next(),
        async return() {
          // A generator waiting for a live event would hold return() until the next event:
          // wake it, so a client that leaves is released at once.
          closed = true;
          wake?.();
          await generator.return(undefined);
          await unlisten();
          return { done: true, value: undefined };
        },
        async throw(error: unknown) {
          closed = true;
          wake?.();
          await unlisten();
          return generator.throw(error);
        },
        [Symbol.asyncIterator]() {
          return iterator;
        },
      };
      return iterator;
    },
  };
}
