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
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { ServiceProcess, connect, deletePrefix, freePort, redisNow, sleep, testEnv, uniquePrefix, waitFor } from './helpers.js';
import { scanKeys } from './api-helpers.js';

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
    }),
  );
  await service.started();
});

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

const rssMb = () => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${service.pid}/status`, 'utf8'));
  return Number(match![1]) / 1024;
};

const SCHEDULE = 'mutation($m: String!, $t: DateTime!) { delayedTask(message: $m, time: $t) { id } }';
const BULK = 'mutation($t: [DelayedTaskInput!]!) { delayedTasks(tasks: $t) { id } }';

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
async function watch(name: string, attack: (fired: Promise<void>) => Promise<void>, dueInMs = 800): Promise<Watched> {
  const due = (await redisNow(redis)) + dueInMs;
  const scheduled = JSON.parse((await gql(SCHEDULE, { m: `due during ${name}`, t: new Date(due).toISOString() }, CANARY_ADDRESS)).text) as { data: { delayedTask: { id: string } } };
  const id = scheduled.data.delayedTask.id;
  const taskKey = `{${prefix}:${id.split('-')[0]}}:task:${id}`;
  let done = false;
  const fired = waitFor(async () => (await redis.hget(taskKey, 's')) === 'FIRED', 30_000, `the task due during ${name} to fire`).then(() => undefined);
  const watched = { canaryMaxMs: 0, canaries: 0, peakRssMb: rssMb() };
  const canary = (async () => {
    while (!done) {
      const started = performance.now();
      const reply = await gql('{ task(id: "0-0000000000000000") { id } }', undefined, CANARY_ADDRESS).catch((error: Error) => ({ status: 0, text: error.message }));
      expect(reply.status, `canary during ${name}: ${reply.text}`).toBe(200);
      watched.canaryMaxMs = Math.max(watched.canaryMaxMs, performance.now() - started);
      watched.canaries++;
      watched.peakRssMb = Math.max(watched.peakRssMb, rssMb());
      await sleep(100);
    }
  })();
  try {
    await Promise.all([attack(fired), fired]);
  } finally {
    done = true;
    await canary;
  }
  const lateByMs = Number(await redis.hget(taskKey, 'l'));
  const figures = { ...watched, lateByMs };
  console.log(`volume ${name}: canary max ${figures.canaryMaxMs.toFixed(0)} ms over ${figures.canaries}, peak RSS ${figures.peakRssMb.toFixed(0)} MB, task due during it fired ${lateByMs} ms late`);
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

const storedTasks = async () => (await scanKeys(redis, `{${prefix}:*}:task:*`)).length;

describe('abuse by volume', () => {
  it('refuses subscriptions inside a batch or without a stream to deliver them, and keeps none', async () => {
    const subscription = { query: 'subscription { taskFired { cursor task { id message } } }' };
    const answers: string[] = [];
    await watch('batched subscriptions', (fired) =>
      repeatUntil(
        fired,
        async () => {
          const replies = await Promise.all([
            ...Array.from({ length: 10 }, () => send('POST', '/graphql', { body: JSON.stringify(Array.from({ length: 10 }, () => subscription)) })),
            send('POST', '/graphql', { body: JSON.stringify(subscription), headers: { accept: 'application/json' } }),
            send('GET', `/graphql?query=${encodeURIComponent(subscription.query)}`, { headers: { accept: 'application/json' } }),
          ]);
          answers.push(...replies.map((reply) => `${reply.status} ${codes(reply).join(',')}`));
        },
        20,
      ),
    );
    expect(new Set(answers)).toEqual(new Set(['400 BAD_USER_INPUT/SUBSCRIPTION_TRANSPORT']));
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

  it('caps the subscriptions one socket holds', async () => {
    const { default: WebSocket } = await import('ws');
    const refused: string[] = [];
    await watch('subscriptions per socket', async (fired) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws');
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
      socket.send(JSON.stringify({ type: 'connection_init' }));
      await new Promise((resolve) => socket.once('message', resolve));
      socket.on('message', (data: Buffer) => {
        const message = JSON.parse(data.toString()) as { type: string; payload?: { extensions?: { reason?: string } }[] };
        if (message.type === 'error') refused.push(message.payload?.[0]?.extensions?.reason ?? 'none');
      });
      for (let i = 0; i < 2000; i++) socket.send(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: 'subscription { taskFired { cursor } }' } }));
      await waitFor(() => refused.length >= 1980, 20_000, 'the refusals');
      await fired;
      socket.close();
    });
    expect(refused.length).toBe(1980);
    expect(new Set(refused)).toEqual(new Set(['LIMIT_EXCEEDED']));
  });
});
