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

/** Refusals that a script meets before its first write, so nothing was written (OOM, a read-only replica, a lost connection). */
const REFUSED_BEFORE_WRITING = /^(OOM|READONLY)|Command aborted/;

/** A write script's reply: a code, the Redis time it ran at, then what the code says. */
export type WriteReply = [code: string, redisMs: number, ...rest: (string | number)[]];

export interface RedisClock {
  /**
   * Sends a write whose script takes `deadline` (Redis ms) and answers EXPIRED past it. Settles
   * with the reply, or with UNAVAILABLE no sooner than `budgetMs` after the call.
   */
  write(budgetMs: number, send: (deadline: number) => Promise<unknown>): Promise<WriteReply>;
}

export function createRedisClock(redis: Redis): RedisClock {
  let lowerOffset = 0;
  let observedAt = -Infinity;
  const observe = (redisMs: number) => {
    observedAt = performance.now();
    lowerOffset = redisMs - observedAt;
  };
  // After a reconnect the server may be another host, with a clock of its own.
  redis.on('close', () => (observedAt = -Infinity));

  return {
    async write(budgetMs, send) {
      const start = performance.now();
      let cause: unknown;
      try {
        if (start - observedAt > BOUND_MAX_AGE_MS) observe(await redisTimeMs(redis));
        const reply = (await send(Math.floor(start + lowerOffset + budgetMs))) as WriteReply;
        observe(Number(reply[1]));
        if (reply[0] !== EXPIRED) return reply;
      } catch (error) {
        if (!isConnectionFailure(error) && !(error instanceof Error && REFUSED_BEFORE_WRITING.test(error.message))) throw error;
        cause = error;
      }
      // Timers may fire a little early (Node counts from its cached loop time): wait by the clock.
      while (performance.now() <= start + budgetMs) await sleep(start + budgetMs + 1 - performance.now());
      throw unavailable(cause);
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(ms))));

function unavailable(cause: unknown): SchedulerError {
  const refused = cause instanceof Error && /^(OOM|READONLY)/.test(cause.message);
  return new SchedulerError(
    'UNAVAILABLE',
    refused
      ? 'The task store (Redis) refuses writes (out of memory or read-only). Nothing was written.'
      : 'The task store (Redis) is unreachable. The write either took effect before this answer or never will; retry with an idempotency key to be safe.',
  );
}
