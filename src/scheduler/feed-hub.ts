/**
 * The one live reader of fired events in a process, shared by every subscription on it: one
 * pub/sub listener, and one reader of the fired logs that fills what pub/sub dropped.
 *
 * Gaps are found by sequence, not by time. Each published batch names the log entry before
 * it (`prev`); a batch whose `prev` is not the last event this hub emitted for its partition
 * follows a lost message, and the hub reads the log up to the batch before it emits anything
 * past the gap. A lost message with nothing after it is found by a sweep of the logs' tails,
 * and right after the subscriber connection comes back. So the hub emits every event of a
 * partition once, in the log's order, whatever pub/sub drops; each partition's work runs in
 * order, one step at a time.
 *
 * Each emitted event is one object shared by every live subscription, with the cursor of
 * the hub's position right after it: the GraphQL result of an event can then be computed
 * once per distinct subscription document rather than once per subscriber. Positions are
 * handed out as arrays never changed afterwards, and each event names the one it follows
 * (`before`), so a subscription in step with the hub knows an event is its next one by
 * identity alone, without comparing sequence numbers.
 */
import type { RedisClient } from '../redis.js';
import { type Keys, channelsOf } from './keys.js';
import type { Channels } from './pubsub.js';
import { SchedulerError } from './errors.js';
import { type FiredLog, LogTrimmed, compareSeq } from './fired-log.js';
import { type FiredBatch, type FiredEvent, type Task, parseFiredBatch } from './task.js';
import { encodeCursor } from './feed-cursor.js';

/** An event as the hub emits it to every live subscription. */
export interface HubEvent {
  partition: number;
  seq: string;
  task: Task;
  /** The hub's position right after this event, one entry id per partition; never changed. */
  position: readonly string[];
  /** The position `position()` gave out last before this event, if any: a subscription holding it is in step. */
  before: readonly string[] | undefined;
  /** That position as a cursor. */
  cursor: string;
}

export interface HubListener {
  next(event: HubEvent): void;
  /** The hub fell further behind than the logs keep: the events in between are gone. */
  fail(error: SchedulerError): void;
}

export interface FeedHub {
  /** Starts listening, once; resolves when the hub knows where every log ends. */
  ready(): Promise<void>;
  /** The position after the last event emitted; never changed (the hub moves on to a new array). */
  position(): readonly string[];
  /** Registers a listener for every event emitted from now on; returns its removal. */
  listen(listener: HubListener): () => void;
  /** Listeners registered now. */
  readonly listeners: number;
  stop(): Promise<void>;
}

export interface FeedHubConnections {
  channels: Channels;
  /** The connection behind `channels`: a PING there flushes the messages already sent to it. */
  subscriber: RedisClient;
}

/** Events read from a log per page while filling a gap. */
const FILL_PAGE = 500;

export function createFeedHub({ channels, subscriber }: FeedHubConnections, keys: Keys, firedLog: FiredLog, sweepMs: number): FeedHub {
  const partitionList = Array.from({ length: keys.partitions }, (_, p) => p);
  let at: string[] = [];
  /** `at` as last handed out: replaced, never changed; dropped when `at` moves other than by an event. */
  let current: readonly string[] | undefined;
  const listeners = new Set<HubListener>();
  const steps: Promise<void>[] = partitionList.map(() => Promise.resolve());
  let started: Promise<void> | undefined;
  let stopListening: (() => Promise<void>) | undefined;
  let sweeper: NodeJS.Timeout | undefined;
  let stopped = false;

  const emit = (event: FiredEvent) => {
    at[event.partition] = event.seq;
    const position = [...at];
    const shared: HubEvent = { ...event, position, before: current, cursor: encodeCursor(position) };
    current = position;
    for (const listener of listeners) listener.next(shared);
  };

  /** Runs a partition's step after the ones before it; a failed step is retried by the next sweep. */
  const inOrder = (partition: number, step: () => Promise<void>) => {
    steps[partition] = steps[partition]!.then(step).catch((error: unknown) => {
      if (error instanceof LogTrimmed) lostEvents(partition);
    });
  };

  /** Emits what the log holds after the hub's position, up to `to`. */
  const fill = async (partition: number, to = '+') => {
    for (;;) {
      const page = await firedLog.range(partition, at[partition]!, to, FILL_PAGE);
      for (const event of page) emit(event);
      if (page.length < FILL_PAGE) return;
    }
  };

  /** The log no longer has what this process missed: every live subscription is told, and the hub starts again at the tail. */
  const lostEvents = (partition: number) => {
    const error = new SchedulerError(
      'UNAVAILABLE',
      'This API process fell further behind the fired events than the fired log keeps (FIRED_LOG_MAX per partition): some events are gone. Subscribe again without after.',
      { reason: 'SLOW_SUBSCRIBER' },
    );
    for (const listener of [...listeners]) listener.fail(error);
    inOrder(partition, async () => {
      at[partition] = (await firedLog.tails())[partition]!;
      current = undefined;
    });
  };

  const onBatch = (batch: FiredBatch) =>
    inOrder(batch.partition, async () => {
      const p = batch.partition;
      const last = batch.events[batch.events.length - 1]?.seq;
      if (last === undefined || compareSeq(last, at[p]!) <= 0) return;
      if (batch.prev === undefined || compareSeq(batch.prev, at[p]!) > 0) return fill(p, last);
      for (const event of batch.events) if (compareSeq(event.seq, at[p]!) > 0) emit(event);
    });

  /** Reads every log's tail and fills any partition whose events the channel did not bring. */
  const sweep = async () => {
    let tails: string[];
    try {
      tails = await firedLog.tails();
    } catch {
      return; // Redis unreachable: the next sweep tries again
    }
    for (const p of partitionList) {
      if (compareSeq(tails[p]!, at[p]!) > 0) inOrder(p, async () => (compareSeq(tails[p]!, at[p]!) > 0 ? fill(p, tails[p]) : undefined));
    }
  };

  // Messages published while the subscriber connection was down are lost: look at once.
  const onReconnect = () => {
    if (started && !stopped) void subscriber.ping().then(sweep, () => {});
  };

  const start = async () => {
    const early: FiredBatch[] = [];
    let live = false;
    stopListening = await channels.listen(channelsOf(keys, keys.firedChannel), (message) => {
      let batch: FiredBatch;
      try {
        batch = parseFiredBatch(message);
      } catch {
        return; // not an event of ours
      }
      if (live) onBatch(batch);
      else early.push(batch);
    });
    try {
      at = await firedLog.tails();
      current = undefined;
      // Every message published before the tails were read is on the subscriber connection
      // already: a PING's answer comes after them, so they are all in `early` now.
      await subscriber.ping();
    } catch (error) {
      await stopListening();
      throw error;
    }
    live = true;
    for (const batch of early) onBatch(batch);
    subscriber.on('ready', onReconnect);
    sweeper = setInterval(() => void sweep(), sweepMs);
    sweeper.unref();
  };

  return {
    ready() {
      started ??= start().catch((error: unknown) => {
        started = undefined;
        throw error;
      });
      return started;
    },
    position: () => (current ??= [...at]),
    listen(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    get listeners() {
      return listeners.size;
    },
    async stop() {
      stopped = true;
      clearInterval(sweeper);
      subscriber.off('ready', onReconnect);
      await stopListening?.();
      await Promise.all(steps);
    },
  };
}
