/**
 * The end of a task's life: a finished task (FIRED, CANCELLED, DEAD) is kept for the
 * retention time and then expires; a task whose print keeps failing ends DEAD after the
 * maximum deliveries, without holding up the tasks batched with it; answers lost on the way
 * spend no delivery.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LineCollector, SHARED_REDIS_URL, SHARED_REDIS_PORT, countFiredEvents, firedLogCounts, redisNow, useServices, waitFor } from './helpers.js';
import type { TestService } from './helpers.js';
import { startProxy } from './chaos/proxy.js';
import { type TaskStore, createTaskStore } from '../src/scheduler/tasks.js';
import { createTaskListing } from '../src/scheduler/listing.js';
import { defineScripts } from '../src/scheduler/scripts.js';

const suite = useServices(beforeAll, afterAll);

/** The key of a task's hash, and of its idempotency key. */
function keysOf({ service }: TestService, id: string, idempotencyKey?: string) {
  const partition = Number(id.split('-')[0]);
  return {
    task: service.keys.task(partition, id),
    idempotency: idempotencyKey === undefined ? undefined : service.keys.idempotency(partition, idempotencyKey),
  };
}

/** Waits until a task has the status, and returns it. */
function statusReached(running: TestService, id: string, status: string, timeoutMs: number) {
  return waitFor(async () => {
    const task = await running.service.store.get(id);
    return task?.status === status ? task : null;
  }, timeoutMs, `task ${id} to be ${status}`);
}

/** A printer's stream whose writes fail while they hold `poison`, as a full disk or a closed pipe would; it counts them. */
class FailingOn extends LineCollector {
  refused = 0;
  constructor(poison: string) {
    super();
    const write = this.write.bind(this);
    this.write = ((chunk: unknown, ...rest: unknown[]) => {
      if (!String(chunk).includes(poison)) return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
      this.refused += 1;
      const callback = rest.find((arg) => typeof arg === 'function') as ((error: Error) => void) | undefined;
      if (callback) process.nextTick(callback, Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }));
      return false;
    }) as typeof this.write;
  }
}

describe('retention', () => {
  const RETENTION_MS = 60_000;

  it('keeps a task, and its idempotency key, for the retention time once it fired or was cancelled, and not before', async () => {
    const running = await suite.serviceFor('retention', { RETENTION_MS: String(RETENTION_MS) });
    const { store } = running.service;
    const now = await redisNow(suite.redis);
    const fired = await store.schedule({ message: 'kept after firing', time: now + 500, idempotencyKey: 'fired-key' });
    const cancelled = await store.schedule({ message: 'kept after cancelling', time: now + 3_600_000, idempotencyKey: 'cancelled-key' });
    const firedKeys = keysOf(running, fired.id, 'fired-key');
    const cancelledKeys = keysOf(running, cancelled.id, 'cancelled-key');
    // Until it ends, a task does not expire.
    for (const key of [firedKeys.task, firedKeys.idempotency!, cancelledKeys.task, cancelledKeys.idempotency!]) {
      expect(await suite.redis.pttl(key)).toBe(-1);
    }

    await store.cancel(cancelled.id);
    await statusReached(running, fired.id, 'FIRED', 10_000);
    for (const key of [firedKeys.task, firedKeys.idempotency!, cancelledKeys.task, cancelledKeys.idempotency!]) {
      const ttl = await suite.redis.pttl(key);
      expect(ttl).toBeLessThanOrEqual(RETENTION_MS);
      expect(ttl).toBeGreaterThan(RETENTION_MS - 10_000);
    }
  });

  it('forgets a finished task once the retention time has passed', async () => {
    const running = await suite.serviceFor('expiry', { RETENTION_MS: '1000' });
    const { store } = running.service;
    const now = await redisNow(suite.redis);
    const fired = await store.schedule({ message: 'short-lived', time: now + 200 });
    const cancelled = await store.schedule({ message: 'short-lived cancelled', time: now + 3_600_000 });
    await store.cancel(cancelled.id);
    await statusReached(running, fired.id, 'FIRED', 10_000);
    await waitFor(async () => (await store.getMany([fired.id, cancelled.id])).every((task) => task === null), 10_000, 'both to expire');
    expect(await suite.redis.exists(keysOf(running, fired.id).task, keysOf(running, cancelled.id).task)).toBe(0);
  });
});

