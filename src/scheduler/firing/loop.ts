/**
 * The fire loop: read a batch of due entries (a blocking read over every partition, reader.ts),
 * claim it, print it, commit it. The next batch is read and claimed while one prints, and a
 * batch commits while the next prints: Redis works on one while this process works on the
 * other. While a backlog lasts (the last step found entries), the next batch is read and
 * claimed in one call per partition (a grab), sent as soon as a batch arrives.
 *
 * A read whose answer is lost leaves its entries pending for this worker; the sweep finds
 * them. A claim whose answer is lost is sent again (acquire.ts). So the loop itself has no
 * recovery: an error is reported, and the loop goes on.
 */
import type { Logger } from '../../log.js';
import type { Keys } from '../keys.js';
import { isConnectionFailure } from '../errors.js';
import type { Acquirer, AcquiredBatch } from './acquire.js';
import type { BatchFirer } from './batch.js';
import type { DueReader } from './reader.js';
import type { RefusalWatch } from './refusal.js';

export interface LoopSettings {
  fireBatch: number;
  readBlockMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Outcome = { batch: AcquiredBatch | null } | { error: unknown };

export function createFireLoop(reader: DueReader, keys: Keys, acquirer: Acquirer, firer: BatchFirer, refusal: RefusalWatch, settings: LoopSettings, log: Logger) {
  const partitions = Array.from({ length: keys.partitions }, (_, p) => p);
  let stopping = false;
  let failing = false;
  let backlog = false;
  /** Batches claimed and not yet printed: while there is one, takes leave what comes due to the streams. */
  let inHand = 0;
  let lastLoopAt = 0;

  /** The next batch, claimed; null when there was nothing. Never rejects: the loop takes the error in turn. */
  const readAndClaim = async (): Promise<Outcome> => {
    try {
      if (refusal.current) await sleep(1000);
      let batch = backlog ? await acquirer.grab(partitions, Math.ceil(settings.fireBatch / keys.partitions)) : null;
      if (!batch) {
        const read = await reader.read();
        batch = read ? await acquirer.claim(read) : null;
      }
      backlog = batch !== null;
      if (batch) inHand += 1;
      return { batch };
    } catch (error) {
      backlog = false;
      return { error };
    }
  };

  const report = (error: unknown) => {
    if (stopping && /Connection is closed/.test(String(error))) return;
    if (!failing) log.warn({ err: error }, 'firing failed; retrying');
    failing = true;
  };

  const run = async (onNoGroup: () => Promise<void>) => {
    let committing: Promise<void> = Promise.resolve();
    let next = readAndClaim();
    for (;;) {
      lastLoopAt = Date.now();
      const outcome = await next;
      const batch = 'batch' in outcome ? outcome.batch : null;
      // Entries claimed are this worker's to print: fire them even when stopping.
      if (stopping && !batch) break;
      if ('error' in outcome) {
        report(outcome.error);
        if (/NOGROUP/.test(String(outcome.error))) await onNoGroup().catch(() => {});
        await sleep(isConnectionFailure(outcome.error) ? 200 : 1000);
      } else if (failing) {
        failing = false;
        log.info('firing resumed');
      }
      next = stopping ? Promise.resolve({ batch: null }) : readAndClaim();
      if (!batch) continue;
      try {
        const { committed } = await firer.fire(batch.acquired, batch.lease);
        await committing;
        committing = committed;
      } finally {
        inHand -= 1;
      }
    }
    await committing;
  };

  return {
    run,
    stop() {
      stopping = true;
    },
    get busy() {
      return inHand > 0;
    },
    get lastLoopAt() {
      return lastLoopAt;
    },
  };
}

export type FireLoop = ReturnType<typeof createFireLoop>;
