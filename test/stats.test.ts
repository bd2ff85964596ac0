/**
 * The scheduler's state as stats and metrics read it, step by step through the firing
 * scripts, while complete.lua trims acknowledged entries from the due stream; and how the
 * claim step counts deliveries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { connect, deletePrefix, firedLogEvents, redisNow, testEnv, uniquePrefix, waitFor } from './helpers.js';
import { createKeys, type Keys, taskIdOfMember, taskIdsOfEntry } from '../src/scheduler/keys.js';
import { createTaskStore, type TaskStore } from '../src/scheduler/tasks.js';
import { defineScripts } from '../src/scheduler/scripts.js';
import { type Acquired, createFiringCalls, promote, TASKS_PER_ENTRY } from '../src/scheduler/calls/firing.js';
import { createPartitionClocks } from '../src/scheduler/redis-clock.js';
import { firingTimings } from '../src/scheduler/timings.js';
import { readSchedulerState } from '../src/scheduler/stats.js';
import { createPromoter } from '../src/scheduler/promoter.js';
import { createChannels } from '../src/scheduler/pubsub.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createTaskListing } from '../src/scheduler/listing.js';

const PARTITIONS = 1;
let redis: Redis;
const prefix = uniquePrefix('stats');
const keys = createKeys(prefix, PARTITIONS);

beforeAll(async () => {
  redis = await connect();
  defineScripts(redis);
});

afterAll(async () => {
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

const STORE_SETTINGS = { horizonMs: 3_600_000, retentionMs: 60_000, maxMessageBytes: 1000, maxBulk: 100 };

const read = async (count: number, consumer: string, k: Keys = keys) => {
  const reply = (await redis.xreadgroup('GROUP', k.group, consumer, 'COUNT', count, 'STREAMS', k.due(0), '>')) as [string, [string, string[]][]][];
  return reply[0]![1].map(([entry, fields]) => [entry, fields[1]!] as [string, string]);
};

/** Makes the group and promotes what is due, as a worker's first steps do, `chunk` tasks per entry (1: entries as earlier versions wrote them). */
const promoteDue = async (k: Keys, chunk = TASKS_PER_ENTRY) => {
  await redis.xgroup('CREATE', k.due(0), k.group, '0', 'MKSTREAM');
  await promote(redis, k, 0, 1000, chunk);
};

/** Runs a test on a prefix of its own, deleted afterwards. */
const withOwnPrefix = async (name: string, body: (k: Keys, store: TaskStore) => Promise<void>) => {
  const ownPrefix = uniquePrefix(name);
  const k = createKeys(ownPrefix, PARTITIONS);
  try {
    await body(k, createTaskStore(redis, k, STORE_SETTINGS));
  } finally {
    await deletePrefix(redis, ownPrefix);
  }
};

/** The firing path's script calls as a worker named `consumer` makes them. */
const callsOf = (consumer: string, maxDeliveries = 5, k: Keys = keys) => {
  const settings = { dueEntryTasks: TASKS_PER_ENTRY, maxDeliveries, retentionMs: 60_000, reclaimIdleMs: 5000, firedLogMax: 1000 };
  return createFiringCalls(redis, createPartitionClocks(redis, k), k, consumer, settings, firingTimings({ reclaimIdleMs: 5000, sweepMs: 1000 }));
};

/** Claims entries as a worker named `consumer` does (under `callId` when given), or reads and claims `{ unread }` of them. */
const claim = async (entries: [string, string][] | { unread: number }, consumer: string, maxDeliveries = 5, k: Keys = keys, callId?: string) => {
  const calls = callsOf(consumer, maxDeliveries, k);
  const [acquired] = 'unread' in entries ? await calls.grab([0], entries.unread, callId) : await calls.claim(new Map([[0, entries]]), callId);
  return acquired!;
};

/** Completes what a claim returned, as a worker named `consumer` does after printing. */
const complete = async ({ tasks }: Acquired, consumer: string, k: Keys = keys) => {
  const outcome = (await callsOf(consumer, 5, k).complete(new Map([[0, tasks]]))).get(0)!;
  if ('error' in outcome) throw outcome.error;
  return outcome;
};

/** Claims and completes entries as a worker named `consumer` does, without printing. */
const fire = async (entries: [string, string][], consumer: string) => complete(await claim(entries, consumer), consumer);

