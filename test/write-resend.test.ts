/**
 * Writes safe to resend. ioredis sends a command again when its connection drops before the
 * answer came, and a command held up in the network can reach Redis after its caller gave up.
 * Neither may change what a client was told: a schedule runs once, a resent reschedule answers
 * what the first did, and a write answered UNAVAILABLE never takes effect afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisClient, createRedis } from '../src/redis.js';
import { defineScripts } from '../src/scheduler/scripts.js';
import { createTaskStore, type TaskStore } from '../src/scheduler/tasks.js';
import { SchedulerError } from '../src/scheduler/errors.js';
import { createKeys, partitionOf, partitionOfKey, type Keys } from '../src/scheduler/keys.js';
import { startProxy, type TcpProxy } from './chaos/proxy.js';
import { LineCollector, statusAt, ServiceProcess, SHARED_REDIS_URL, SHARED_REDIS_PORT, countFiredEvents, deletePrefix, firedLogCounts, redisNow, sleep, startService, testEnv, uniquePrefix, useServices, waitFor, freePort } from './helpers.js';
import { codeOf, graphql, snapshotKeys } from './api-helpers.js';
import { DelayedTaskDocument } from './gql/graphql.js';

const suite = useServices(beforeAll, afterAll);

/** A task store whose commands reach Redis through a proxy, as an API's do across a network. */
async function storeThroughProxy(proxy: TcpProxy, keys: Keys, settings: Parameters<typeof createTaskStore>[2]) {
  const redis = createRedis({ url: `redis://127.0.0.1:${proxy.port}` }, 'commands');
  defineScripts(redis);
  await redis.connect();
  return { redis, store: createTaskStore(redis, keys, settings) };
}

const statusOf = (redis: RedisClient, keys: Keys, id: string) => statusAt(redis, keys, id);

async function unavailableWithin(write: Promise<unknown>): Promise<number> {
  const started = Date.now();
  const error = await write.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SchedulerError);
  expect((error as SchedulerError).code).toBe('UNAVAILABLE');
  return Date.now() - started;
}

describe('writes sent again', () => {
  let proxy: TcpProxy;
  let connection: RedisClient | undefined;
  beforeAll(async () => {
    proxy = await startProxy(SHARED_REDIS_PORT);
  });
  afterAll(async () => {
    connection?.disconnect();
    await proxy.close();
  });

  it('a reschedule whose answer was lost, sent again after the task fired at its new time, answers OK as the first run did', async () => {
    const out = new LineCollector();
    const worker = await suite.serviceFor('resend-reschedule', { ROLE: 'worker', PARTITIONS: '2' }, out);
    const keys = worker.service.keys;
    const { redis, store } = await storeThroughProxy(proxy, keys, worker.config);
    connection = redis;
    const task = await store.schedule({ message: 'moved then fired', time: (await redisNow(suite.redis)) + 60_000 });

    // The reschedule runs; its connection is cut before the answer, and the reconnection is
    // held until the worker has fired the task at its new time: then ioredis sends it again.
    proxy.setMode({ kind: 'cut-after', pattern: task.id });
    const newTime = (await redisNow(suite.redis)) - 1000;
    const answer = store.reschedule(task.id, newTime);
    await waitFor(() => proxy.cuts === 1, 2000, 'the reschedule to go through and its connection to be cut');
    proxy.setMode({ kind: 'blackhole' });
    await waitFor(async () => (await statusOf(suite.redis, keys, task.id)) === 'FIRED', 1000, 'the task to fire at its new time');
    proxy.setMode({ kind: 'pass' });

    const moved = await answer;
    expect(moved.time).toBe(newTime);
    expect(moved.status).toBe('FIRED');
    expect(out.count('moved then fired')).toBe(1);
    redis.disconnect();
    connection = undefined;
  });

  it('a schedule, reschedule or cancel answered UNAVAILABLE never takes effect, though Redis receives it afterwards', async () => {
    const worker = await suite.serviceFor('resend-unavailable', { ROLE: 'worker', PARTITIONS: '2' });
    const keys = worker.service.keys;
    const { redis, store } = await storeThroughProxy(proxy, keys, worker.config);
    connection = redis;
    const later = (await redisNow(suite.redis)) + 60_000;
    const [moved, cancelled] = await store.scheduleMany([
      { message: 'to move', time: later },
      { message: 'to cancel', time: later },
    ]);
    const scheduleBefore = await Promise.all([0, 1].map((p) => suite.redis.zrange(keys.schedule(p), 0, -1, 'WITHSCORES')));

    // Every byte is held in the network, and let through only after each caller was answered.
    proxy.setMode({ kind: 'blackhole' });
    const tookMs = await Promise.all([
      unavailableWithin(store.schedule({ message: 'never stored', time: later })),
      unavailableWithin(store.scheduleMany([{ message: 'never stored', time: later }, { message: 'never stored', time: later + 1 }])),
      unavailableWithin(store.reschedule(moved!.id, later + 60_000)),
      unavailableWithin(store.cancel(cancelled!.id)),
    ]);
    for (const ms of tookMs) expect(ms).toBeLessThan(2500);
    proxy.setMode({ kind: 'pass' });
    // Redis runs what it received in order: once a PING sent after them is answered, it ran them.
    await waitFor(() => redis.ping().catch(() => null), 5000, 'the held commands to reach Redis');

    expect(await Promise.all([0, 1].map((p) => suite.redis.zrange(keys.schedule(p), 0, -1, 'WITHSCORES')))).toEqual(scheduleBefore);
    expect(await statusOf(suite.redis, keys, cancelled!.id)).toBe('SCHEDULED');
    expect(Number(await suite.redis.hget(keys.task(Number(moved!.id.split('-')[0]), moved!.id), 't'))).toBe(later);
    redis.disconnect();
    connection = undefined;
  });
});

