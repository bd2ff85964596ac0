/**
 * Whether Redis refuses this worker's writes (out of memory, read-only, a failed disk): one
 * owner for that state. While it does, the worker claims nothing new (every claim would be
 * refused too, or worse, claim tasks it could not commit), /readyz says why, and the commit
 * in hand is sent again until Redis takes it. Said once as an error, and once when it is over.
 */
import type { Logger } from '../../log.js';
import { refusalOf } from '../errors.js';

export interface RefusalWatch {
  /** The refusal's message while Redis refuses writes, else undefined. */
  readonly current: string | undefined;
  /** Looks at a failed call's error: true when it was a refusal (now the current one). */
  refused(error: unknown): boolean;
  /**
   * A write sent at `sentAt` (performance.now()) went through: Redis accepts writes again,
   * unless the refusal came after it was sent (its answer says nothing of the refusal).
   */
  accepted(sentAt: number): void;
}

export function createRefusalWatch(log: Logger): RefusalWatch {
  let current: string | undefined;
  let refusedAt = -Infinity;
  return {
    get current() {
      return current;
    },
    refused(error) {
      const refusal = refusalOf(error);
      if (!refusal) return false;
      refusedAt = performance.now();
      if (!current) log.error({ refusal }, `Redis refuses writes (${refusal.split(' ')[0]}): claiming stops until it accepts them; the batch in hand is committed then`);
      current = refusal;
      return true;
    },
    accepted(sentAt) {
      if (!current || sentAt < refusedAt) return;
      current = undefined;
      log.info('Redis accepts writes again; firing resumes');
    },
  };
}