describe('scheduler state', () => {
  it('counts scheduled, unread and pending entries and finds the oldest unfinished one while acknowledged entries are trimmed', async () => {
    const store = createTaskStore(redis, keys, STORE_SETTINGS);
    const base = (await redisNow(redis)) + 100;
    const times = Array.from({ length: 6 }, (_, i) => base + i);
    await store.scheduleMany(times.map((time, i) => ({ message: `task ${i}`, time })));
    await redis.xgroup('CREATE', keys.due(0), keys.group, '0', 'MKSTREAM');
    const state = async () => (await readSchedulerState(redis, keys)).partitions[0]!;

    expect(await state()).toMatchObject({ scheduled: 6, unread: 0, pending: 0 });
    await waitFor(async () => (await state()).overdue === 6, 5000, 'all six to come due');
    expect((await state()).oldestDue).toBe(times[0]);

    // One task per entry, as earlier versions promoted them: an entry is a task.
    await promote(redis, keys, 0, 1000, 1);
    expect(await state()).toMatchObject({ scheduled: 0, overdue: 0, unread: 6, pending: 0, oldestDue: times[0] });

    const firstFour = await read(4, 'a');
    expect(await state()).toMatchObject({ unread: 2, pending: 4, oldestDue: times[0] });

    // The two oldest complete: the stream keeps nothing before the oldest pending entry.
    await fire(firstFour.slice(0, 2), 'a');
    expect(await state()).toMatchObject({ unread: 2, pending: 2, oldestDue: times[2] });
    expect(await redis.xlen(keys.due(0))).toBe(4);

    // A later entry completes before an older one: it stays until the older one is done.
    await fire(firstFour.slice(3, 4), 'a');
    expect(await state()).toMatchObject({ unread: 2, pending: 1, oldestDue: times[2] });
    expect(await redis.xlen(keys.due(0))).toBe(4);

    await fire(firstFour.slice(2, 3), 'a');
    expect(await state()).toMatchObject({ unread: 2, pending: 0, oldestDue: times[4] });
    expect(await redis.xlen(keys.due(0))).toBe(2);

    await fire(await read(10, 'b'), 'b');
    const done = await state();
    expect(done).toMatchObject({ scheduled: 0, overdue: 0, unread: 0, pending: 0, oldestDue: undefined, firedInLog: 6 });
    expect(await redis.xlen(keys.due(0))).toBe(0);
    expect((await store.getMany((await firedLogEvents(redis, keys)).map(({ task }) => task.id))).map((t) => t?.status)).toEqual(
      Array(6).fill('FIRED'),
    );
  });

  it('keeps running totals of tasks that ended FIRED, CANCELLED and DEAD, each counted once', () =>
    withOwnPrefix('stats-totals', async (totalsKeys, store) => {
      const totals = async () => {
        const [state] = (await readSchedulerState(redis, totalsKeys)).partitions;
        return state!.totals;
      };
      expect(await totals()).toEqual({ fired: 0, cancelled: 0, dead: 0 });

      const base = (await redisNow(redis)) + 50;
      const [toFire, toKill, toCancel] = await store.scheduleMany(['fires', 'dies', 'cancelled'].map((message, i) => ({ message, time: base + i })));
      const later = await store.schedule({ message: 'cancelled later', time: base + 600_000 });
      await store.cancel(toCancel!.id);
      await store.cancel(toCancel!.id);
      await store.cancel(later.id);
      expect(await totals()).toEqual({ fired: 0, cancelled: 2, dead: 0 });

      await waitFor(async () => (await redis.zcount(totalsKeys.schedule(0), '-inf', await redisNow(redis))) === 2, 5000, 'two tasks to come due');
      await promoteDue(totalsKeys, 1);
      const byTask = new Map((await read(10, 'a', totalsKeys)).map((pair) => [taskIdOfMember(pair[1]), pair]));
      const fireEntry = byTask.get(toFire!.id)!;
      const killEntry = byTask.get(toKill!.id)!;

      // Fired, then completed again (a retried commit): counted once.
      const claimed = await claim([fireEntry], 'a', 5, totalsKeys);
      expect(await complete(claimed, 'a', totalsKeys)).toEqual({ completed: 1, already: 0 });
      expect(await complete(claimed, 'a', totalsKeys)).toEqual({ completed: 0, already: 1 });
      // Delivered once already with one delivery allowed: the next claim makes it DEAD.
      await claim([killEntry], 'a', 1, totalsKeys);
      const { dead } = await claim([killEntry], 'a', 1, totalsKeys);
      expect(dead).toEqual([toKill!.id]);

      expect(await totals()).toEqual({ fired: 1, cancelled: 2, dead: 1 });
      expect((await store.getMany([toFire!.id, toKill!.id, toCancel!.id, later.id])).map((t) => t?.status)).toEqual(['FIRED', 'DEAD', 'CANCELLED', 'CANCELLED']);
    }));

  it('counts a claim sent again after its answer was lost as the same delivery, and a new claim as another', () =>
    withOwnPrefix('stats-claim', async (claimKeys, store) => {
      const task = await store.schedule({ message: 'resent', time: (await redisNow(redis)) - 1 });
      await promoteDue(claimKeys);
      const [[entry, id]] = (await read(1, 'a', claimKeys)) as [[string, string]];
      // One delivery allowed: a resend of the call that made it must not make the task DEAD.
      const first = await claim([[entry, id]], 'a', 1, claimKeys, 'call-1');
      const again = await claim([[entry, id]], 'a', 1, claimKeys, 'call-1');
      expect(again.tasks).toEqual(first.tasks);
      expect(again.dead).toEqual([]);
      expect((await store.get(task.id))!).toMatchObject({ status: 'FIRING', attempts: 1 });
      // Another call is another delivery: past the limit, the task is DEAD.
      const { dead } = await claim([[entry, id]], 'a', 1, claimKeys, 'call-2');
      expect(dead).toEqual([task.id]);
      expect((await store.get(task.id))!.status).toBe('DEAD');
    }));

  it('claims an entry of several tasks whole, and acknowledges it once every task it gave to fire is committed', () =>
    withOwnPrefix('stats-chunk', async (chunkKeys, store) => {
      const now = await redisNow(redis);
      const tasks = await store.scheduleMany(Array.from({ length: 5 }, (_, i) => ({ message: `chunk ${i}`, time: now - 10 + i })));
      await store.cancel(tasks[4]!.id);
      await promoteDue(chunkKeys);
      expect((await readSchedulerState(redis, chunkKeys)).partitions[0]).toMatchObject({ unread: 4, pending: 0, oldestDue: tasks[0]!.time });
      // Listed DUE from the entry that names them.
      const due = await createTaskListing(redis, chunkKeys)({ status: 'DUE', first: 10 });
      expect(due.tasks.map(({ task }) => task.id).sort()).toEqual(tasks.slice(0, 4).map((t) => t.id).sort());
      const entries = await read(10, 'a', chunkKeys);
      expect(entries.map(([, value]) => taskIdsOfEntry(value))).toEqual([tasks.slice(0, 4).map((t) => t.id)]);
      const pendingFor = async (consumer: string) => ((await redis.xpending(chunkKeys.due(0), chunkKeys.group, '-', '+', 10, consumer)) as unknown[]).length;

      // Another worker's claim, while this one may still be alive, hands the entry back whole.
      const claimed = await claim(entries, 'a', 5, chunkKeys);
      expect(claimed.tasks.map((t) => [t.id, t.entryTasks])).toEqual(tasks.slice(0, 4).map((t) => [t.id, 4]));
      const deferred = await claim(entries, 'b', 5, chunkKeys);
      expect(deferred).toMatchObject({ tasks: [], dead: [], dropped: 0, deferred: 4 });
      expect([await pendingFor('a'), await pendingFor('b')]).toEqual([1, 0]);
      expect((await readSchedulerState(redis, chunkKeys)).partitions[0]).toMatchObject({ unread: 0, pending: 4 });

      // Three of the four committed: the entry stays pending for the fourth.
      expect(await complete({ ...claimed, tasks: claimed.tasks.slice(0, 3) }, 'a', chunkKeys)).toEqual({ completed: 3, already: 0 });
      expect(await pendingFor('a')).toBe(1);
      // Delivered again: the fired tasks are skipped, not acknowledged; the fourth is claimed again.
      const again = await claim(entries, 'a', 5, chunkKeys);
      expect(again.tasks.map((t) => [t.id, t.attempts, t.entryTasks])).toEqual([[tasks[3]!.id, 2, 1]]);
      expect(again.dropped).toBe(3);
      expect(await pendingFor('a')).toBe(1);
      expect(await complete(again, 'a', chunkKeys)).toEqual({ completed: 1, already: 0 });
      expect(await pendingFor('a')).toBe(0);
      expect((await store.getMany(tasks.map((t) => t.id))).map((t) => t!.status)).toEqual([...Array(4).fill('FIRED'), 'CANCELLED']);

      // An entry none of whose tasks wants firing is dropped, its tasks counted as dropped.
      const stale = await claim(entries, 'a', 5, chunkKeys);
      expect(stale).toMatchObject({ tasks: [], dead: [], dropped: 4, deferred: 0 });
      expect(await redis.xlen(chunkKeys.due(0))).toBe(0);
    }));

  it('promotes DUE_ENTRY_TASKS tasks per entry at most, and with 1 the entries of one task earlier versions read', () =>
    withOwnPrefix('stats-entry-tasks', async (k, store) => {
      const subscriber = await connect();
      try {
        await redis.xgroup('CREATE', k.due(0), k.group, '0', 'MKSTREAM');
        for (const [setting, sizes] of [
          ['1', [1, 1, 1, 1, 1]],
          ['3', [3, 2]],
        ] as const) {
          const now = await redisNow(redis);
          await store.scheduleMany(Array.from({ length: 5 }, (_, i) => ({ message: `entry ${i}`, time: now - 10 })));
          const config = loadConfig(testEnv(k.prefix, { DUE_ENTRY_TASKS: setting, PARTITIONS: '1' }));
          const promoter = createPromoter(redis, createChannels(subscriber), k, config, createLogger('silent'));
          await promoter.start();
          await waitFor(() => promoter.stats.promoted === 5, 10_000, 'the five tasks promoted');
          await promoter.stop();
          const entries = await redis.xrange(k.due(0), '-', '+');
          expect(entries.map(([, fields]) => taskIdsOfEntry(fields[1]!).length)).toEqual(sizes);
          await redis.xtrim(k.due(0), 'MAXLEN', 0);
        }
      } finally {
        subscriber.disconnect();
      }
    }));

  it('claims, under a call id an earlier version recorded (pairs split by spaces), the entries recorded', () =>
    withOwnPrefix('stats-old-record', async (oldKeys, store) => {
      const task = await store.schedule({ message: 'recorded', time: (await redisNow(redis)) - 1 });
      await promoteDue(oldKeys, 1);
      const [[entry, value]] = (await read(1, 'a', oldKeys)) as [[string, string]];
      await redis.set(oldKeys.call(0, 'old-call'), `${entry} ${value}`, 'PX', 10_000);
      const claimed = await claim({ unread: 10 }, 'a', 5, oldKeys, 'old-call');
      expect(claimed.tasks.map((t) => [t.id, t.entry, t.entryTasks])).toEqual([[task.id, entry, 1]]);
    }));

  it('claims entries of a bare id as earlier versions wrote them: a task whose hash names the entry fires, and is committed', () =>
    withOwnPrefix('stats-bare-id', async (k, store) => {
      const later = (await redisNow(redis)) + 3_600_000;
      const [current, stale] = await store.scheduleMany([
        { message: 'bare current', time: later },
        { message: 'bare stale', time: later },
      ]);
      await redis.xgroup('CREATE', k.due(0), k.group, '0', 'MKSTREAM');
      // Promoted as an earlier version did: out of the schedule, DUE, its entry's id in `e`.
      await redis.zrem(k.schedule(0), current!.id, stale!.id);
      const entry = (await redis.xadd(k.due(0), '*', 'id', current!.id))!;
      await redis.xadd(k.due(0), '*', 'id', stale!.id);
      await redis.hset(k.task(0, current!.id), 's', 'DUE', 'e', entry);
      await redis.hset(k.task(0, stale!.id), 's', 'DUE', 'e', '1-1');
      const claimed = await claim({ unread: 10 }, 'a', 5, k);
      expect(claimed.tasks.map((t) => [t.id, t.member, t.entry, t.entryTasks, t.message, t.time])).toEqual([[current!.id, current!.id, entry, 1, 'bare current', later]]);
      expect(claimed).toMatchObject({ dropped: 1, deferred: 0 });
      expect(await complete(claimed, 'a', k)).toEqual({ completed: 1, already: 0 });
      expect((await store.get(current!.id))?.status).toBe('FIRED');
      expect(await redis.xlen(k.due(0))).toBe(0);
    }));

  it('commits in one call tasks claimed at different attempts and times, each FIRED and logged with its own', () =>
    withOwnPrefix('stats-runs', async (k, store) => {
      const now = await redisNow(redis);
      const tasks = await store.scheduleMany(['run a', 'run b', 'run c'].map((message) => ({ message, time: now - 10 })));
      await promoteDue(k, 1);
      const [first, ...rest] = await read(3, 'w', k);
      const calls = callsOf('w', 5, k);
      await calls.claim(new Map([[0, [first!]]]));
      // Its print failed: a delivery spent, and the task claimed again, at its second attempt.
      const [again] = await calls.spend(new Map([[0, [first!]]]), new Map());
      const [fresh] = await calls.claim(new Map([[0, rest]]));
      const [a] = again!.tasks;
      const [b, c] = fresh!.tasks;
      expect([a!.attempts, b!.attempts, c!.attempts]).toEqual([2, 1, 1]);
      // Three runs of one attempt and fired-at time: b, then a, then c.
      const outcome = (await calls.complete(new Map([[0, [b!, a!, c!]]]))).get(0)!;
      expect(outcome).toEqual({ completed: 3, already: 0 });
      const stored = await store.getMany([b!.id, a!.id, c!.id]);
      expect(stored.map((t) => [t!.status, t!.attempts, t!.firedAt, t!.firedBy])).toEqual([
        ['FIRED', 1, b!.firedAt, 'w'],
        ['FIRED', 2, a!.firedAt, 'w'],
        ['FIRED', 1, c!.firedAt, 'w'],
      ]);
      const events = await firedLogEvents(redis, k);
      expect(events.map(({ task }) => [task.id, task.message, task.attempts, task.firedAt])).toEqual([
        [b!.id, b!.message, 1, b!.firedAt],
        [a!.id, a!.message, 2, a!.firedAt],
        [c!.id, c!.message, 1, c!.firedAt],
      ]);
      expect(new Set([a!.message, b!.message, c!.message])).toEqual(new Set(tasks.map((t) => t.message)));
      expect(await redis.xlen(k.due(0))).toBe(0);
    }));

  it('reads and claims in one call when given unread and a count: what it claims is pending for the worker, FIRING', () =>
    withOwnPrefix('stats-unread', async (unreadKeys, store) => {
      const now = await redisNow(redis);
      const tasks = await store.scheduleMany(Array.from({ length: 5 }, (_, i) => ({ message: `unread ${i}`, time: now - 10 + i })));
      // Two tasks per entry: three entries. A grab reads entries until they name the tasks it
      // wants (one entry first, as full entries would hold four, then one more).
      await promoteDue(unreadKeys, 2);
      const wanted = 4;
      const first = await claim({ unread: wanted }, 'a', 5, unreadKeys, 'grab-1');
      // The same call sent again (its answer lost) claims the same two entries, as the same delivery.
      const resent = await claim({ unread: wanted }, 'a', 5, unreadKeys, 'grab-1');
      const rest = await claim({ unread: wanted }, 'a', 5, unreadKeys);
      const none = await claim({ unread: wanted }, 'a', 5, unreadKeys);
      const ids = ({ tasks: list }: Acquired) => list.map((t) => t.id);
      expect(ids(first)).toEqual(tasks.slice(0, 4).map((t) => t.id));
      expect(first.tasks.map((t) => t.entryTasks)).toEqual([2, 2, 2, 2]);
      expect(resent.tasks).toEqual(first.tasks);
      expect(ids(rest)).toEqual(tasks.slice(4).map((t) => t.id));
      expect(none.tasks).toEqual([]);
      expect((await store.getMany(tasks.map((t) => t.id))).map((t) => [t!.status, t!.attempts])).toEqual(Array(5).fill(['FIRING', 1]));
      const [pending] = (await redis.xpending(unreadKeys.due(0), unreadKeys.group)) as [number];
      expect(pending).toBe(3);
      expect((await readSchedulerState(redis, unreadKeys)).partitions[0]).toMatchObject({ unread: 0, pending: 5 });
    }));
});
