/**
 * Acquiring entries: every path (the blocking read, a grab, a take, the sweep) holds what it
 * works on and claims it through here. Entries known before the call (read, or found by the
 * sweep) are held first and only those claimed; entries a call reads itself (grab, take) are
 * held when its answer comes, and an entry another step of this worker holds is left to it.
 */
import type { Acquired, Entries, FiringCalls } from '../calls/firing.js';
import type { Holdings, Lease } from './holdings.js';
import type { RefusalWatch } from './refusal.js';

export interface AcquiredBatch {
  acquired: Acquired[];
  lease: Lease;
}

/** Whether an acquiring call found anything: then more is likely waiting. */
export function foundAny(acquired: Acquired[]): boolean {
  return acquired.some(({ tasks, dead, dropped, deferred }) => tasks.length + dead.length + dropped + deferred > 0);
}

export function createAcquirer(calls: FiringCalls, holdings: Holdings, refusal: RefusalWatch) {
  /** Runs an acquiring call, telling the refusal watch how Redis took it. */
  const watched = async <T>(call: () => Promise<T>): Promise<T> => {
    const sentAt = performance.now();
    try {
      const result = await call();
      refusal.accepted(sentAt);
      return result;
    } catch (error) {
      refusal.refused(error);
      throw error;
    }
  };

  /** Holds what a call read for itself; what another step holds stays with it. */
  const holdAcquired = (acquired: Acquired[]): AcquiredBatch => ({
    acquired,
    lease: holdings.hold(acquired.flatMap(({ partition, tasks }) => tasks.map((task) => [partition, task.entry] as const))),
  });

  return {
    /** Holds the entries no other step holds and claims them; null when another step holds them all. */
    async claim(entries: Entries): Promise<AcquiredBatch | null> {
      const lease = holdings.hold([...entries].flatMap(([p, list]) => list.map(([entry]) => [p, entry] as const)));
      const mine: Entries = new Map();
      for (const [p, list] of entries) {
        const held = list.filter(([entry]) => lease.has(p, entry));
        if (held.length > 0) mine.set(p, held);
      }
      if (mine.size === 0) return null;
      try {
        return { acquired: await watched(() => calls.claim(mine)), lease };
      } catch (error) {
        lease.release();
        throw error;
      }
    },

    /** Reads and claims unread entries of every partition, about `tasks` tasks each; null when none had any. */
    async grab(partitions: number[], tasks: number): Promise<AcquiredBatch | null> {
      const acquired = await watched(() => calls.grab(partitions, tasks));
      return foundAny(acquired) ? holdAcquired(acquired) : null;
    },

    async take(p: number, promoteLimit: number, fireLimit: number) {
      const { result, acquired } = await watched(() => calls.take(p, promoteLimit, fireLimit));
      return { result, batch: holdAcquired([acquired]) };
    },
  };
}

export type Acquirer = ReturnType<typeof createAcquirer>;
