/**
 * Bad input, each kind with its documented code: no 5xx, nothing written to Redis, the
 * server still up afterwards. And with Redis stopped, UNAVAILABLE within 2 s, never a hang.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateRedis, type PrivateRedis } from '../src/private-redis.js';
import { startRedisServer, startService, testEnv, uniquePrefix, useServices, waitFor } from './helpers.js';
import { codeOf, collect, graphql, isoIn, postJson, snapshotKeys, wsClient, type GraphQLAnswer } from './api-helpers.js';
import { CancelTaskDocument, DelayedTaskDocument, DelayedTasksDocument, RescheduleTaskDocument, StatsDocument, TaskDocument, TaskFiredDocument, TasksDocument } from './gql/graphql.js';

const services = useServices(beforeAll, afterAll);

const MUTATION = 'mutation($message: String!, $time: DateTime!) { delayedTask(message: $message, time: $time) { id } }';
const schedule = (url: string, message: unknown, time: unknown) => graphql(url, MUTATION, { message, time });

describe('bad input', () => {
  let url = '';
  let prefix = '';
  let partitions = 0;
  let firedId = '';
  let idempotentId = '';

  beforeAll(async () => {
    const { service, config } = await services.serviceFor('api-errors', { PORT: '0', MAX_BULK: '5', MAX_BODY_BYTES: '200000', MAX_QUERY_DEPTH: '3' });
    url = `http://127.0.0.1:${service.server!.port}/graphql`;
    prefix = config.keyPrefix;
    partitions = config.partitions;
    const fired = await graphql(url, DelayedTaskDocument, { message: 'fires at once', time: isoIn(0) });
    firedId = fired.data!.delayedTask.id;
    const kept = await graphql(url, DelayedTaskDocument, { message: 'kept', time: isoIn(3_600_000), idempotencyKey: 'key-1' });
    idempotentId = kept.data!.delayedTask.id;
    await waitFor(async () => (await graphql(url, TaskDocument, { id: firedId })).data?.task?.status === 'FIRED', 15_000, 'the first task to fire');
  });

  const cases: [string, () => Promise<GraphQLAnswer<unknown>>, string][] = [
    ['a time without an offset', () => schedule(url, 'm', '2026-11-07T22:49:00'), 'BAD_USER_INPUT'],
    ['a date without a time', () => schedule(url, 'm', '2026-11-07'), 'BAD_USER_INPUT'],
    ['an impossible date', () => schedule(url, 'm', '2026-02-30T10:00:00Z'), 'BAD_USER_INPUT'],
    ['February 29 of a common year', () => schedule(url, 'm', '2100-02-29T10:00:00Z'), 'BAD_USER_INPUT'],
    ['a leap second', () => schedule(url, 'm', '2016-12-31T23:59:60Z'), 'BAD_USER_INPUT'],
    ['year 275760', () => schedule(url, 'm', '275760-09-13T00:00:00Z'), 'BAD_USER_INPUT'],
    ['an expanded year beyond Date', () => schedule(url, 'm', '+275760-09-13T00:00:00.001Z'), 'BAD_USER_INPUT'],
    ['hour 24', () => schedule(url, 'm', '2026-01-01T24:00:00Z'), 'BAD_USER_INPUT'],
    ['the unknown offset -00:00', () => schedule(url, 'm', '2026-01-01T10:00:00-00:00'), 'BAD_USER_INPUT'],
    ['an offset of 24 hours', () => schedule(url, 'm', '2026-01-01T10:00:00+24:00'), 'BAD_USER_INPUT'],
    ['a time in a literal without offset', () => graphql(url, 'mutation { delayedTask(message: "m", time: "2026-11-07T22:49:00") { id } }'), 'BAD_USER_INPUT'],
    ['a time past the horizon', () => schedule(url, 'm', '9999-12-31T23:59:59Z'), 'TIME_TOO_FAR'],
    ['an empty message', () => schedule(url, '', isoIn(60_000)), 'BAD_USER_INPUT'],
    ['an oversized message', () => schedule(url, 'x'.repeat(65_537), isoIn(60_000)), 'BAD_USER_INPUT'],
    ['a lone surrogate in a variable', () => schedule(url, 'a\ud800b', isoIn(60_000)), 'BAD_USER_INPUT'],
    ['a lone surrogate in a literal', () => graphql(url, `mutation { delayedTask(message: "a\\uD800", time: "${isoIn(60_000)}") { id } }`), 'BAD_USER_INPUT'],
    ['a number as the message', () => schedule(url, 123, isoIn(60_000)), 'BAD_USER_INPUT'],
    ['a number as the time', () => schedule(url, 'm', Date.now()), 'BAD_USER_INPUT'],
    ['a missing argument', () => graphql(url, 'mutation { delayedTask(message: "m") { id } }'), 'BAD_USER_INPUT'],
    ['an unknown field', () => graphql(url, '{ task(id: "0-x") { colour } }'), 'BAD_USER_INPUT'],
    ['a syntax error', () => graphql(url, '{ task(id: '), 'BAD_USER_INPUT'],
    ['a body that is not JSON', () => postJson(url, '{"query": '), 'BAD_USER_INPUT'],
    ['a form POST, as another site could send', () => postJson(url, `query=${encodeURIComponent('mutation { delayedTask(message: "csrf", time: "2030-01-01T00:00:00Z") { id } }')}`, { 'content-type': 'application/x-www-form-urlencoded' }), 'BAD_USER_INPUT'],
    ['a text/plain POST', () => postJson(url, JSON.stringify({ query: '{ stats { due } }' }), { 'content-type': 'text/plain' }), 'BAD_USER_INPUT'],
    ['a query deeper than MAX_QUERY_DEPTH', () => graphql(url, '{ tasks { edges { node { id } } } }'), 'BAD_USER_INPUT'],
    ['too many aliases', () => graphql(url, `{ ${Array.from({ length: 40 }, (_, i) => `a${i}: stats { due }`).join(' ')} }`), 'BAD_USER_INPUT'],
    ['too many tokens', () => graphql(url, `{ stats { ${'due '.repeat(6000)} } }`), 'BAD_USER_INPUT'],
    ['a body over MAX_BODY_BYTES', () => schedule(url, 'x'.repeat(250_000), isoIn(60_000)), 'BAD_USER_INPUT'],
    ['a batch over MAX_BATCH_OPERATIONS', () => postJson(url, JSON.stringify(Array.from({ length: 11 }, () => ({ query: '{ stats { due } }' })))), 'BAD_USER_INPUT'],
    ['a bulk over MAX_BULK', () => graphql(url, DelayedTasksDocument, { tasks: Array.from({ length: 6 }, (_, i) => ({ message: `m${i}`, time: isoIn(60_000) })) }), 'BAD_USER_INPUT'],
    [
      'a bulk with one bad task among good ones',
      () => graphql(url, DelayedTasksDocument, { tasks: [0, 1, 2, 3].map((i) => ({ message: i === 2 ? '' : `m${i}`, time: isoIn(60_000) })) }),
      'BAD_USER_INPUT',
    ],
    [
      'a bulk with one task past the horizon',
      () => graphql(url, DelayedTasksDocument, { tasks: [0, 1, 2, 3].map((i) => ({ message: `m${i}`, time: i === 3 ? '9000-01-01T00:00:00Z' : isoIn(60_000) })) }),
      'TIME_TOO_FAR',
    ],
    ['an idempotency key of 257 characters', () => graphql(url, DelayedTaskDocument, { message: 'm', time: isoIn(60_000), idempotencyKey: 'k'.repeat(257) }), 'BAD_USER_INPUT'],
    ['an idempotency key reused with another message', () => graphql(url, DelayedTaskDocument, { message: 'other', time: isoIn(3_600_000), idempotencyKey: 'key-1' }), 'IDEMPOTENCY_CONFLICT'],
    ['cancelling an unknown id', () => graphql(url, CancelTaskDocument, { id: '0-0000000000000000zz' }), 'NOT_FOUND'],
    ['cancelling an id that is not one', () => graphql(url, CancelTaskDocument, { id: '../../etc' }), 'NOT_FOUND'],
    ['rescheduling an unknown id', () => graphql(url, RescheduleTaskDocument, { id: '1-0000000000000000zz', time: isoIn(1000) }), 'NOT_FOUND'],
    ['cancelling after firing', () => graphql(url, CancelTaskDocument, { id: firedId }), 'TOO_LATE'],
    ['rescheduling after firing', () => graphql(url, RescheduleTaskDocument, { id: firedId, time: isoIn(1000) }), 'TOO_LATE'],
    ['rescheduling past the horizon', () => graphql(url, RescheduleTaskDocument, { id: idempotentId, time: '9999-01-01T00:00:00Z' }), 'TIME_TOO_FAR'],
    ['a listing cursor that is not one', () => graphql(url, '{ tasks(after: "garbage") { nodes { id } } }'), 'BAD_USER_INPUT'],
    ['a page of 0 tasks', () => graphql(url, '{ tasks(first: 0) { nodes { id } } }'), 'BAD_USER_INPUT'],
    ['an unknown status', () => graphql(url, '{ tasks(status: LOST) { nodes { id } } }'), 'BAD_USER_INPUT'],
    ['a mutation over GET', () => fetch(`${url}?query=${encodeURIComponent('mutation { cancelTask(id: "0-x") { id } }')}`).then(async (r) => ({ status: r.status, text: '', ...((await r.json()) as object) })), 'BAD_USER_INPUT'],
  ];

  it(`answers ${cases.length} kinds of bad input with their codes, no 5xx, nothing written, and stays up`, async () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
    const before = await snapshotKeys(services.redis, prefix, partitions);
    const failures: string[] = [];
    for (const [name, send, code] of cases) {
      const answer = await send();
      if (answer.status >= 500 || codeOf(answer) !== code) {
        failures.push(`${name}: HTTP ${answer.status}, ${JSON.stringify(answer.errors ?? answer.text).slice(0, 300)} (expected ${code})`);
      }
    }
    expect(failures).toEqual([]);
    expect(await snapshotKeys(services.redis, prefix, partitions)).toEqual(before);
    // Still up, still right.
    const stats = await graphql(url, StatsDocument);
    expect(stats.status).toBe(200);
    expect(stats.data!.stats.scheduled).toBe(1);
  });

  it('refuses a taskFired cursor that is not one, over graphql-ws', async () => {
    const client = wsClient(url);
    try {
      const feed = collect(client, TaskFiredDocument, { after: 'f1.bm90LWEtY3Vyc29y' });
      await waitFor(() => feed.error, 10_000, 'the error');
      expect(JSON.stringify(feed.error)).toContain('BAD_USER_INPUT');
    } finally {
      await client.dispose();
    }
  });

  it('gives each malformed request its documented reason, over HTTP and graphql-ws alike, and nothing of the server\'s own', async () => {
    const noQuery = await postJson(url, JSON.stringify({ variables: {} }));
    expect(noQuery.errors?.[0]?.extensions).toEqual({ code: 'BAD_USER_INPUT', reason: 'BAD_REQUEST' });
    const client = wsClient(url);
    try {
      for (const [query, reason] of [
        ['{ task(id: ', 'GRAPHQL_PARSE_FAILED'],
        ['{ task(id: "0-x") { colour } }', 'GRAPHQL_VALIDATION_FAILED'],
      ] as const) {
        const refused = await new Promise<unknown>((resolve) => {
          client.subscribe({ query }, { next: () => resolve('an answer'), error: resolve, complete: () => resolve('no error') });
        });
        const [error] = refused as { extensions: Record<string, unknown> }[];
        expect(error?.extensions).toEqual({ code: 'BAD_USER_INPUT', reason });
      }
    } finally {
      await client.dispose();
    }
  });

  it('tells what is wrong with a time in words a person can act on', async () => {
    const answer = await schedule(url, 'm', '2026-11-07T22:49:00');
    expect(answer.errors![0]!.message).toMatch(/ambiguous.*offset/);
  });
});

describe('Redis stopped', () => {
  it('answers UNAVAILABLE within 2 s on every operation, never a 5xx, and recovers when Redis is back', async () => {
    const redisServer = await startRedisServer();
    const prefix = uniquePrefix('api-down');
    const { service, stop } = await startService(testEnv(prefix, { REDIS_URL: redisServer.url, ROLE: 'api', PORT: '0' }));
    const url = `http://127.0.0.1:${service.server!.port}/graphql`;
    let restarted: PrivateRedis | undefined;
    let slowest = 0;
    try {
      const task = await graphql(url, DelayedTaskDocument, { message: 'before the outage', time: isoIn(3_600_000) });
      const id = task.data!.delayedTask.id;
      await redisServer.stop('SIGKILL');

      const operations: [string, () => Promise<GraphQLAnswer<unknown>>][] = [
        ['delayedTask', () => graphql(url, DelayedTaskDocument, { message: 'during', time: isoIn(60_000) })],
        ['delayedTasks', () => graphql(url, DelayedTasksDocument, { tasks: [{ message: 'a', time: isoIn(1000) }, { message: 'b', time: isoIn(2000) }] })],
        ['task', () => graphql(url, TaskDocument, { id })],
        ['tasks', () => graphql(url, TasksDocument, { status: 'SCHEDULED', first: 10 })],
        ['cancelTask', () => graphql(url, CancelTaskDocument, { id })],
        ['rescheduleTask', () => graphql(url, RescheduleTaskDocument, { id, time: isoIn(1000) })],
        ['stats', () => graphql(url, StatsDocument)],
      ];
      for (const [name, send] of operations) {
        const started = Date.now();
        const answer = await send();
        const elapsed = Date.now() - started;
        slowest = Math.max(slowest, elapsed);
        expect({ name, status: answer.status, code: codeOf(answer) }).toEqual({ name, status: 200, code: 'UNAVAILABLE' });
        expect(elapsed, name).toBeLessThan(2000);
      }
      const client = wsClient(url);
      try {
        const started = Date.now();
        const feed = collect(client, TaskFiredDocument, {});
        await waitFor(() => feed.error, 5000, 'the subscription error');
        expect(Date.now() - started).toBeLessThan(2000);
        expect(JSON.stringify(feed.error)).toContain('UNAVAILABLE');
      } finally {
        await client.dispose();
      }
      const rest = await fetch(url.replace('/graphql', '/api/tasks/delayedTask'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'rest', time: isoIn(1000) }),
      });
      expect(rest.status).toBe(503);
      expect(rest.headers.get('retry-after')).toBe('1');
      console.log(`UNAVAILABLE answered in at most ${slowest} ms`);

      // Redis back on the same port and data: the API answers again, with nothing lost.
      restarted = await startPrivateRedis({ port: redisServer.port, dir: redisServer.dir });
      await waitFor(async () => (await graphql(url, TaskDocument, { id })).data?.task?.message === 'before the outage', 15_000, 'the API to recover');
    } finally {
      await stop();
      await restarted?.stop('SIGKILL');
      await redisServer.cleanup();
    }
  });
});
