/**
 * Helpers for the API tests: GraphQL over HTTP with codegen's typed documents, graphql-ws
 * clients (Node 20 has no global WebSocket), subscriptions over WebSocket and SSE collected
 * into arrays, and the checks the tests share (subscribers confirmed by Redis, what is stored
 * under a prefix).
 */
import { print, type DocumentNode, type FormattedExecutionResult } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { RedisClient } from '../src/redis.js';
import { createKeys } from '../src/scheduler/keys.js';
import { waitFor } from './helpers.js';

export interface GraphQLErrorJson {
  message: string;
  extensions?: { code?: string; [name: string]: unknown };
}

export interface GraphQLAnswer<T> {
  status: number;
  data?: T | null;
  errors?: GraphQLErrorJson[];
  /** The raw body, when it was not JSON. */
  text: string;
}

/** POSTs an operation (a typed document or a query string) and reads the JSON answer. */
export async function graphql<T = Record<string, unknown>, V = Record<string, unknown>>(
  url: string,
  document: TypedDocumentNode<T, V> | DocumentNode | string,
  variables?: V,
  headers: Record<string, string> = {},
): Promise<GraphQLAnswer<T>> {
  const query = typeof document === 'string' ? document : print(document);
  return postJson<T>(url, JSON.stringify({ query, variables }), headers);
}

/** POSTs a raw body to the GraphQL endpoint (for malformed and oversized requests). */
export async function postJson<T>(url: string, body: string, headers: Record<string, string> = {}): Promise<GraphQLAnswer<T>> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await response.text();
  let parsed: { data?: T | null; errors?: GraphQLErrorJson[] } = {};
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    // Not JSON: the test looks at status and text.
  }
  return { status: response.status, text, ...parsed };
}

/** The code of the first error, or undefined. */
export const codeOf = (answer: { errors?: GraphQLErrorJson[] }) => answer.errors?.[0]?.extensions?.code;

export function wsClient(httpUrl: string, connectionParams?: Record<string, unknown>): Client {
  return createClient({
    url: httpUrl.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams,
    retryAttempts: 0,
    lazy: true,
  });
}

export interface Collected<T> {
  readonly events: T[];
  /** Set when the subscription ended with an error (or the socket closed with one). */
  error: unknown;
  completed: boolean;
  waitForCount(count: number, timeoutMs: number): Promise<void>;
  stop(): void;
}

/** An empty collection, with what a subscription's results do to it; `stop` ends the subscription. */
function collector<T>(stop: () => void): Collected<T> & { receive(result: FormattedExecutionResult<unknown>): void } {
  const collected: Collected<T> & { receive(result: FormattedExecutionResult<unknown>): void } = {
    events: [],
    error: undefined,
    completed: false,
    waitForCount: (count, timeoutMs) =>
      waitFor(
        () => {
          if (collected.error) throw new Error(`subscription failed: ${JSON.stringify(collected.error)}`);
          return collected.events.length >= count;
        },
        timeoutMs,
        `${count} events (have ${collected.events.length})`,
      ).then(() => undefined),
    stop,
    receive: (result) => {
      if (result.errors) collected.error = result.errors;
      else if (result.data) collected.events.push(result.data as T);
    },
  };
  return collected;
}

/** Subscribes through graphql-ws and collects every event's data. */
export function collect<T, V extends Record<string, unknown>>(client: Client, document: TypedDocumentNode<T, V>, variables: V): Collected<T> {
  const collected = collector<T>(() => unsubscribe());
  const unsubscribe = client.subscribe<T, Record<string, unknown>>(
    { query: print(document), variables },
    {
      next: (result) => collected.receive(result),
      error: (error) => {
        collected.error = error;
      },
      complete: () => {
        collected.completed = true;
      },
    },
  );
  return collected;
}

/**
 * Subscribes over SSE (a POST to /graphql with `Accept: text/event-stream`) and collects
 * every `next` event's data. A refused request (not an event stream) is the error.
 */