/** Schedules `half` tasks, a POISON task, then `half` more, all due at `time`: the poison amid its batch-mates. */
async function schedulePoisonAmid(store: TaskStore, label: string, half: number, time: number) {
  const batch = await store.scheduleMany([
    ...Array.from({ length: half }, (_, i) => ({ message: `${label} ${i}`, time })),
    { message: 'POISON', time },
    ...Array.from({ length: half }, (_, i) => ({ message: `${label} ${half + i}`, time })),
  ]);
  return { batch, poison: batch.find((task) => task.message === 'POISON')! };
}

describe('DEAD', () => {
  it('a task whose print always fails ends DEAD after MAX_DELIVERIES, and its batch-mates fire once each', async () => {
    // Two: a batch-mate printed alone on its first delivery spends no more.
    const MAX_DELIVERIES = 2;
    const RETENTION_MS = 60_000;
    const out = new FailingOn('POISON');
    // One partition, so the poison and its batch-mates are delivered together.
    const running = await suite.serviceFor('dead', { MAX_DELIVERIES: String(MAX_DELIVERIES), RETENTION_MS: String(RETENTION_MS), PARTITIONS: '1' }, out);
    const { store } = running.service;
    const events = await countFiredEvents(SHARED_REDIS_URL, running.config.keyPrefix);
    try {
      const now = await redisNow(suite.redis);
      const { batch, poison } = await schedulePoisonAmid(store, 'beside', 10, now + 500);
      const later = await store.scheduleMany(Array.from({ length: 20 }, (_, i) => ({ message: `later ${i}`, time: now + 1500 + i * 10 })));
      const others = [...batch.filter((task) => task !== poison), ...later];

      const dead = await statusReached(running, poison.id, 'DEAD', 30_000);
      // Delivered MAX_DELIVERIES times, each print refused (the first time with its batch, then
      // alone); the delivery its last failed print spent made it DEAD.
      expect(dead.attempts).toBe(MAX_DELIVERIES);
      expect(out.refused).toBe(MAX_DELIVERIES + 1);
      expect(dead.endedAt).not.toBeNull();
      // Listed from the DEAD index, where it was put when it became DEAD.
      const listed = await createTaskListing(suite.redis, running.service.keys)({ status: 'DEAD', first: 10 });
      expect(listed.tasks.map(({ task }) => [task.id, task.endedAt])).toEqual([[poison.id, dead.endedAt]]);
      const ttl = await suite.redis.pttl(keysOf(running, poison.id).task);
      expect(ttl).toBeLessThanOrEqual(RETENTION_MS);
      expect(ttl).toBeGreaterThan(RETENTION_MS - 10_000);
      // Cancel refuses a DEAD task.
      await expect(store.cancel(poison.id)).rejects.toMatchObject({ code: 'TOO_LATE' });

      const stored = await waitFor(async () => {
        const all = await store.getMany(others.map((task) => task.id));
        return all.every((task) => task?.status === 'FIRED') ? all : null;
      }, 20_000, 'every other task FIRED');
      // The others: each printed once and its event published once; the poison never.
      expect(out.lines.map((l) => l.line).sort()).toEqual(others.map((task) => task.message).sort());
      expect(out.count('POISON')).toBe(0);
      await waitFor(() => events.counts.size >= others.length, 5000, 'every event');
      expect(events.counts.has(poison.id)).toBe(false);
      expect([...events.counts.values()].filter((n) => n !== 1)).toEqual([]);
      const logged = await firedLogCounts(suite.redis, running.config.keyPrefix, 1);
      expect(logged.size).toBe(others.length);
      expect(logged.has(poison.id)).toBe(false);
      // Tasks due later never met the poison: first delivery each.
      for (const task of stored.slice(batch.length - 1)) expect(task!.attempts).toBe(1);
      for (const task of stored) expect(task!.attempts).toBeLessThan(MAX_DELIVERIES + 1);
      // Nothing is left pending in the group.
      const keys = running.service.keys;
      expect(((await suite.redis.xpending(keys.due(0), keys.group)) as [number])[0]).toBe(0);
    } finally {
      await events.close();
    }
  });
});

