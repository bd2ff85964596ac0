/**
 * The API as users meet it: the mutations and queries, taskFired over SSE, the seed's REST
 * call, GraphiQL served self-contained, the API token on every transport (HTTP, graphql-ws,
 * SSE), the settings that turn GraphiQL and introspection off, and schema.graphql / codegen
 * kept in step with the code.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ROOT, useServices, waitFor } from './helpers.js';
import { codeOf, collect, collectSse, graphql, isoIn, snapshotKeys, waitForFeedSubscriptions, wsClient, type Collected, type GraphQLAnswer, type GraphQLErrorJson } from './api-helpers.js';
import {
  CancelTaskDocument,
  DelayedTaskDocument,
  DelayedTasksDocument,
  RescheduleTaskDocument,
  StatsDocument,
  TaskDocument,
  TaskFiredDocument,
  TasksDocument,
  type TaskFiredSubscription,
  type TasksQuery,
} from './gql/graphql.js';
import { parse } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { printedSchema, SCHEMA_FILE } from '../src/schema/sdl.js';
import { createServer } from '../src/server.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { SchedulerError } from '../src/scheduler/errors.js';
import { decodeCursor, type FeedEvent } from '../src/scheduler/feed.js';
import type { Task } from '../src/scheduler/task.js';
import type { TaskStore } from '../src/scheduler/tasks.js';

const run = promisify(execFile);
const services = useServices(beforeAll, afterAll);
const HOUR = 3_600_000;

/**
 * Once the API holds the feed's subscription, schedules a task due now and waits for its
 * taskFired event on the feed.
 */
async function firedEvent(feed: Collected<TaskFiredSubscription>, url: string, message: string, headers: Record<string, string> = {}) {
  await waitForFeedSubscriptions(url, 1);
  const task = await graphql(url, DelayedTaskDocument, { message, time: isoIn(0) }, headers);
  expect(task.errors).toBeUndefined();
  const id = task.data!.delayedTask.id;
  const event = await waitFor(
    () => {
      if (feed.error) throw new Error(`subscription failed: ${JSON.stringify(feed.error)}`);
      return feed.events.find((one) => one.taskFired.task.id === id);
    },
    15_000,
    `the taskFired event of ${id}`,
  );
  return event.taskFired;
}

/** Waits until the API holds no taskFired subscription: the client left, and it was released. */
const noSubscribers = (url: string) => waitForFeedSubscriptions(url, 0);

