/**
 * Abuse by volume: each finding of the black-box review (shared/reviews/security-2026-11.md)
 * replayed against a real service process (ROLE=all, API and worker in one), on loopback.
 * Every attack is watched the same way, and must leave:
 * - the process up;
 * - its RSS under RSS_BOUND_MB throughout;
 * - a canary request from another client address (127.0.0.2) answered within 1 s, every
 *   time it asks (every 100 ms) during the attack;
 * - a task due during the attack fired within 100 ms of its time, by its own lateByMs
 *   (Redis time).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { connect as connectTcp, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { cpus, loadavg } from 'node:os';
import { execSync } from 'node:child_process';
import type { Redis } from 'ioredis';
import { ServiceProcess, readTasksAt, statusAt, connect, deletePrefix, freePort, redisNow, sleep, startService, testEnv, uniquePrefix, waitFor } from './helpers.js';
import { scanKeys } from './api-helpers.js';
import { createKeys } from '../src/scheduler/keys.js';
import { defineScripts } from '../src/scheduler/scripts.js';
import { createTaskStore } from '../src/scheduler/tasks.js';

/**
 * The process's RSS must stay under this. At rest it is 190-230 MB (tsx, yoga, the worker);
 * the review's attacks took it to 2.4-4.4 GB.
 */
const RSS_BOUND_MB = 450;
const CANARY_BOUND_MS = 1000;
const LATENESS_BOUND_MS = 100;
/** The canary's address: a client other than the attacker, as the per-client caps see it. */
const CANARY_ADDRESS = '127.0.0.2';
const MAX_BULK = 1000;
const GOOD_ORIGIN = 'https://good.example';
const EVIL_ORIGIN = 'https://evil.example';
const HEADERS_TIMEOUT_MS = 2000;
const REQUEST_TIMEOUT_MS = 3000;
const WRITE_TIMEOUT_MS = 2000;
const MAX_CONNECTIONS = 800;
const PER_CLIENT = 400;
const WS_PER_CLIENT = 100;
const WS_IDLE_MS = 2000;
/** Node enforces the header and request timeouts when it checks, every quarter of the header timeout at most once a second. */
const CHECK_SLACK_MS = 1500;

const prefix = uniquePrefix('volume');
let service: ServiceProcess;
let redis: Redis;
let port = 0;
let url = '';

beforeAll(async () => {
  redis = await connect();
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  service = new ServiceProcess(
    testEnv(prefix, {
      ROLE: 'all',
      PORT: String(port),
      LOG_LEVEL: 'info',
      MAX_BULK: String(MAX_BULK),
      MAX_SUBSCRIPTIONS_PER_SOCKET: '20',
      MAX_SUBSCRIPTIONS: '50',
      CORS_ORIGINS: GOOD_ORIGIN,
      HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      WRITE_TIMEOUT_MS: String(WRITE_TIMEOUT_MS),
      MAX_CONNECTIONS: String(MAX_CONNECTIONS),
      OPS_CONNECTIONS: '32',
      MAX_CONNECTIONS_PER_CLIENT: String(PER_CLIENT),
      MAX_WEBSOCKETS: '300',
      MAX_WEBSOCKETS_PER_CLIENT: String(WS_PER_CLIENT),
      WEBSOCKET_IDLE_MS: String(WS_IDLE_MS),
    }),
  );
  await service.started();
  await warmUp();
});

/**
 * One of each request the attacks send, and a task fired, before any is measured: the first
 * of each compiles its code paths and fills the caches (the GraphiQL page is rendered and
 * gzipped once), which on a cold process cost a few hundred ms once.
 */
async function warmUp(): Promise<void> {
  const subscription = JSON.stringify({ query: 'subscription { taskFired { cursor } }' });
  const scheduled = JSON.parse((await gql(SCHEDULE, { m: 'warm-up', t: new Date().toISOString() })).text) as { data: { delayedTask: { id: string } } };
  const id = scheduled.data.delayedTask.id;
  await Promise.all([
    send('POST', '/graphql', { body: `[${subscription}]` }),
    send('POST', '/graphql', { body: JSON.stringify({ query: BULK, variables: { t: [] } }) }),
    send('GET', '/graphql', { headers: { accept: 'text/html', 'accept-encoding': 'gzip' } }),
    send('OPTIONS', '/graphql', { headers: { origin: 'https://evil.example' } }),
    gql('{ tasks(status: CANCELLED, first: 1) { nodes { id } } }'),
  ]);
  const sse = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: subscription });
  await sse.body?.cancel();
  await waitFor(async () => (await statusAt(redis, prefix, id)) === 'FIRED', 10_000, 'the warm-up task fired');
}

