/**
 * The take: when the promoter's timer finds this worker idle, it promotes a partition and
 * claims what came due in one call (take.lua), and the tasks print at once. A busy worker
 * (a batch in hand), a stopping one, or one whose writes Redis refuses answers undefined,
 * for a plain promotion: what comes due then waits in the stream for the first worker free.
 */
import type { Acquirer } from './acquire.js';
import type { BatchFirer } from './batch.js';
import type { PromoteResult } from '../calls/firing.js';
import type { RefusalWatch } from './refusal.js';

/**
 * Promotes a partition and fires what came due in the same call, or answers undefined when
 * it cannot now, for a plain promotion instead. Resolves when Redis answered, with the print
 * of what came due still running.
 */
export type Take = (partition: number, promoteLimit: number) => Promise<{ result: PromoteResult; printed: Promise<void> } | undefined>;

export function createTake(acquirer: Acquirer, firer: BatchFirer, refusal: RefusalWatch, fireBatch: number, idle: () => boolean, onError: (error: unknown) => void): Take {
  return async (partition, promoteLimit) => {
    if (!idle() || refusal.current) return undefined;
    const { result, batch } = await acquirer.take(partition, promoteLimit, fireBatch);
    const printed = firer.fire(batch.acquired, batch.lease).then(
      () => {},
      (error: unknown) => onError(error),
    );
    return { result, printed };
  };
}
