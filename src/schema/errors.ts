/**
 * How failures reach clients: every expected one is a GraphQLError with a stable
 * `extensions.code`; anything else is masked (logged, answered "Unexpected error.").
 *
 * Codes: BAD_USER_INPUT (the request or a value in it is wrong: the message says which, and
 * for a malformed request `extensions.reason` says how: GRAPHQL_PARSE_FAILED,
 * GRAPHQL_VALIDATION_FAILED, LIMIT_EXCEEDED, SUBSCRIPTION_TRANSPORT, OPERATION_RESOLUTION_FAILURE,
 * BAD_REQUEST), TIME_TOO_FAR, NOT_FOUND, TOO_LATE,
 * IDEMPOTENCY_CONFLICT, UNAVAILABLE (Redis unreachable: retry), UNAUTHENTICATED (HTTP 401),
 * INTERNAL_SERVER_ERROR (anything else, masked).
 */
import { GraphQLError } from 'graphql';
import { SchedulerError } from '../scheduler/errors.js';

export const INTERNAL_SERVER_ERROR = 'INTERNAL_SERVER_ERROR';

/** Codes graphql-yoga gives malformed requests; clients see BAD_USER_INPUT with this as the reason (its own BAD_USER_INPUT as BAD_REQUEST). */
const REQUEST_ERROR_CODES = new Set(['GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'BAD_REQUEST', 'BAD_USER_INPUT', 'OPERATION_RESOLUTION_FAILURE']);

export function badUserInput(message: string, extensions: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', ...extensions } });
}

function fromSchedulerError(error: SchedulerError, base?: GraphQLError): GraphQLError {
  const extensions: Record<string, unknown> = { code: error.code };
  // Only details a client can act on: which task of a bulk call, which task, why.
  for (const name of ['index', 'id', 'status', 'reason'] as const) {
    const value = error.details[name];
    if (value !== undefined && !(name === 'index' && value === -1)) extensions[name] = value;
  }
  return new GraphQLError(error.message, { nodes: base?.nodes ?? null, path: base?.path ?? undefined, extensions });
}

/**
 * The error a client sees, or undefined when the error must be masked. GraphQL wraps what a
 * resolver throws (keeping the path and locations); the original decides the code.
 */
export function clientError(error: unknown): GraphQLError | undefined {
  const wrapper = error instanceof GraphQLError ? error : undefined;
  const original = wrapper?.originalError ?? error;
  if (original instanceof SchedulerError) return fromSchedulerError(original, wrapper);
  if (!(original instanceof GraphQLError)) return undefined;
  const shown = wrapper ?? original;
  const code = shown.extensions.code ?? original.extensions.code;
  if (typeof code === 'string' && !REQUEST_ERROR_CODES.has(code)) return shown;
  // A request the client must fix: one stable code; what the server found wrong is the reason.
  // originalError is yoga's copy of what failed inside it (V8's JSON.parse message, echoing the body).
  const { originalError: _internal, ...extensions } = shown.extensions;
  const reason = requestErrorReason(shown, code);
  const fixed = rebuilt(shown, { extensions: { ...extensions, code: 'BAD_USER_INPUT', reason } });
  // graphql-armor reports its limits as syntax errors; they are not.
  return reason === 'LIMIT_EXCEEDED' ? rebuilt(fixed, { message: fixed.message.replace(/^Syntax Error: /, '') }) : fixed;
}

/**
 * With introspection off, what validation says about the schema (type and field names,
 * "Did you mean" suggestions) would let a client rebuild it: its message becomes generic,
 * its locations still point at the problem.
 */
export function concealSchema(error: GraphQLError): GraphQLError {
  const reason = error.extensions.reason;
  if (reason !== 'GRAPHQL_VALIDATION_FAILED' && !(reason === 'BAD_REQUEST' && /^Variable "\$/.test(error.message))) return error;
  // "GraphQL introspection has been disabled" names nothing of the schema, and says why.
  if (/introspection has been disabled/.test(error.message)) return error;
  return rebuilt(error, { message: 'The operation does not match the schema here (it is not introspectable on this server).' });
}

/** Why a request is malformed. graphql-yoga's HTTP path codes parse errors; over graphql-ws they come bare. */
function requestErrorReason(error: GraphQLError, code: unknown): string {
  if (typeof error.extensions.reason === 'string') return error.extensions.reason;
  if (code === 'BAD_USER_INPUT') return 'BAD_REQUEST';
  if (typeof code === 'string') return code;
  if (/limit of \d+ exceeded/i.test(error.message)) return 'LIMIT_EXCEEDED';
  return /^Syntax Error/.test(error.message) ? 'GRAPHQL_PARSE_FAILED' : 'GRAPHQL_VALIDATION_FAILED';
}

/** The error with another message or other extensions, everything else kept. */
function rebuilt(error: GraphQLError, changes: { message?: string; extensions?: Record<string, unknown> }): GraphQLError {
  return new GraphQLError(changes.message ?? error.message, {
    nodes: error.nodes ?? null,
    source: error.source ?? null,
    positions: error.positions ?? null,
    path: error.path ?? null,
    extensions: changes.extensions ?? error.extensions,
  });
}

/**
 * An error as a socket client sees it. graphql-yoga's `extensions.http` (the HTTP status it
 * wants) is its own business: its HTTP answers drop it, and over graphql-ws this does.
 */
export function socketError(error: GraphQLError): GraphQLError {
  if (!('http' in error.extensions)) return error;
  const { http: _http, ...extensions } = error.extensions;
  return rebuilt(error, { extensions });
}

/** What a client sees of an unexpected error: where it happened, nothing of what it was. */
export function maskedError(error?: unknown): GraphQLError {
  const where = error instanceof GraphQLError ? error : undefined;
  return new GraphQLError('Unexpected error.', {
    nodes: where?.nodes ?? null,
    source: where?.source ?? null,
    positions: where?.positions ?? null,
    path: where?.path ?? null,
    extensions: { code: INTERNAL_SERVER_ERROR },
  });
}