describe('a poison task in an entry of several', () => {
  it('ends DEAD at its first failed print with one delivery allowed, and the commit of its entry-mates acknowledges the entry', async () => {
    const out = new FailingOn('POISON');
    const running = await suite.serviceFor('dead-first', { MAX_DELIVERIES: '1', PARTITIONS: '1' }, out);
    const { store, keys } = running.service;
    const now = await redisNow(suite.redis);
    // Due together in one partition: promoted as one entry.
    const { batch, poison } = await schedulePoisonAmid(store, 'mate', 5, now + 500);
    const mates = batch.filter((task) => task !== poison);
    expect((await statusReached(running, poison.id, 'DEAD', 10_000)).attempts).toBe(1);
    await waitFor(async () => (await store.getMany(mates.map((task) => task.id))).every((task) => task?.status === 'FIRED'), 10_000, 'every mate FIRED');
    expect(out.lines.map((l) => l.line).sort()).toEqual(mates.map((task) => task.message).sort());
    // Nothing left for the sweep: the entry was acknowledged with its mates' commit.
    await waitFor(async () => ((await suite.redis.xpending(keys.due(0), keys.group)) as [number])[0] === 0, 1000, 'the entry acknowledged');
  });
});

describe('lost answers', () => {
  it('tasks a claim claimed whose answer was lost fire once, by the same worker, with no delivery spent', async () => {
    // The worker reaches Redis through a proxy that holds every answer past the command
    // timeout after a read-and-claim call of the backlog goes through (at most twice a second).
    const proxy = await startProxy(SHARED_REDIS_PORT);
    const out = new LineCollector();
    try {
      const running = await suite.serviceFor('lost-answers', { REDIS_URL: `redis://127.0.0.1:${proxy.port}`, RECLAIM_IDLE_MS: '2000', PARTITIONS: '2' }, out);
      // Scheduled past the proxy, so the lost answers are only the worker's.
      defineScripts(suite.redis);
      const store = createTaskStore(suite.redis, running.service.keys, running.config);
      const events = await countFiredEvents(SHARED_REDIS_URL, running.config.keyPrefix);
      try {
        proxy.setMode({ kind: 'late-after', pattern: 'unread', ms: 1600, everyMs: 500 });
        const due = (await redisNow(suite.redis)) + 500;
        const tasks: Awaited<ReturnType<typeof store.scheduleMany>> = [];
        for (let chunk = 0; chunk < 4; chunk++) {
          tasks.push(...(await store.scheduleMany(Array.from({ length: 1000 }, (_, i) => ({ message: `lost answer ${chunk * 1000 + i}`, time: due })))));
        }
        const fired = await waitFor(async () => {
          const all = await store.getMany(tasks.map((task) => task.id));
          return all.every((task) => task?.status === 'FIRED') ? all : null;
        }, 60_000, 'every task FIRED');
        proxy.setMode({ kind: 'pass' });
        expect(proxy.lateAfterTriggers).toBeGreaterThan(0);
        // Once each, and no task spent a second delivery on an answer it never got.
        expect(out.lines.map((l) => l.line).sort()).toEqual(tasks.map((task) => task.message).sort());
        expect(fired.filter((task) => task!.attempts !== 1).map((task) => [task!.id, task!.attempts])).toEqual([]);
        await waitFor(() => events.counts.size >= tasks.length, 10_000, 'every event');
        expect([...events.counts.values()].filter((n) => n !== 1)).toEqual([]);
      } finally {
        await events.close();
      }
    } finally {
      await proxy.close();
    }
  });
});