describe('an API process whose Redis connection goes through a proxy, and a worker reaching Redis directly', () => {
  const prefix = uniquePrefix('api-network');
  const out = new LineCollector();
  let proxy: TcpProxy;
  let worker: Awaited<ReturnType<typeof startService>>;
  let api: ServiceProcess;
  let events: Awaited<ReturnType<typeof countFiredEvents>>;
  let base = '';
  beforeAll(async () => {
    proxy = await startProxy(SHARED_REDIS_PORT);
    const env = testEnv(prefix, { PARTITIONS: '4' });
    worker = await startService({ ...env, ROLE: 'worker' }, out);
    const apiPort = await freePort();
    api = new ServiceProcess({ ...env, ROLE: 'api', LOG_LEVEL: 'info', PORT: String(apiPort), REDIS_URL: `redis://127.0.0.1:${proxy.port}` });
    events = await countFiredEvents(SHARED_REDIS_URL, prefix);
    await api.started();
    base = `http://127.0.0.1:${apiPort}`;
  });
  afterAll(async () => {
    await events.close();
    await api.stop().catch(() => api.kill('SIGKILL'));
    await worker.stop();
    await proxy.close();
    await deletePrefix(suite.redis, prefix);
  });

  it("the seed's REST call whose schedule ran, lost its answer, and was sent again after the task fired: 201 with the task, printed once", async () => {
    proxy.setMode({ kind: 'cut-after', pattern: 'rest once' });
    const answer = fetch(`${base}/api/tasks/delayedTask`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'rest once', time: new Date(Date.now() - 1000).toISOString() }),
    });
    await waitFor(() => proxy.cuts === 1, 5000, 'the schedule to go through and its connection to be cut');
    proxy.setMode({ kind: 'blackhole' });
    await waitFor(() => out.count('rest once') === 1, 1000, 'the task to fire');
    proxy.setMode({ kind: 'pass' });
    const response = await answer;
    expect(response.status).toBe(201);
    const { id } = (await response.json()) as { id: string };
    await waitFor(() => events.counts.get(id) === 1, 5000, 'its event');
    await sleep(1000);
    expect(out.count('rest once')).toBe(1);
    expect(events.counts.get(id)).toBe(1);
  });

  it('40 clients scheduling tasks due at once while the connection is reset every 150 ms: every acknowledged task prints once, and no task prints twice', { timeout: 120_000 }, async () => {
    const url = `${base}/graphql`;
    const acknowledged = new Map<string, string>();
    const answered: Record<string, number> = {};
    const sent: string[] = [];
    let resets = 0;
    const until = Date.now() + 8000;
    const resetter = (async () => {
      while (Date.now() < until) {
        await sleep(150);
        proxy.resetAll();
        resets += 1;
      }
    })();
    const client = async (c: number) => {
      for (let n = 0; Date.now() < until; n++) {
        const message = `resend ${c}-${n}`;
        sent.push(message);
        const answer = await graphql(url, DelayedTaskDocument, { message, time: new Date(Date.now() - 1000).toISOString() });
        const code = answer.data?.delayedTask ? 'OK' : (codeOf(answer) ?? `HTTP ${answer.status}`);
        answered[code] = (answered[code] ?? 0) + 1;
        if (answer.data?.delayedTask) acknowledged.set(message, answer.data.delayedTask.id);
      }
    };
    await Promise.all([resetter, ...Array.from({ length: 40 }, (_, c) => client(c))]);
    const summary = `${resets} resets, ${sent.length} mutations, answers ${JSON.stringify(answered)}`;
    expect(resets).toBeGreaterThan(30);
    expect(Object.keys(answered).filter((code) => code !== 'OK' && code !== 'UNAVAILABLE')).toEqual([]);
    expect(acknowledged.size, summary).toBeGreaterThan(100);

    // Every acknowledged task prints; none prints twice, acknowledged or not.
    await waitFor(() => [...acknowledged.keys()].every((m) => out.count(m) >= 1), 30_000, 'every acknowledged task to print');
    await sleep(1000);
    const printed = new Map<string, number>();
    for (const { line } of out.lines) printed.set(line, (printed.get(line) ?? 0) + 1);
    expect([...printed].filter(([, n]) => n > 1)).toEqual([]);
    expect([...acknowledged.keys()].filter((m) => printed.get(m) !== 1)).toEqual([]);
    const logged = await firedLogCounts(suite.redis, prefix, 4);
    expect([...logged.values()].filter((n) => n !== 1)).toEqual([]);
    expect([...events.counts.values()].filter((n) => n !== 1)).toEqual([]);
    console.log(`api resets: ${summary}, ${printed.size} printed, 0 twice`);
  });
});

