/**
 * Writes that can never happen after their caller gave up. An API write carries a deadline in
 * Redis time, and its script refuses to run past it; the caller answers UNAVAILABLE only once
 * that moment has passed here too. So a write resent by ioredis after a reconnect, or read late
 * from a stalled connection, either ran before the answer went out or never runs (DESIGN.md §9).
 *
 * The deadline needs Redis's clock seen from this process: a lower bound of (Redis ms - local
 * monotonic ms), taken from a Redis time that a reply carried. A time read by Redis before its
 * reply arrived is at most the Redis time at arrival, so the bound holds; using it, the script
 * runs only while this process has not yet reached the end of the caller's budget.
 */
import { type RedisClient, isCluster, redisTimeMs } from '../redis.js';
import { SchedulerError, isConnectionFailure, refusalOf } from './errors.js';
import { type Keys, slotOf } from './keys.js';

/**
 * A bound older than this is taken again before it dates a write: two clocks drift apart
 * (100 ppm is 1 ms in 10 s), and a reconnect may reach another host.
 */
const BOUND_MAX_AGE_MS = 10_000;

/** The pause before a write whose answer was lost is sent again. */
const RESEND_PAUSE_MS = 50;

/** What a write script answers when it ran past its deadline: it wrote nothing. */
export const EXPIRED = 'EXPIRED';

/** A write script's reply: a code, the Redis time it ran at, then what the code says. */
export type WriteReply = [code: string, redisMs: number, ...rest: (string | number)[]];

export interface RedisClock {
  /**
   * Sends a write whose script takes `deadline` (Redis ms) and answers EXPIRED past it. Settles
   * with the reply, or with UNAVAILABLE just after `budgetMs` from the call, never sooner.
   */
  write(budgetMs: number, send: (deadline: number) => Promise<unknown>): Promise<WriteReply>;
}

/** Where a clock's writes run: how to read that server's time, and which server it is now. */
export interface ClockSource {
  time(): Promise<number>;
  /** Changes when the writes may reach another server (a reconnect, a failover). */
  server(): unknown;
}

/**
 * The clock of each partition's writes. One Redis has one clock; on a cluster each master has
 * its own (they are other hosts), so a partition's writes are dated by the clock of the master
 * serving its slot, read through a key of that slot.
 */
export function createPartitionClocks(redis: RedisClient, keys: Keys): (partition: number) => RedisClock {
  if (!isCluster(redis)) {
    const clock = createRedisClock({ time: () => redisTimeMs(redis), server: () => redis.stream });
    return () => clock;
  }
  const clocks = Array.from({ length: keys.partitions }, (_, p) => {
    const key = keys.schedule(p);
    const slot = slotOf(key);
    return createRedisClock({
      time: async () => {
        const [seconds, micros] = (await redis.eval("return redis.call('TIME')", 1, key)) as [string, string];
        return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      },
      server: () => redis.slots[slot]?.[0],
    });
  });
  return (p) => clocks[p]!;
}

export function createRedisClock(source: ClockSource): RedisClock {
  let lowerOffset = -Infinity;
  let observedAt = -Infinity;
  // After a reconnect the server may be another host, with a clock of its own.
  let observedOn: unknown;
  /** Keeps the tightest bound while it is fresh: a reply read late (a busy event loop) gives a looser one. */
  const observe = (redisMs: number) => {
    const now = performance.now();
    const offset = redisMs - now;
    if (offset <= lowerOffset && observedOn === source.server() && now - observedAt <= BOUND_MAX_AGE_MS) return;
    observedAt = now;
    observedOn = source.server();
    lowerOffset = offset;
  };

  /** Sends the write and waits for its reply until the budget is spent (undefined then): past it, it cannot run. */
  const sendWithin = async (start: number, budgetMs: number, send: (deadline: number) => Promise<unknown>): Promise<WriteReply | undefined> => {
    const reply = (async () => {
      if (start - observedAt > BOUND_MAX_AGE_MS || observedOn !== source.server()) observe(await source.time());
      return (await send(Math.floor(start + lowerOffset + budgetMs))) as WriteReply;
    })();
    reply.catch(() => {}); // an answer that comes after the caller was answered is of no use
    const late = timerUntil(start + budgetMs);
    try {
      return await Promise.race([reply, late.done]);
    } finally {
      late.cancel();
    }
  };

  return {
    async write(budgetMs, send) {
      const start = performance.now();
      let cause: unknown;
      // Sent again under the same deadline while its answer is lost: every write script is
      // safe to run twice, so a resend either finds the first one's effect or makes it.
      while (performance.now() < start + budgetMs) {
        try {
          const reply = await sendWithin(start, budgetMs, send);
          if (!reply) break;
          observe(Number(reply[1]));
          if (reply[0] === EXPIRED) break;
          return reply;
        } catch (error) {
          if (refusalOf(error)) throw unavailable(error);
          if (!isConnectionFailure(error)) throw error;
          cause = error;
          const pause = timerUntil(Math.min(performance.now() + RESEND_PAUSE_MS, start + budgetMs));
          await pause.done;
        }
      }
      await timerUntil(start + budgetMs).done;
      throw unavailable(cause);
    },
  };
}

/** Settles once performance.now() is past `at`: timers may fire a little early (Node counts from its cached loop time). */
function timerUntil(at: number): { done: Promise<undefined>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<undefined>((resolve) => {
    const tick = () => {
      if (performance.now() > at) resolve(undefined);
      else timer = setTimeout(tick, Math.max(1, Math.ceil(at + 1 - performance.now())));
    };
    tick();
  });
  return { done, cancel: () => clearTimeout(timer) };
}

function unavailable(cause: unknown): SchedulerError {
  const refusal = refusalOf(cause);
  return new SchedulerError(
    'UNAVAILABLE',
    refusal
      ? 'The task store (Redis) refuses writes (out of memory or read-only). Nothing was written.'
      : 'The task store (Redis) is unreachable. The write either took effect before this answer or never will; retry with an idempotency key to be safe.',
    refusal ? { refusal } : {},
  );
}
