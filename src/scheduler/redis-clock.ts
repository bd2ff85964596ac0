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
import type { Redis } from 'ioredis';
import { redisTimeMs } from '../redis.js';
import { SchedulerError, isConnectionFailure } from './errors.js';

/**
 * A bound older than this is taken again before it dates a write: two clocks drift apart
 * (100 ppm is 1 ms in 10 s), and a reconnect may reach another host.
 */
const BOUND_MAX_AGE_MS = 10_000;

/** What a write script answers when it ran past its deadline: it wrote nothing. */
export const EXPIRED = 'EXPIRED';

/** Refusals a write script meets at its first write (Redis full, or a read-only replica): it wrote nothing. */
const REFUSED = /^(OOM|READONLY)/;

/** Failures after which the write may or may not have run: a lost connection, or a pipeline cut short. */
const isUnsure = (error: unknown) => isConnectionFailure(error) || (error instanceof Error && /Command aborted/.test(error.message));

/** A write script's reply: a code, the Redis time it ran at, then what the code says. */
export type WriteReply = [code: string, redisMs: number, ...rest: (string | number)[]];

export interface RedisClock {
  /**
   * Sends a write whose script takes `deadline` (Redis ms) and answers EXPIRED past it. Settles
   * with the reply, or with UNAVAILABLE just after `budgetMs` from the call, never sooner.
   */
  write(budgetMs: number, send: (deadline: number) => Promise<unknown>): Promise<WriteReply>;
}

export function createRedisClock(redis: Redis): RedisClock {
  let lowerOffset = 0;
  let observedAt = -Infinity;
  // After a reconnect the server may be another host, with a clock of its own.
  let observedOn: unknown;
  const observe = (redisMs: number) => {
    observedAt = performance.now();
    observedOn = redis.stream;
    lowerOffset = redisMs - observedAt;
  };

  /** Sends the write and waits for its reply until the budget is spent (undefined then): past it, it cannot run. */
  const sendWithin = async (start: number, budgetMs: number, send: (deadline: number) => Promise<unknown>): Promise<WriteReply | undefined> => {
    const reply = (async () => {
      if (start - observedAt > BOUND_MAX_AGE_MS || observedOn !== redis.stream) observe(await redisTimeMs(redis));
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
      try {
        const reply = await sendWithin(start, budgetMs, send);
        if (reply) {
          observe(Number(reply[1]));
          if (reply[0] !== EXPIRED) return reply;
        }
      } catch (error) {
        if (error instanceof Error && REFUSED.test(error.message)) throw unavailable(error);
        if (!isUnsure(error)) throw error;
        cause = error;
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
  const refused = cause instanceof Error && REFUSED.test(cause.message);
  return new SchedulerError(
    'UNAVAILABLE',
    refused
      ? 'The task store (Redis) refuses writes (out of memory or read-only). Nothing was written.'
      : 'The task store (Redis) is unreachable. The write either took effect before this answer or never will; retry with an idempotency key to be safe.',
  );
}