describe('a bulk is all or nothing', () => {
  const prefix = uniquePrefix('bulk');
  const keys = createKeys(prefix, 4);
  const settings = { horizonMs: 3_600_000, retentionMs: 60_000, maxMessageBytes: 1024, maxBulk: 1000 };
  let store: TaskStore;
  beforeAll(async () => {
    defineScripts(suite.redis);
    store = createTaskStore(suite.redis, keys, settings);
  });
  afterAll(() => deletePrefix(suite.redis, prefix));

  const keysSpanningPartitions = () => {
    const found = new Map<number, string>();
    for (let i = 0; found.size < 4; i++) found.set(partitionOfKey(`span-${i}`, 4), `span-${i}`);
    return [...found.values()];
  };

  it('without idempotency keys, a bulk is one atomic call in one partition, and bulks take the partitions in turn', async () => {
    const later = (await redisNow(suite.redis)) + 60_000;
    const partitions = [];
    for (let bulk = 0; bulk < 4; bulk++) {
      const tasks = await store.scheduleMany(Array.from({ length: 100 }, (_, i) => ({ message: `bulk ${bulk} ${i}`, time: later })));
      const used = new Set(tasks.map((task) => partitionOf(task.id, 4)));
      expect(used.size).toBe(1);
      partitions.push([...used][0]);
    }
    expect(new Set(partitions).size).toBe(4);
  });

  it('keys spanning every partition, one of them taken with another message: refused, and nothing is written', async () => {
    const later = (await redisNow(suite.redis)) + 60_000;
    const [taken, ...others] = keysSpanningPartitions();
    await store.schedule({ message: 'first', time: later, idempotencyKey: taken });
    const before = await snapshotKeys(suite.redis, prefix);
    const bulk = [...others.map((key, i) => ({ message: `other ${i}`, time: later, idempotencyKey: key })), { message: 'second', time: later, idempotencyKey: taken }];
    await expect(store.scheduleMany(bulk)).rejects.toMatchObject({ code: 'IDEMPOTENCY_CONFLICT', details: { index: 3 } });
    const far = [...others.map((key, i) => ({ message: `other ${i}`, time: later, idempotencyKey: key })), { message: 'far', time: later + 10 * 3_600_000 }];
    await expect(store.scheduleMany(far)).rejects.toMatchObject({ code: 'TIME_TOO_FAR', details: { index: 3 } });
    expect(await snapshotKeys(suite.redis, prefix)).toEqual(before);
  });
});
