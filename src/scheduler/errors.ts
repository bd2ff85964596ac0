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

const CONNECTION_FAILURE =
  /Command timed out|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Stream isn't writeable|max retries per request|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN/i;

/** True when an error means Redis could not be reached, rather than a bug. */
export function isConnectionFailure(error: unknown): boolean {
  return error instanceof Error && CONNECTION_FAILURE.test(error.message);
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
