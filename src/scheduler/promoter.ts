/**
 * Promotion: moves due tasks from each partition's schedule to its due stream. A timer is
 * aimed at each partition's earliest due time (re-aimed when a wake-up says a new task came
 * first), so a task is promoted within a millisecond or two of its time without polling; a
 * periodic sweep promotes anything overdue all the same, so a lost wake-up costs at most one
 * sweep interval. Redis TIME decides what is due; this process's clock only aims timers, via
 * an offset to Redis time measured on every call, so a skewed clock cannot fire anything early.
 * When the worker's firer is idle, a promotion also claims what came due for it (take.lua),
 * and the firer prints it at once.
 */
import type { RedisClient } from '../redis.js';
import { type Keys, channelsOf } from './keys.js';
import type { Channels } from './pubsub.js';
import { promote as promoteCall } from './calls/firing.js';
import type { Logger } from '../log.js';
import type { PromoteResult, Take } from './firer.js';

export interface PromoterSettings {
  promoteBatch: number;
  /** Most tasks per due entry. */
  dueEntryTasks: number;
  sweepMs: number;
  clockOffsetMs: number;
}

export interface PromoterStats {
  promoted: number;
}

export interface Promoter {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Best estimate of Redis time now, from this process's clock and the measured offset. */
  redisNow(): number;
  readonly stats: PromoterStats;
}

/** Node's setTimeout fires at once past 2^31-1 ms: a farther aim takes more than one timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const OFFSET_SAMPLE_TTL_MS = 10_000;

interface PartitionState {
  timer: NodeJS.Timeout | undefined;
  /** Redis-time target of the timer. */
  target: number;
  running: boolean;
  again: boolean;
}

export function createPromoter(redis: RedisClient, channels: Channels, keys: Keys, settings: PromoterSettings, log: Logger, take?: Take): Promoter {
  const localNow = () => Date.now() + settings.clockOffsetMs;
  let offset = 0;
  let stopped = true;
  let sweepTimer: NodeJS.Timeout | undefined;
  let unlisten: (() => Promise<void>) | undefined;
  let failing = false;
  const stats: PromoterStats = { promoted: 0 };
  const partitions: PartitionState[] = Array.from({ length: keys.partitions }, () => ({
    timer: undefined,
    target: Infinity,
    running: false,
    again: false,
  }));

  /**
   * Aims a partition's timer at a due time. Node may fire a timer up to a millisecond early
   * (it counts from the event loop's cached, whole-millisecond time), and a promotion that
   * reaches Redis early moves nothing and costs a round trip besides the next timer: so a
   * timer that fires early is only set again for what is left.
   */
  const aim = (partition: number, due: number) => {
    const state = partitions[partition]!;
    if (stopped || due < 0 || due >= state.target) return;
    clearTimeout(state.timer);
    state.target = due;
    const fire = () => {
      state.timer = undefined;
      const wait = due - (localNow() + offset);
      if (wait > 0) state.timer = setTimeout(fire, Math.min(Math.max(wait, 1), MAX_TIMER_MS));
      else {
        state.target = Infinity;
        void promote(partition);
      }
    };
    fire();
  };

  /**
   * The offset to Redis time comes from the sample with the shortest round trip (the NTP
   * rule): a reply that waited behind other work would otherwise skew it and aim the next
   * timers late. A newer sample replaces it after OFFSET_SAMPLE_TTL_MS, so a real clock
   * change is followed.
   */
  let bestRoundTrip = Infinity;
  let bestSampledAt = -Infinity;
  const sampleOffset = (redisNow: number, sent: number, received: number) => {
    const roundTrip = received - sent;
    if (roundTrip <= bestRoundTrip || received - bestSampledAt > OFFSET_SAMPLE_TTL_MS) {
      offset = redisNow - (sent + received) / 2;
      bestRoundTrip = roundTrip;
      bestSampledAt = received;
    }
  };

  const promoteOnce = async (partition: number): Promise<PromoteResult> => {
    const sent = localNow();
    const taken = await take?.(partition, settings.promoteBatch);
    let result: PromoteResult;
    if (taken) result = taken.result;
    else {
      result = await promoteCall(redis, keys, partition, settings.promoteBatch, settings.dueEntryTasks);
    }
    sampleOffset(result.now, sent, localNow());
    stats.promoted += result.moved;
    await taken?.printed;
    return result;
  };

  /** Promotes everything due in a partition, then aims its timer at the next due task. */
  const promote = async (partition: number): Promise<void> => {
    const state = partitions[partition]!;
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    try {
      do {
        state.again = false;
        let result = await promoteOnce(partition);
        while (result.moved >= settings.promoteBatch && !stopped) result = await promoteOnce(partition);
        if (failing) {
          failing = false;
          log.info('promotion resumed');
        }
        // Aim just past the due millisecond: a timer that lands early finds nothing to move.
        if (result.nextDue >= 0) aim(partition, Math.max(result.nextDue, result.now + 1));
      } while (state.again && !stopped);
    } catch (error) {
      if (!failing) {
        failing = true;
        log.warn({ err: error }, 'promotion failed; the sweep retries');
      }
    } finally {
      state.running = false;
    }
  };

  const sweep = () => {
    for (let p = 0; p < keys.partitions; p++) void promote(p);
  };

  return {
    stats,
    redisNow: () => localNow() + offset,
    async start() {
      stopped = false;
      unlisten = await channels.listen(channelsOf(keys, keys.wakeChannel), (message) => {
        const [partition, due] = message.split(':').map(Number) as [number, number];
        if (Number.isInteger(partition) && partition >= 0 && partition < keys.partitions) aim(partition, due);
      });
      sweepTimer = setInterval(sweep, settings.sweepMs);
      sweep();
    },
    async stop() {
      stopped = true;
      clearInterval(sweepTimer);
      for (const state of partitions) {
        clearTimeout(state.timer);
        state.timer = undefined;
        state.target = Infinity;
      }
      await unlisten?.();
      // No promotion runs after stop returns.
      while (partitions.some((state) => state.running)) await new Promise((r) => setTimeout(r, 5));
    },
  };
}
