// GraphQL over HTTP (POST /graphql), with the token. Every failure becomes an ApiError whose
// code is the API's own (UNAUTHENTICATED, UNAVAILABLE, TOO_LATE, ...) so the page can say
// what went wrong instead of failing silently.
import { authorization } from './token.js';

export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Answers the operation's data, or throws an ApiError. */
export async function request(query, variables = {}) {
  const headers = { 'content-type': 'application/json', accept: 'application/json' };
  if (authorization()) headers.authorization = authorization();
  let response;
  try {
    response = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  } catch {
    throw new ApiError('NETWORK', 'The service does not answer.');
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(response.status === 503 ? 'UNAVAILABLE' : `HTTP_${response.status}`, `The service answered HTTP ${response.status}.`);
  }
  const [first] = body.errors || [];
  if (first) throw fromGraphQLError(first);
  return body.data;
}

/** An error of a GraphQL answer (HTTP or WebSocket) as an ApiError. */
export const fromGraphQLError = (error) => new ApiError(error?.extensions?.code || 'ERROR', error?.message || 'Unknown error.');