afterAll(async () => {
  await service.stop();
  await deletePrefix(redis, prefix);
  await redis.quit();
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One HTTP request on a fresh connection from a chosen local address. */
function send(method: string, path: string, options: { body?: string; headers?: Record<string, string>; from?: string; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method, path, agent: false, localAddress: options.from, headers: { 'content-type': 'application/json', ...options.headers }, timeout: options.timeoutMs ?? 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

const gql = (query: string, variables?: Record<string, unknown>, from?: string, headers?: Record<string, string>) =>
  send('POST', '/graphql', { body: JSON.stringify({ query, variables }), from, headers });

const codes = (reply: Reply): string[] => {
  try {
    const body = JSON.parse(reply.text) as { errors?: { extensions?: { code?: string; reason?: string } }[] } | { errors?: { extensions?: { code?: string; reason?: string } }[] }[];
    return (Array.isArray(body) ? body : [body]).flatMap((b) => (b.errors ?? []).map((e) => `${e.extensions?.code}/${e.extensions?.reason ?? ''}`));
  } catch {
    return [`HTTP_${reply.status}`];
  }
};

/**
 * How long the service's main thread has waited, runnable, for a CPU (Linux schedstat, ms):
 * the box's other load, not this process's work. Printed beside lateness, so a late task
 * says whether the machine starved the process or the process blocked itself.
 */
const runQueueWaitMs = () => Number(readFileSync(`/proc/${service.pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;

const rssMb = () => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${service.pid}/status`, 'utf8'));
  return Number(match![1]) / 1024;
};

const SCHEDULE = 'mutation($m: String!, $t: DateTime!) { delayedTask(message: $m, time: $t) { id } }';
const BULK = 'mutation($t: [DelayedTaskInput!]!) { delayedTasks(tasks: $t) { id } }';

/**
 * The canary, in a thread of its own so that the attack's own work in this process (opening
 * a thousand sockets, reading what they were sent) does not delay it: it measures the service.
 * Every 100 ms, one request on a fresh connection from CANARY_ADDRESS.
 */
const CANARY = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const { port, path, from } = workerData;
const body = JSON.stringify({ query: '{ task(id: "0-0000000000000000") { id } }' });
let stop = false;
let slowest = { total: 0 };
parentPort.on('message', () => (stop = true));
const ask = () => new Promise((resolve) => {
  const started = performance.now();
  let connected = 0;
  const req = http.request({ host: '127.0.0.1', port, path, method: path === '/graphql' ? 'POST' : 'GET', agent: false, localAddress: from, timeout: 5000,
    headers: { 'content-type': 'application/json' } }, (res) => {
    const headed = performance.now() - started;
    res.resume();
    res.on('end', () => {
      slowest = performance.now() - started > slowest.total ? { total: performance.now() - started, connected, headed } : slowest;
      resolve(res.statusCode === 200 ? undefined : 'HTTP ' + res.statusCode);
    });
  });
  req.on('socket', (socket) => socket.once('connect', () => (connected = performance.now() - started)));
  req.on('timeout', () => req.destroy(new Error('no answer in 5 s')));
  req.on('error', (error) => resolve(error.message));
  req.end(path === '/graphql' ? body : undefined);
});
(async () => {
  let canaryMaxMs = 0, canaries = 0;
  const failures = [];
  while (!stop) {
    const started = performance.now();
    const failure = await ask();
    if (failure) failures.push(failure);
    canaryMaxMs = Math.max(canaryMaxMs, performance.now() - started);
    canaries++;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  parentPort.postMessage({ canaryMaxMs, canaries, failures, slowest });
})();
`;

interface Watched {
  canaryMaxMs: number;
  canaries: number;
  peakRssMb: number;
  lateByMs: number;
}

/**
 * Runs an attack while watching the service (see the file's head). The attack is handed a
 * promise that settles once the task due during it has fired: an attack that holds
 * resources holds them until then.
 */
async function watch(name: string, attack: (fired: Promise<void>) => Promise<unknown>, dueInMs = 800, canaryPath = '/graphql'): Promise<Watched> {
  const due = (await redisNow(redis)) + dueInMs;
  const scheduled = JSON.parse((await gql(SCHEDULE, { m: `due during ${name}`, t: new Date(due).toISOString() }, CANARY_ADDRESS)).text) as { data: { delayedTask: { id: string } } };
  const id = scheduled.data.delayedTask.id;
  const fired = waitFor(async () => (await statusAt(redis, prefix, id)) === 'FIRED', 30_000, `the task due during ${name} to fire`).then(() => undefined);
  const canary = new Worker(CANARY, { eval: true, workerData: { port, path: canaryPath, from: CANARY_ADDRESS } });
  let peakRssMb = rssMb();
  const waitedBefore = runQueueWaitMs();
  const sampler = setInterval(() => (peakRssMb = Math.max(peakRssMb, rssMb())), 50);
  let watched: { canaryMaxMs: number; canaries: number; failures: string[]; slowest: { connected?: number; headed?: number } };
  try {
    await Promise.all([attack(fired), fired]);
  } finally {
    clearInterval(sampler);
    const report = new Promise<typeof watched>((resolve) => canary.once('message', resolve));
    canary.postMessage('stop');
    watched = await report;
    await canary.terminate();
  }
  expect(watched.failures, `canary during ${name}`).toEqual([]);
  const lateByMs = (await readTasksAt(redis, prefix, [id]))[0]?.lateByMs ?? Number.NaN;
  const starvedMs = runQueueWaitMs() - waitedBefore;
  const figures = { ...watched, peakRssMb, lateByMs };
  const { connected = 0, headed = 0 } = figures.slowest;
  console.log(`volume ${name}: canary max ${figures.canaryMaxMs.toFixed(0)} ms (connected in ${connected.toFixed(0)}, headers in ${headed.toFixed(0)}) over ${figures.canaries}, peak RSS ${figures.peakRssMb.toFixed(0)} MB, task due during it fired ${lateByMs} ms late; the process waited ${starvedMs.toFixed(0)} ms for a CPU in all (load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores)`);
  expect(service.child.exitCode).toBeNull();
  expect(figures.peakRssMb).toBeLessThan(RSS_BOUND_MB);
  expect(figures.canaryMaxMs).toBeLessThan(CANARY_BOUND_MS);
  expect(figures.lateByMs).toBeLessThanOrEqual(LATENESS_BOUND_MS);
  return figures;
}

/** Repeats `round` until the task due during the attack fired (and at least `min` times). */
async function repeatUntil(fired: Promise<void>, round: () => Promise<void>, min = 1): Promise<number> {
  let over = false;
  void fired.then(() => (over = true));
  let rounds = 0;
  while (!over || rounds < min) {
    await round();
    rounds++;
  }
  return rounds;
}

/** What requests sent over and over during an attack got: `<status> <code/reason,...> <extra>` each, the distinct ones. */
async function answersDuring(name: string, requests: () => Promise<Reply>[], min: number, extra = (_reply: Reply) => ''): Promise<Set<string>> {
  const answers = new Set<string>();
  await watch(name, (fired) =>
    repeatUntil(
      fired,
      async () => {
        for (const reply of await Promise.all(requests())) answers.add(`${reply.status} ${codes(reply).join(',')}${extra(reply)}`);
      },
      min,
    ),
  );
  return answers;
}

/** A gauge of the service's /metrics. */
async function gauge(name: string): Promise<number> {
  const text = (await send('GET', '/metrics', { from: CANARY_ADDRESS })).text;
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
}

const storedTasks = async () => (await scanKeys(redis, `{${prefix}:*}:task:*`)).length;

describe('abuse by volume', () => {
  it('refuses subscriptions inside a batch or without a stream to deliver them, and keeps none', async () => {
    const subscription = { query: 'subscription { taskFired { cursor task { id message } } }' };
    const answers = await answersDuring(
      'batched subscriptions',
      () => [
        ...Array.from({ length: 10 }, () => send('POST', '/graphql', { body: JSON.stringify(Array.from({ length: 10 }, () => subscription)) })),
        send('POST', '/graphql', { body: JSON.stringify(subscription), headers: { accept: 'application/json' } }),
        send('GET', `/graphql?query=${encodeURIComponent(subscription.query)}`, { headers: { accept: 'application/json' } }),
      ],
      20,
    );
    expect(answers).toEqual(new Set(['400 BAD_USER_INPUT/SUBSCRIPTION_TRANSPORT']));
    // Over SSE a subscription is still served.
    const sse = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify(subscription) });
    expect(sse.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await sse.body?.cancel();
  });

  it('bounds the tasks one request creates over aliases and batch entries, and writes nothing when over', async () => {
    const tasks = Array.from({ length: MAX_BULK }, (_, i) => ({ message: `alias ${i}`, time: new Date(Date.now() + 86_400_000).toISOString() }));
    const aliased = `mutation($t: [DelayedTaskInput!]!) { ${Array.from({ length: 30 }, (_, i) => `a${i}: delayedTasks(tasks: $t) { id }`).join(' ')} }`;
    const before = await storedTasks();
    const answers: string[] = [];
    await watch('alias x bulk x batch', (fired) =>
      repeatUntil(
        fired,
        async () => {
          const reply = await send('POST', '/graphql', { body: JSON.stringify(Array.from({ length: 10 }, () => ({ query: aliased, variables: { t: tasks } }))) });
          answers.push(`${reply.status} ${codes(reply).join(',')}`);
        },
        5,
      ),
    );
    expect(new Set(answers)).toEqual(new Set(['400 BAD_USER_INPUT/LIMIT_EXCEEDED']));
    // Two aliases of half the budget each fit; one task more does not, literal or not.
    const half = tasks.slice(0, MAX_BULK / 2);
    expect(codes(await gql(`mutation($t: [DelayedTaskInput!]!) { a: delayedTasks(tasks: $t) { id } b: delayedTasks(tasks: $t) { id } }`, { t: half }))).toEqual([]);
    const over = await gql(`mutation($t: [DelayedTaskInput!]!, $m: String!, $d: DateTime!) { a: delayedTasks(tasks: $t) { id } b: delayedTask(message: $m, time: $d) { id } }`, {
      t: tasks,
      m: 'one more',
      d: tasks[0]!.time,
    });
    expect(codes(over)).toEqual(['BAD_USER_INPUT/LIMIT_EXCEEDED']);
    // The task due during the attack, and the two halves.
    expect(await storedTasks()).toBe(before + 1 + MAX_BULK);
  });

  it('caps the subscriptions one socket holds, and one process, and closes a socket that floods', async () => {
    const { default: WebSocket } = await import('ws');
    type Errors = { extensions?: { reason?: string } }[];
    const refused: string[] = [];
    const closes: number[] = [];
    const open = async () => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws');
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
      socket.send(JSON.stringify({ type: 'connection_init' }));
      await new Promise((resolve) => socket.once('message', resolve));
      socket.on('message', (data: Buffer) => {
        const message = JSON.parse(data.toString()) as { type: string; payload?: Errors | { errors?: Errors } };
        const errors = message.type === 'error' ? (message.payload as Errors) : message.type === 'next' ? (message.payload as { errors?: Errors }).errors : undefined;
        if (errors) refused.push(errors[0]?.extensions?.reason ?? 'none');
      });
      socket.once('close', (code) => closes.push(code));
      return socket;
    };
    const subscribe = (socket: InstanceType<typeof WebSocket>, count: number, from = 0) => {
      for (let i = from; i < from + count; i++) socket.send(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: 'subscription { taskFired { cursor } }' } }));
    };
    const sockets: InstanceType<typeof WebSocket>[] = [];
    try {
      await watch('subscriptions per socket', async (fired) => {
        // One socket: 20 (its cap) are served, the 21st refused; a flood of 2,000 closes it.
        const first = await open();
        sockets.push(first);
        subscribe(first, 21);
        await waitFor(() => refused.length >= 1, 10_000, 'the socket cap');
        expect(refused).toEqual(['LIMIT_EXCEEDED']);
        subscribe(first, 2000, 21);
        await waitFor(() => closes.length >= 1, 10_000, 'the flooding socket closed');
        expect(closes).toEqual([4429]);
        await waitFor(async () => (await gauge('punctual_api_subscriptions')) === 0, 10_000, 'the closed socket\'s subscriptions released');
        // Three more x 20: the process serves 50 (its cap) and refuses 10.
        refused.length = 0;
        sockets.push(...(await Promise.all([open(), open(), open()])));
        for (const socket of sockets.slice(1)) subscribe(socket, 20);
        await waitFor(() => refused.length >= 10, 10_000, 'the process cap');
        expect(refused).toEqual(Array(10).fill('TOO_MANY_SUBSCRIPTIONS'));
        await fired;
      });
    } finally {
      for (const socket of sockets) socket.close();
    }
  });

  it('lists CANCELLED tasks from an index, with 40,000 tasks stored', async () => {
    // Stored through the core (one script call per 1,000), as the review's two H3 requests would have.
    defineScripts(redis);
    const store = createTaskStore(redis, createKeys(prefix, 4), { horizonMs: 3650 * 86_400_000, retentionMs: 7 * 86_400_000, maxMessageBytes: 65_536, maxBulk: MAX_BULK });
    const time = Date.now() + 86_400_000;
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push(...(await store.scheduleMany(Array.from({ length: MAX_BULK }, (_, j) => ({ message: `stored ${i}-${j}`, time })))).map((task) => task.id));
    const ended = await Promise.all([ids[0]!, ids[20_000]!, ids[39_999]!].map((id) => store.cancel(id)));
    // Listed by when they ended, then id (two cancels may share a millisecond).
    const cancelled = ended.sort((a, b) => a.endedAt! - b.endedAt! || (a.id < b.id ? -1 : 1)).map((task) => task.id);
    const listing = `{ ${Array.from({ length: 10 }, (_, i) => `a${i}: tasks(status: CANCELLED, first: 1) { nodes { id } pageInfo { hasNextPage endCursor } }`).join(' ')} }`;
    const answers = await answersDuring('CANCELLED listing, 40,000 stored', () => [gql(listing), gql(listing)], 10, (reply) => {
      const data = (JSON.parse(reply.text) as { data?: Record<string, { nodes: { id: string }[] }> }).data;
      return ` ${data?.a9?.nodes.map((node) => node.id).join(',')}`;
    });
    // The first to end first, and every alias the same.
    expect(answers).toEqual(new Set([`200  ${cancelled[0]}`]));
    // The whole listing, page by page, is exactly the three, in that order.
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const page = JSON.parse((await gql('query($after: String) { tasks(status: CANCELLED, first: 2, after: $after) { nodes { id } pageInfo { endCursor hasNextPage } } }', { after })).text) as {
        data: { tasks: { nodes: { id: string }[]; pageInfo: { endCursor: string | null; hasNextPage: boolean } } };
      };
      seen.push(...page.data.tasks.nodes.map((node) => node.id));
      after = page.data.tasks.pageInfo.hasNextPage ? page.data.tasks.pageInfo.endCursor : null;
    } while (after);
    expect(seen).toEqual(cancelled);
    // A task that expired (its hash gone) is left out, and its entry dropped from the index.
    const keys = createKeys(prefix, 4);
    const partition = Number(cancelled[1]!.split('-')[0]);
    await redis.del(keys.task(partition, cancelled[1]!));
    const after1 = JSON.parse((await gql('{ tasks(status: CANCELLED, first: 10) { nodes { id } } }')).text) as { data: { tasks: { nodes: { id: string }[] } } };
    expect(after1.data.tasks.nodes.map((node) => node.id)).toEqual([cancelled[0], cancelled[2]]);
    expect(await redis.zscore(keys.cancelled(partition), cancelled[1]!)).toBeNull();
  });
});

type RawSocket = Socket & { closedAt?: number; received?: number };

/** A raw TCP connection from a chosen local address that records when the server closes it; resolves once connected or closed. */
function rawSocket(from = '127.0.0.1'): Promise<RawSocket> {
  return new Promise((resolve) => {
    const socket: RawSocket = connectTcp({ host: '127.0.0.1', port, localAddress: from });
    socket.on('error', () => {});
    socket.once('close', () => {
      socket.closedAt = Date.now();
      resolve(socket);
    });
    socket.once('connect', () => resolve(socket));
  });
}

/** `count` raw connections, opened 100 at a time. */
async function rawSockets(count: number, from = '127.0.0.1'): Promise<RawSocket[]> {
  const sockets: RawSocket[] = [];
  while (sockets.length < count) sockets.push(...(await Promise.all(Array.from({ length: Math.min(100, count - sockets.length) }, () => rawSocket(from)))));
  return sockets;
}

const allClosed = (sockets: RawSocket[], timeoutMs: number, what: string) =>
  waitFor(() => sockets.every((socket) => socket.closedAt !== undefined), timeoutMs, `${what} closed by the server`);

/** Connections established to the service's port, on its side (what the kernel holds for it, accepted or queued). */
const serverConnections = () => Number(execSync(`ss -Htn state established '( sport = :${port} )' | wc -l`).toString().trim());

/**
 * Waits until the service holds at most a few connections (the canary's, at most). Counted on
 * the server's side: a connection the kernel dropped from a full accept backlog looks open to
 * the client that sent nothing, although the server never had it.
 */
const serverDropped = (timeoutMs: number, what: string) =>
  waitFor(() => serverConnections() <= 2, timeoutMs, `${what} closed by the server`).catch(async (error: Error) => {
    throw new Error(`${error.message}: ${serverConnections()} established, ${await gauge('punctual_api_connections')} open by the service's count`);
  });

describe('abuse by volume: connections and browsers', () => {
  it('keeps pages of other origins out of HTTP, SSE and WebSockets, and answers only its host names', async () => {
    const subscription = encodeURIComponent('subscription { taskFired { cursor } }');
    const seen = await answersDuring(
      'cross-origin',
      () => [
        send('OPTIONS', '/graphql', { headers: { origin: EVIL_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } }),
        send('OPTIONS', '/graphql', { headers: { origin: 'null', 'access-control-request-method': 'POST' } }),
        send('POST', '/graphql', { body: '{"query":"{ stats { due } }"}', headers: { origin: EVIL_ORIGIN } }),
        send('GET', `/graphql?query=${subscription}`, { headers: { origin: EVIL_ORIGIN, accept: 'text/event-stream' } }),
        send('POST', '/api/tasks/delayedTask', { body: '{"time":"2030-01-01T00:00:00Z","message":"x"}', headers: { origin: EVIL_ORIGIN } }),
        send('POST', '/graphql', { body: '{"query":"{ stats { due } }"}', headers: { host: `rebound.evil.example:${port}` } }),
      ],
      20,
      (reply) => ` ${reply.headers['access-control-allow-origin'] ?? '-'}`,
    );
    expect(seen).toEqual(new Set(['403 FORBIDDEN/ -']));
    const { default: WebSocket } = await import('ws');
    const upgrade = (headers: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws', { headers });
        socket.once('open', () => {
          socket.close();
          resolve('open');
        });
        socket.once('unexpected-response', (_req, res) => resolve(`HTTP ${res.statusCode}`));
        socket.once('error', () => resolve('error'));
      });
    expect(await upgrade({ origin: EVIL_ORIGIN })).toBe('HTTP 403');
    expect(await upgrade({ origin: `http://127.0.0.1:${port}` })).toBe('open');
    expect(await upgrade({ origin: GOOD_ORIGIN })).toBe('open');
    // The allow-listed origin gets CORS; the page's own origin and clients without one are served.
    const preflight = await send('OPTIONS', '/graphql', { headers: { origin: GOOD_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    expect([preflight.status, preflight.headers['access-control-allow-origin']]).toEqual([204, GOOD_ORIGIN]);
    const clients: Record<string, string>[] = [{ origin: `http://127.0.0.1:${port}` }, { host: `localhost:${port}` }, {}];
    for (const headers of clients) {
      const reply = await send('POST', '/graphql', { body: '{"query":"{ stats { due } }"}', headers });
      // Yoga names the listed origin to any other: a browser reads that as "not you".
      expect([reply.status, reply.headers['access-control-allow-origin'] ?? GOOD_ORIGIN]).toEqual([200, GOOD_ORIGIN]);
    }
  });

  it('closes connections that trickle their headers or their body', async () => {
    const trickling: RawSocket[] = [];
    let openedAt = 0;
    await watch('trickled headers and bodies', async (fired) => {
      openedAt = Date.now();
      for (let i = 0; i < 300; i++) {
        const socket = await rawSocket();
        socket.write(i % 2 === 0 ? 'POST /graphql HTTP/1.1\r\nHost: localhost\r\nX-' : 'POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{');
        trickling.push(socket);
      }
      const drip = setInterval(() => {
        for (const socket of trickling) if (socket.closedAt === undefined) socket.write('a');
      }, 200);
      try {
        await fired;
        await allClosed(trickling, REQUEST_TIMEOUT_MS + CHECK_SLACK_MS + 2000, 'trickling connections');
      } finally {
        clearInterval(drip);
      }
    });
    const longest = Math.max(...trickling.map((socket) => socket.closedAt! - openedAt));
    console.log(`volume trickle: 300 trickling connections all closed within ${longest} ms (REQUEST_TIMEOUT_MS ${REQUEST_TIMEOUT_MS})`);
    expect(longest).toBeLessThan(REQUEST_TIMEOUT_MS + CHECK_SLACK_MS + 1000);
  });

  it('caps idle connections and WebSockets per client, and closes them', async () => {
    const { default: WebSocket } = await import('ws');
    const raw: RawSocket[] = [];
    const sockets: InstanceType<typeof WebSocket>[] = [];
    const outcomes: string[] = [];
    await watch('idle sockets', async (fired) => {
      raw.push(...(await rawSockets(1000)));
      const opening = Array.from(
        { length: 300 },
        () =>
          new Promise<void>((resolve) => {
            const socket = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws', { localAddress: '127.0.0.3' });
            sockets.push(socket);
            socket.once('open', () => {
              socket.send(JSON.stringify({ type: 'connection_init' }));
              outcomes.push('open');
              resolve();
            });
            socket.once('unexpected-response', (req, res) => {
              outcomes.push(`HTTP ${res.statusCode}`);
              sockets.splice(sockets.indexOf(socket), 1);
              req.destroy();
              resolve();
            });
            socket.once('error', () => resolve());
          }),
      );
      await Promise.all(opening);
      await fired;
      await serverDropped(HEADERS_TIMEOUT_MS + CHECK_SLACK_MS + 2000, 'idle connections');
      await waitFor(() => sockets.every((socket) => socket.readyState === WebSocket.CLOSED), WS_IDLE_MS + 3000, 'idle WebSockets closed');
    });
    for (const socket of raw) socket.destroy();
    expect(outcomes.filter((o) => o === 'open')).toHaveLength(WS_PER_CLIENT);
    expect(outcomes.filter((o) => o === 'HTTP 503')).toHaveLength(300 - WS_PER_CLIENT);
  });

  it('keeps answering the ops routes when the API has no connection left', async () => {
    const raw: RawSocket[] = [];
    await watch(
      'API full',
      async (fired) => {
        raw.push(...(await rawSockets(MAX_CONNECTIONS / 2, '127.0.0.1')), ...(await rawSockets(MAX_CONNECTIONS / 2, '127.0.0.3')));
        const api = await gql('{ stats { due } }', undefined, CANARY_ADDRESS);
        expect([api.status, codes(api)]).toEqual([503, ['UNAVAILABLE/TOO_MANY_CONNECTIONS']]);
        for (const path of ['/healthz', '/readyz', '/metrics']) expect((await send('GET', path, { from: CANARY_ADDRESS })).status).toBe(200);
        await fired;
        await serverDropped(HEADERS_TIMEOUT_MS + CHECK_SLACK_MS + 2000, 'idle connections');
      },
      1500,
      '/healthz',
    );
    for (const socket of raw) socket.destroy();
  });

  it('serves GraphiQL as one shared, compressed page and cuts off clients that do not read', async () => {
    const gzipped = await fetch(`${url}/graphql`, { headers: { accept: 'text/html', 'accept-encoding': 'gzip' } });
    expect(gzipped.headers.get('content-encoding')).toBe('gzip');
    const page = (await gzipped.text()).length;
    const stuck: RawSocket[] = [];
    await watch('non-reading GraphiQL clients', async (fired) => {
      for (let i = 0; i < 100; i++) {
        const socket = await rawSocket();
        socket.write('GET /graphql HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\r\n');
        socket.pause();
        stuck.push(socket);
      }
      await fired;
      // Held past the write timeout, still reading nothing.
      await sleep(WRITE_TIMEOUT_MS + 500);
    });
    for (const socket of stuck) {
      socket.received = 0;
      socket.on('data', (chunk: Buffer) => (socket.received! += chunk.length));
      socket.resume();
    }
    await allClosed(stuck, 10_000, 'non-reading clients');
    expect(stuck.filter((socket) => socket.received! >= page)).toEqual([]);
  });
});

describe("the review's low findings", () => {
  it('each gets its documented code, and none echoes the request or the schema', async () => {
    const lowPrefix = uniquePrefix('volume-low');
    const hidden = await startService(testEnv(lowPrefix, { INTROSPECTION: 'false', LOG_LEVEL: 'silent' }));
    const base = `http://127.0.0.1:${hidden.service.server!.port}`;
    try {
      const post = async (body: string, contentType = 'application/json', path = '/graphql') => {
        const response = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': contentType }, body });
        return { status: response.status, text: await response.text() };
      };
      const ask = (query: string, variables?: Record<string, unknown>) => post(JSON.stringify({ query, variables }));
      const first = (answer: { text: string }) => (JSON.parse(answer.text) as { errors: { message: string; extensions: Record<string, unknown> }[] }).errors[0]!;
      const cursor = `f1.${Buffer.from(Array(4).fill('9999999999999-0').join(',')).toString('base64url')}`;
      const cases: [string, Promise<{ status: number; text: string }>, string][] = [
        ['enum suggestion', ask('{ tasks(status: FIRE) { nodes { id } } }'), 'BAD_USER_INPUT/GRAPHQL_VALIDATION_FAILED'],
        ['type names', ask('mutation { delayedTasks(tasks: [{ time: "2030-01-01T00:00:00Z" }]) { id } }'), 'BAD_USER_INPUT/GRAPHQL_VALIDATION_FAILED'],
        ['invalid JSON', post('{"query": "{ stats { due } }", oops}'), 'BAD_USER_INPUT/BAD_REQUEST'],
        ['an id of 100,000 characters', ask('mutation($id: ID!) { cancelTask(id: $id) { id } }', { id: 'x'.repeat(100_000) }), 'BAD_USER_INPUT/BAD_REQUEST'],
        ['year 0000 with +14:00', ask('mutation { delayedTask(message: "x", time: "0000-01-01T00:00:00+14:00") { time } }'), 'BAD_USER_INPUT/BAD_REQUEST'],
        ['an alias limit', ask(`{ ${Array.from({ length: 40 }, (_, i) => `a${i}: stats { due }`).join(' ')} }`), 'BAD_USER_INPUT/LIMIT_EXCEEDED'],
        ['two operations, none named', ask('query A { stats { due } } query B { stats { due } }'), 'BAD_USER_INPUT/OPERATION_RESOLUTION_FAILURE'],
        ['text/json', post('{"query":"{ stats { due } }"}', 'text/json'), 'BAD_USER_INPUT/BAD_REQUEST'],
        ['REST as application/graphql', post('{"time":"2030-01-01T00:00:00Z","message":"x"}', 'application/graphql', '/api/tasks/delayedTask'), 'BAD_USER_INPUT/BAD_REQUEST'],
      ];
      for (const [name, answer, expected] of cases) {
        const { message, extensions } = first(await answer);
        expect(`${name}: ${extensions.code}/${extensions.reason}`).toBe(`${name}: ${expected}`);
        expect(JSON.stringify({ message, extensions })).not.toMatch(/FIRED|TaskStatus|DelayedTaskInput|String!|originalError|Syntax Error|x{65}|-000001/);
      }
      // Media types are case-insensitive.
      for (const type of ['APPLICATION/JSON', 'Application/Json; charset=UTF-8']) expect((await post('{"query":"{ stats { due } }"}', type)).text).toBe('{"data":{"stats":{"due":0}}}');
      // A made-up cursor past the newest event: refused, not a silent wait.
      const sse = await fetch(`${base}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query: `subscription { taskFired(after: "${cursor}") { cursor } }` }),
      });
      expect(await sse.text()).toMatch(/"code":"BAD_USER_INPUT","reason":"BAD_CURSOR"/);
    } finally {
      await hidden.stop();
      await deletePrefix(redis, lowPrefix);
    }
  });

  it('logs no error, and no stack, for uploads the client aborts', async () => {
    const before = service.logs().length;
    const aborted = await rawSockets(50);
    for (const socket of aborted) socket.write(`POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"query":`);
    // Aborted mid-body, once the server holds every one of them.
    await waitFor(async () => (await gauge('punctual_api_connections')) >= 50, 10_000, 'the uploads accepted');
    for (const socket of aborted) socket.destroy();
    await waitFor(async () => (await gauge('punctual_api_connections')) <= 1, 10_000, 'the aborted connections gone');
    const logged = service.logs().slice(before);
    expect(logged.filter((record) => record.level >= 40 || 'err' in record)).toEqual([]);
  });
});
