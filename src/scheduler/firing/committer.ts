/**
 * The commit of printed tasks (complete.lua). A printed task must never print again, and only
 * its commit says it fired, so a commit is sent again, whatever the failure (a lost answer, a
 * pipeline cut half way, Redis refusing writes, a reply that makes no sense), until it
 * succeeds or the worker stops. complete.lua is idempotent: a task already FIRED only has its
 * entry acknowledged, and its event is published once.
 */
import type { Logger } from '../../log.js';
import { isConnectionFailure } from '../errors.js';
import type { FiringCalls, FiringTask } from '../calls/firing.js';
import type { RefusalWatch } from './refusal.js';

export interface Committer {
  /** Resolves once Redis has the commit, or the committer was stopped first (then the entries stay pending). */
  commit(batch: Map<number, FiringTask[]>): Promise<boolean>;
  /** Commits in flight finish their current try; none is tried again. Waits up to `waitMs` for them. */
  stop(waitMs: number): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function createCommitter(calls: FiringCalls, refusal: RefusalWatch, retryMs: number, log: Logger): Committer {
  let stopping = false;
  const inFlight = new Set<Promise<boolean>>();
  let failing = false;

  const report = (error: Error) => {
    if (refusal.refused(error) || failing) return;
    failing = true;
    if (isConnectionFailure(error)) log.warn({ err: error }, 'committing a printed batch failed; sending it again');
    else log.error({ err: error }, 'committing a printed batch failed unexpectedly; sending it again');
  };

  const commitUntilDone = async (batch: Map<number, FiringTask[]>): Promise<boolean> => {
    const left = new Map(batch);
    for (;;) {
      const sentAt = performance.now();
      const outcomes = await calls.complete(left);
      for (const [p, outcome] of outcomes) {
        if ('error' in outcome) report(outcome.error);
        else left.delete(p);
      }
      if (left.size === 0) {
        refusal.accepted(sentAt);
        failing = false;
        return true;
      }
      if (stopping) return false;
      await sleep(retryMs);
    }
  };

  return {
    commit(batch) {
      const done = commitUntilDone(batch).finally(() => inFlight.delete(done));
      inFlight.add(done);
      return done;
    },
    async stop(waitMs) {
      const all = Promise.all(inFlight);
      await Promise.race([all, sleep(waitMs)]);
      stopping = true;
      await all;
    },
  };
}
