/**
 * Every timing of the firing path derived from the two a user sets (RECLAIM_IDLE_MS and
 * SWEEP_MS), in one place, with the rule that ties them together. The firer, the sweep, the
 * heartbeat and the name lease read them from here; config.ts refuses settings that break a
 * rule.
 */
export interface TimingSettings {
  /** An entry left unacknowledged this long by a silent worker is taken over. */
  reclaimIdleMs: number;
  /** How often a worker beats and sweeps promotions. */
  sweepMs: number;
}

export interface FiringTimings {
  /**
   * How long an acquiring call (claim, take) is sent again while its answer is lost. Its
   * deadline in Redis time is as far: past it the call acquires nothing.
   */
  acquireBudgetMs: number;
  /** How long a call's record of the entries it read lives: past every resend of it. */
  callRecordMs: number;
  /**
   * Entries pending this long, whoever holds them, go through the sweep (its own entries
   * that an answer lost left behind, and other workers'). Past the acquire budget, so no
   * resend of a call can still claim what the sweep claims.
   */
  sweepIdleMs: number;
  /** How often the sweep for idle entries runs. */
  sweepEveryMs: number;
  /** A silence between beats longer than this restarts a worker's "alive since" (heartbeat.lua). */
  heartbeatGapMs: number;
  /** How long a worker's lease on its name lasts without a renewal (renewed every beat). */
  nameLeaseMs: number;
  /** The pause before a commit whose answer was lost, or that Redis refused, is sent again. */
  commitRetryMs: number;
}

export function firingTimings({ reclaimIdleMs, sweepMs }: TimingSettings): FiringTimings {
  const acquireBudgetMs = Math.max(100, Math.floor(reclaimIdleMs / 4));
  const sweepIdleMs = Math.max(200, Math.floor(reclaimIdleMs / 2));
  return {
    acquireBudgetMs,
    callRecordMs: 2 * acquireBudgetMs + 1000,
    sweepIdleMs,
    sweepEveryMs: sweepIdleMs,
    heartbeatGapMs: Math.min(3 * sweepMs, Math.floor(reclaimIdleMs / 2)),
    nameLeaseMs: 3 * sweepMs,
    commitRetryMs: 200,
  };
}

/**
 * The rule the two settings must keep, or undefined when they do. A worker beats every
 * SWEEP_MS, and a silence longer than half the reclaim idle time restarts its "alive since";
 * claim lets a worker take over another's tasks only once it has beaten steadily for
 * RECLAIM_IDLE_MS. A beat can come late by a fraction of a sweep (a busy event loop, a slow
 * round trip), so SWEEP_MS must be at most a third of RECLAIM_IDLE_MS: with more, late beats
 * keep restarting "alive since", no worker is ever steady, and a crashed worker's tasks are
 * never taken over.
 */
export function timingConflict({ reclaimIdleMs, sweepMs }: TimingSettings): string | undefined {
  if (3 * sweepMs <= reclaimIdleMs) return undefined;
  return `SWEEP_MS (${sweepMs} ms) is more than a third of RECLAIM_IDLE_MS (${reclaimIdleMs} ms): workers would never beat steadily enough to take over a crashed worker's tasks; lower SWEEP_MS to at most ${Math.floor(reclaimIdleMs / 3)} or raise RECLAIM_IDLE_MS to at least ${3 * sweepMs}`;
}