describe('tasks through GraphQL', () => {
  let url = '';
  let partitions = 0;
  beforeAll(async () => {
    const { service, config } = await services.serviceFor('api-http', { PORT: '0' });
    url = `http://127.0.0.1:${service.server!.port}/graphql`;
    partitions = config.partitions;
  });

  it('keeps the instant of a time with an offset and returns it in UTC, to the millisecond', async () => {
    const answer = await graphql(url, DelayedTaskDocument, { message: 'offset', time: '2027-11-07T22:49:00.123456+02:00' });
    expect(answer.errors).toBeUndefined();
    expect(answer.data!.delayedTask).toMatchObject({ message: 'offset', time: '2027-11-07T20:49:00.123Z', status: 'SCHEDULED', attempts: 0, firedAt: null, lateByMs: null });
    const read = await graphql(url, TaskDocument, { id: answer.data!.delayedTask.id });
    expect(read.data!.task).toEqual(answer.data!.delayedTask);
  });

  it('returns the same task when a request is retried with its idempotency key', async () => {
    const variables = { message: 'once', time: isoIn(HOUR), idempotencyKey: `order-${Date.now()}` };
    const first = await graphql(url, DelayedTaskDocument, variables);
    const again = await graphql(url, DelayedTaskDocument, variables);
    expect(again.data!.delayedTask.id).toBe(first.data!.delayedTask.id);
  });

  it('cancels and reschedules, and a cancelled task never fires', async () => {
    const [keep, drop] = (await graphql(url, DelayedTasksDocument, { tasks: [{ message: 'moved', time: isoIn(HOUR) }, { message: 'dropped', time: isoIn(1500) }] })).data!
      .delayedTasks;
    const cancelled = await graphql(url, CancelTaskDocument, { id: drop!.id });
    expect(cancelled.data!.cancelTask.status).toBe('CANCELLED');
    const moved = await graphql(url, RescheduleTaskDocument, { id: keep!.id, time: isoIn(200) });
    expect(moved.data!.rescheduleTask.status).toBe('SCHEDULED');
    await waitFor(async () => (await graphql(url, TaskDocument, { id: keep!.id })).data!.task?.status === 'FIRED', 15_000, 'the rescheduled task to fire');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect((await graphql(url, TaskDocument, { id: drop!.id })).data!.task!.status).toBe('CANCELLED');
    expect((await graphql(url, TaskDocument, { id: '0-0000000000000000zz' })).data!.task).toBeNull();
  });

  it('lists tasks by status a page at a time, by time then id, within from and to', async () => {
    const base = Date.now() + 2 * HOUR;
    const times = [5, 1, 3, 3, 0, 4, 2].map((i) => new Date(base + i * 1000).toISOString());
    const created = (await graphql(url, DelayedTasksDocument, { tasks: times.map((time, i) => ({ message: `list ${i}`, time })) })).data!.delayedTasks;
    const expected = [...created].sort((a, b) => (a.time !== b.time ? Date.parse(a.time) - Date.parse(b.time) : a.id < b.id ? -1 : 1)).map((task) => task.id);

    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const page: GraphQLAnswer<TasksQuery> = await graphql(url, TasksDocument, { status: 'SCHEDULED', first: 3, after, from: new Date(base).toISOString(), to: new Date(base + 5000).toISOString() });
      expect(page.errors).toBeUndefined();
      const tasks = page.data!.tasks;
      seen.push(...tasks.edges.map((edge) => edge.node.id));
      pages += 1;
      if (!tasks.pageInfo.hasNextPage) break;
      after = tasks.pageInfo.endCursor;
    }
    expect(seen).toEqual(expected);
    expect(pages).toBe(3);

    await graphql(url, CancelTaskDocument, { id: created[0]!.id });
    const cancelled = await graphql(url, TasksDocument, { status: 'CANCELLED', first: 50 });
    expect(cancelled.data!.tasks.edges.map((edge) => edge.node.id)).toContain(created[0]!.id);
    const fired = await graphql(url, TasksDocument, { status: 'FIRED', first: 50 });
    expect(fired.data!.tasks.edges.every((edge) => edge.node.status === 'FIRED')).toBe(true);
  });

  it('streams taskFired over SSE: the fired task and a cursor to resume from', async () => {
    const feed = await collectSse(url, TaskFiredDocument, {});
    try {
      expect(feed.response.status).toBe(200);
      expect(feed.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const event = await firedEvent(feed, url, 'over SSE, no token');
      expect(event.task).toMatchObject({ message: 'over SSE, no token', status: 'FIRED', attempts: 1 });
      expect(event.task.firedAt).not.toBeNull();
      expect(decodeCursor(event.cursor, partitions)).toHaveLength(partitions);
    } finally {
      feed.stop();
    }
    await noSubscribers(url);
  });

  it('reports stats: counts, backlog, workers', async () => {
    const stats = (await graphql(url, StatsDocument)).data!.stats;
    expect(stats.partitions).toBe(4);
    expect(stats.scheduled).toBeGreaterThan(0);
    expect(stats.workers).toBe(1);
    expect(stats.backlog).toBeGreaterThanOrEqual(0);
    expect(Math.abs(Date.parse(stats.now) - Date.now())).toBeLessThan(60_000);
  });

  it('counts by status: an overdue task no worker has taken is backlog with its age; cancelled, it is counted once', async () => {
    // API only: nothing promotes or fires, so the overdue task stays where it is.
    const { service } = await services.serviceFor('api-stats', { PORT: '0', ROLE: 'api' });
    const statsUrl = `http://127.0.0.1:${service.server!.port}/graphql`;
    const stats = async () => (await graphql(statsUrl, StatsDocument)).data!.stats;
    expect(await stats()).toMatchObject({ scheduled: 0, due: 0, firing: 0, backlog: 0, oldestOverdueMs: null, fired: 0, cancelled: 0, dead: 0, workers: 0 });

    const overdue = (await graphql(statsUrl, DelayedTaskDocument, { message: 'overdue', time: isoIn(-5000) })).data!.delayedTask;
    await graphql(statsUrl, DelayedTaskDocument, { message: 'later', time: isoIn(HOUR) });
    const waiting = await stats();
    expect(waiting).toMatchObject({ scheduled: 2, due: 0, firing: 0, backlog: 1, fired: 0, cancelled: 0, dead: 0 });
    expect(waiting.oldestOverdueMs).toBeGreaterThanOrEqual(4900);
    expect(waiting.oldestOverdueMs).toBeLessThan(60_000);

    expect((await graphql(statsUrl, CancelTaskDocument, { id: overdue.id })).data!.cancelTask.status).toBe('CANCELLED');
    expect((await graphql(statsUrl, CancelTaskDocument, { id: overdue.id })).data!.cancelTask.status).toBe('CANCELLED');
    expect(await stats()).toMatchObject({ scheduled: 1, backlog: 0, oldestOverdueMs: null, fired: 0, cancelled: 1, dead: 0 });
  });
});

