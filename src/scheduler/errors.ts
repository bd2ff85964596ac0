/** Expected failures of the core, each with a stable code the API passes on to clients. */
export type SchedulerErrorCode =
  | 'BAD_USER_INPUT'
  | 'NOT_FOUND'
  | 'TOO_LATE'
  | 'TIME_TOO_FAR'
  | 'IDEMPOTENCY_CONFLICT'
  | 'UNAVAILABLE';

export class SchedulerError extends Error {
  constructor(
    readonly code: SchedulerErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'SchedulerError';
  }
}

/**
 * "Command aborted due to connection close" is ioredis' AbortError for the commands of a
 * pipeline still unanswered when its connection closed: each may or may not have run, as
 * with a timeout. MOVED and ASK come from a cluster node that no longer serves the slot (a
 * failover): the command did not run there, and goes again once the slot table is fresh.
 */
const CONNECTION_FAILURE =
  /Command timed out|Connection is closed|Command aborted due to connection close|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Stream isn't writeable|max retries per request|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|^MOVED \d|^ASK \d/i;

/** True when an error means Redis could not be reached, or its answer was lost on the way, rather than a bug. */
export function isConnectionFailure(error: unknown): boolean {
  return error instanceof Error && CONNECTION_FAILURE.test(error.message);
}

/**
 * Redis refusing a write for a reason no resend soon fixes: memory full under `noeviction`
 * (OOM), a replica or a demoted primary (READONLY), a failed disk with
 * `stop-writes-on-bgsave-error` (MISCONF). Every script declares itself with `#!lua`, so a
 * refused one did nothing.
 */
const REFUSAL = /^(OOM|READONLY|MISCONF)\b/;

/** The refusal's message (`OOM command not allowed ...`), or undefined for any other error. */
export function refusalOf(error: unknown): string | undefined {
  if (error instanceof SchedulerError && typeof error.details.refusal === 'string') return error.details.refusal;
  return error instanceof Error && REFUSAL.test(error.message) ? error.message : undefined;
}

/** Runs a Redis operation, turning "Redis unreachable" into UNAVAILABLE. */
export async function reachRedis<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (isConnectionFailure(error)) {
      throw new SchedulerError('UNAVAILABLE', 'The task store (Redis) is unreachable. Retry shortly; an idempotency key makes the retry safe.');
    }
    throw error;
  }
}