export async function collectSse<T, V extends Record<string, unknown>>(
  url: string,
  document: TypedDocumentNode<T, V>,
  variables: V,
  headers: Record<string, string> = {},
): Promise<Collected<T> & { response: Response }> {
  const abort = new AbortController();
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...headers },
    body: JSON.stringify({ query: print(document), variables }),
    signal: abort.signal,
  });
  const collected = Object.assign(collector<T>(() => abort.abort()), { response });
  if (!response.ok || !/^text\/event-stream/.test(response.headers.get('content-type') ?? '') || !response.body) {
    collected.error = `HTTP ${response.status}: ${await response.text()}`;
    return collected;
  }
  const readEvents = async (body: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of body) {
      buffered += decoder.decode(chunk, { stream: true });
      const blocks = buffered.split(/\r?\n\r?\n/);
      buffered = blocks.pop()!;
      for (const block of blocks) {
        const lines = block.split(/\r?\n/);
        const event = lines.find((line) => line.startsWith('event:'))?.slice(6).trim();
        const data = lines.filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trimStart()).join('\n');
        if (event === 'next') collected.receive(JSON.parse(data) as FormattedExecutionResult<unknown>);
        if (event === 'complete') collected.completed = true;
      }
    }
    collected.completed = true;
  };
  readEvents(response.body).catch((error: unknown) => {
    if (!abort.signal.aborted) collected.error = error;
  });
  return collected;
}

/** How many taskFired subscriptions an API process holds (its /metrics gauge), given its GraphQL URL. */
export async function feedSubscriptions(graphqlUrl: string): Promise<number> {
  const text = await (await fetch(graphqlUrl.replace(/\/graphql$/, '/metrics'))).text();
  const match = /^punctual_api_subscriptions (\d+)$/m.exec(text);
  return match ? Number(match[1]) : 0;
}

/** Waits until an API process holds exactly `count` taskFired subscriptions: events fired from then on reach them. */
export async function waitForFeedSubscriptions(graphqlUrl: string, count: number, timeoutMs = 10_000): Promise<void> {
  await waitFor(async () => (await feedSubscriptions(graphqlUrl)) === count, timeoutMs, `${count} taskFired subscriptions at ${graphqlUrl}`);
}

/**
 * Every key under a prefix with its type and contents, to prove a refused request wrote
 * nothing. Workers' liveness hashes, call records and name leases are left out: they change with time.
 */
export async function snapshotKeys(redis: RedisClient, prefix: string, partitions = 4): Promise<string[]> {
  const keys = createKeys(prefix, partitions);
  const changing = [...Array.from({ length: partitions }, (_, n) => [keys.liveness(n), keys.call(n, '')]).flat(), keys.workerLease('')];
  const names: string[] = [];
  for (const pattern of [`{${prefix}:*`, `${prefix}:*`]) names.push(...(await scanKeys(redis, pattern)));
  const kept = names.filter((name) => !changing.some((start) => name.startsWith(start)));
  const described = await Promise.all(kept.map(async (key) => `${key} ${JSON.stringify(await contents(redis, key))}`));
  return described.sort();
}

/** A key's type and contents, in an order that does not depend on how Redis stores them. */
async function contents(redis: RedisClient, key: string): Promise<[string, unknown]> {
  const type = await redis.type(key);
  switch (type) {
    case 'string':
      return [type, await redis.get(key)];
    case 'hash':
      return [type, Object.entries(await redis.hgetall(key)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))];
    case 'zset':
      return [type, await redis.zrange(key, 0, -1, 'WITHSCORES')];
    case 'stream':
      return [type, await redis.xrange(key, '-', '+')];
    case 'set':
      return [type, (await redis.smembers(key)).sort()];
    case 'list':
      return [type, await redis.lrange(key, 0, -1)];
    default:
      return [type, null];
  }
}

/** An ISO time `ms` from now. */
export const isoIn = (ms: number) => new Date(Date.now() + ms).toISOString();

/** Every key on `redis` that matches a glob pattern. */
export async function scanKeys(redis: RedisClient, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  return keys;
}