describe('the seed REST call and GraphiQL', () => {
  let base = '';
  let prefix = '';
  beforeAll(async () => {
    const { service, config } = await services.serviceFor('api-rest', { PORT: '0' });
    base = `http://127.0.0.1:${service.server!.port}`;
    prefix = config.keyPrefix;
  });

  it('POST /api/tasks/delayedTask schedules the task and answers 201 with it', async () => {
    const response = await fetch(`${base}/api/tasks/delayedTask`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ time: isoIn(300), message: 'from the seed API' }),
    });
    expect(response.status).toBe(201);
    const task = (await response.json()) as { id: string; message: string; status: string };
    expect(task).toMatchObject({ message: 'from the seed API', status: 'SCHEDULED' });
    await waitFor(async () => (await graphql(`${base}/graphql`, TaskDocument, { id: task.id })).data!.task?.status === 'FIRED', 15_000, 'the task to fire');
  });

  it('refuses bad REST input with 400 and the same codes, writing nothing', async () => {
    const before = await snapshotKeys(services.redis, prefix);
    for (const body of ['{"time": "2026-01-01T10:00:00", "message": "x"}', '{"message": "x"}', 'not json', '[1]', '{"time": "2030-01-01T00:00:00Z", "message": ""}']) {
      const response = await fetch(`${base}/api/tasks/delayedTask`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(response.status, body).toBe(400);
      expect(codeOf((await response.json()) as never), body).toBe('BAD_USER_INPUT');
    }
    expect(await snapshotKeys(services.redis, prefix)).toEqual(before);
  });

  it('serves GraphiQL to a browser with no external script or stylesheet, subscriptions over WebSocket', async () => {
    const response = await fetch(`${base}/graphql`, { headers: { accept: 'text/html' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/text\/html/);
    const html = await response.text();
    expect(html).toMatch(/graphiql/i);
    expect(html).not.toMatch(/(?:src|href)\s*=\s*["']?\s*(?:https?:)?\/\//i);
    expect(html).not.toMatch(/@import\s+(?:url\()?["']?(?:https?:)?\/\//i);
    expect(html).toMatch(/subscriptionsProtocol["']?\s*:\s*["']WS["']/);
  });
});

describe('API_TOKEN', () => {
  const token = 'test-token-0123456789abcdef';
  let url = '';
  beforeAll(async () => {
    const { service } = await services.serviceFor('api-auth', { PORT: '0', API_TOKEN: token });
    url = `http://127.0.0.1:${service.server!.port}/graphql`;
  });

  const wrongHeaders: [string, Record<string, string>][] = [
    ['no token', {}],
    ['a wrong token', { authorization: 'Bearer wrong-token-0123456789abcdef' }],
    ['the token without Bearer', { authorization: token }],
  ];

  it('HTTP: 401 without the right token, 200 with it (GraphQL and REST)', async () => {
    for (const [name, headers] of wrongHeaders) {
      const answer = await graphql(url, StatsDocument, {}, headers);
      expect({ name, status: answer.status, code: codeOf(answer) }).toEqual({ name, status: 401, code: 'UNAUTHENTICATED' });
      const rest = await fetch(url.replace('/graphql', '/api/tasks/delayedTask'), { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"time":"2030-01-01T00:00:00Z","message":"x"}' });
      expect(rest.status, name).toBe(401);
    }
    const answer = await graphql(url, StatsDocument, {}, { authorization: `Bearer ${token}` });
    expect(answer.status).toBe(200);
    expect(answer.data!.stats.partitions).toBe(4);
  });

  it('graphql-ws: closes with 4403 without the right token in connection_init, streams with it', async () => {
    for (const params of [undefined, { authorization: 'Bearer nope-nope-nope-nope' }, { Authorization: token }]) {
      const client = wsClient(url, params);
      const feed = collect(client, TaskFiredDocument, {});
      await waitFor(() => feed.error, 10_000, 'the socket to close');
      expect((feed.error as { code?: number }).code).toBe(4403);
      await client.dispose();
    }
    const client = wsClient(url, { Authorization: `Bearer ${token}` });
    const feed = collect(client, TaskFiredDocument, {});
    try {
      const event = await firedEvent(feed, url, 'over ws with a token', { authorization: `Bearer ${token}` });
      expect(event.task.message).toBe('over ws with a token');
    } finally {
      feed.stop();
      await client.dispose();
    }
  });

  it('SSE: 401 without the right token, events with it', async () => {
    for (const [name, headers] of wrongHeaders) {
      const refused = await collectSse(url, TaskFiredDocument, {}, headers);
      expect({ name, status: refused.response.status }).toEqual({ name, status: 401 });
    }
    const feed = await collectSse(url, TaskFiredDocument, {}, { authorization: `Bearer ${token}` });
    try {
      expect(feed.response.status).toBe(200);
      expect(feed.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const event = await firedEvent(feed, url, 'over sse', { authorization: `Bearer ${token}` });
      expect(event.task.message).toBe('over sse');
    } finally {
      feed.stop();
    }
    // A client that leaves releases its subscription.
    await noSubscribers(url);
  });
});

describe('settings that close the API down', () => {
  let url = '';
  beforeAll(async () => {
    const { service } = await services.serviceFor('api-closed', { PORT: '0', GRAPHIQL: 'false', INTROSPECTION: 'false' });
    url = `http://127.0.0.1:${service.server!.port}/graphql`;
  });

  it('GRAPHIQL=false: a browser opening /graphql gets no page, only the API', async () => {
    // What a browser's address bar sends, and a bare text/html.
    const browser = await fetch(url, { headers: { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8' } });
    expect(browser.status).toBe(200);
    expect(browser.headers.get('content-type')).toMatch(/^application\/(?:graphql-response\+)?json/);
    const body = (await browser.json()) as GraphQLAnswer<unknown>;
    expect(codeOf(body)).toBe('BAD_USER_INPUT');
    const htmlOnly = await fetch(url, { headers: { accept: 'text/html' } });
    expect(htmlOnly.status).toBe(406);
    expect(htmlOnly.headers.get('content-type') ?? '').not.toMatch(/text\/html/);
    expect(await htmlOnly.text()).not.toMatch(/graphiql/i);
  });

  it('INTROSPECTION=false: introspection is a request to fix (BAD_USER_INPUT, GRAPHQL_VALIDATION_FAILED), over HTTP and WebSocket', async () => {
    for (const query of ['{ __schema { types { name } } }', '{ __type(name: "Task") { fields { name } } }']) {
      const answer = await graphql(url, query);
      expect(answer.status, query).toBe(200);
      expect(answer.data ?? null, query).toBeNull();
      expect(answer.errors!.length, query).toBeGreaterThan(0);
      for (const error of answer.errors!) {
        expect(error.message, query).toMatch(/introspection/i);
        expect(error.extensions, query).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'GRAPHQL_VALIDATION_FAILED' });
      }
    }
    const client = wsClient(url);
    try {
      const refused = collect(client, parse('{ __schema { queryType { name } } }') as TypedDocumentNode<unknown, Record<string, never>>, {});
      await waitFor(() => refused.error, 10_000, 'the refusal over WebSocket');
      const errors = refused.error as GraphQLErrorJson[];
      expect(errors.length).toBeGreaterThan(0);
      for (const error of errors) expect(error.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'GRAPHQL_VALIDATION_FAILED' });
    } finally {
      await client.dispose();
    }
    // Ordinary operations still run.
    const ok = await graphql(url, StatsDocument);
    expect(ok.data!.stats.partitions).toBe(4);
  });
});

describe('failures inside the server', () => {
  const now = Date.now();
  const firedTask: Task = { id: '0-feedfeedfeedfeed00', message: 'one', time: now, status: 'FIRED', createdAt: now, firedAt: now, lateByMs: 0, attempts: 1, firedBy: 'w', endedAt: null, idempotencyKey: null };
  /** One event, then the feed fails as it does when Redis goes away. */
  const failingFeed = async () => {
    let sent = false;
    const iterator: AsyncIterableIterator<FeedEvent> = {
      async next() {
        if (sent) throw new SchedulerError('UNAVAILABLE', 'The task store (Redis) is unreachable.');
        sent = true;
        return { done: false, value: { cursor: 'f1.x', task: firedTask } };
      },
      async return() {
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  };
  const context = {
    store: {} as TaskStore,
    feed: { subscribe: failingFeed, subscriptions: 0 },
    listTasks: async () => ({ tasks: [], hasNextPage: false, endCursor: null }),
    readStats: async () => {
      throw new Error('secret detail of a bug');
    },
  };
  const server = createServer(loadConfig({ PORT: '0' }), context, createLogger('silent'));
  let url = '';
  beforeAll(async () => {
    await server.start();
    url = `http://127.0.0.1:${server.port}/graphql`;
  });
  afterAll(() => server.stop());

  it('masks an unexpected error: no detail, code INTERNAL_SERVER_ERROR, no 5xx', async () => {
    const answer = await graphql(url, StatsDocument);
    expect(answer.status).toBe(200);
    expect(answer.errors).toEqual([{ message: 'Unexpected error.', locations: expect.any(Array), path: ['stats'], extensions: { code: 'INTERNAL_SERVER_ERROR' } }]);
    expect(answer.text).not.toContain('secret');
  });

  it('ends a subscription whose feed fails with the coded error, not a closed socket', async () => {
    const client = wsClient(url);
    try {
      const feed = collect(client, TaskFiredDocument, {});
      await waitFor(() => feed.error, 10_000, 'the error');
      expect(feed.events).toHaveLength(1);
      expect((feed.error as { extensions?: { code?: string } }[])[0]!.extensions?.code).toBe('UNAVAILABLE');
    } finally {
      await client.dispose();
    }
  });
});

describe('schema.graphql and codegen', () => {
  it('schema.graphql is the schema the code builds (npm run schema:print to update it)', () => {
    expect(readFileSync(SCHEMA_FILE, 'utf8')).toBe(printedSchema());
  });

  it("codegen's output is up to date and type-checks", async () => {
    await run(join(ROOT, 'node_modules/.bin/graphql-codegen'), ['--config', 'codegen.ts', '--check'], { cwd: ROOT });
    const tsc = join(ROOT, 'node_modules/.bin/tsc');
    const options = ['--ignoreConfig', '--noEmit', '--strict', '--verbatimModuleSyntax', '--esModuleInterop', '--noUncheckedIndexedAccess', '--skipLibCheck', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--types', 'node'];
    await run(tsc, [...options, 'test/gql/index.ts', 'test/api-http.test.ts', 'test/api-feed.test.ts', 'test/api-errors.test.ts'], { cwd: ROOT });
  });
});
