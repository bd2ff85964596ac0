/**
 * The fired log holds one entry per committed batch: its id is its last event's seq, and its
 * n events count down from it in the same millisecond. Read through complete.lua as a worker
 * calls it, on the shared Redis: consecutive seqs, resume from inside an entry, entries of an
 * earlier version (one event each), the cap counted in events, trimmed positions refused,
 * batches in one millisecond, a log trimmed empty, the FIRED listing and the live feed's seqs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { connect, deletePrefix, firedLogEvents, redisNow, uniquePrefix } from './helpers.js';
import { createKeys, type Keys } from '../src/scheduler/keys.js';
import { createTaskStore } from '../src/scheduler/tasks.js';
import { defineScripts } from '../src/scheduler/scripts.js';
import { type FiringTask, createFiringCalls, promote, TASKS_PER_ENTRY } from '../src/scheduler/calls/firing.js';
import { createPartitionClocks } from '../src/scheduler/redis-clock.js';
import { firingTimings } from '../src/scheduler/timings.js';
import { readSchedulerState } from '../src/scheduler/stats.js';
import { compareSeq, createFiredLog } from '../src/scheduler/fired-log.js';
import { createFeed, decodeCursor, encodeCursor } from '../src/scheduler/feed.js';
import { createChannels } from '../src/scheduler/pubsub.js';
import { createTaskListing } from '../src/scheduler/listing.js';
import { parseFiredMessage, type FiredEvent } from '../src/scheduler/task.js';

let redis: Redis;
const prefixes: string[] = [];

beforeAll(async () => {
  redis = await connect();
  defineScripts(redis);
});

afterAll(async () => {
  for (const prefix of prefixes) await deletePrefix(redis, prefix);
  redis.disconnect();
});

/** A deployment of one partition on a prefix of its own, whose worker fires batches through complete.lua. */
async function deployment(name: string, firedLogMax = 1000) {
  const prefix = uniquePrefix(name);
  prefixes.push(prefix);
  const keys = createKeys(prefix, 1);
  const store = createTaskStore(redis, keys, { horizonMs: 3_600_000, retentionMs: 60_000, maxMessageBytes: 1000, maxBulk: 1000 });
  const settings = { dueEntryTasks: TASKS_PER_ENTRY, maxDeliveries: 5, retentionMs: 60_000, reclaimIdleMs: 5000, firedLogMax };
  const calls = createFiringCalls(redis, createPartitionClocks(redis, keys), keys, 'w', settings, firingTimings({ reclaimIdleMs: 5000, sweepMs: 1000 }));
  await redis.xgroup('CREATE', keys.due(0), keys.group, '0', 'MKSTREAM');
  let fired = 0;
  /** Schedules n tasks already due, then promotes and claims them. */
  const claimDue = async (n: number): Promise<FiringTask[]> => {
    const now = await redisNow(redis);
    const tasks = await store.scheduleMany(Array.from({ length: n }, () => ({ message: `task ${fired++}`, time: now })));
    await promote(redis, keys, 0, 1000, TASKS_PER_ENTRY);
    const [acquired] = await calls.grab([0], n);
    expect(acquired!.tasks.map((task) => task.id).sort()).toEqual(tasks.map((task) => task.id).sort());
    return acquired!.tasks;
  };
  /** Completes claimed tasks as one batch (complete.lua); their ids. */
  const complete = async (tasks: FiringTask[]): Promise<string[]> => {
    const outcome = (await calls.complete(new Map([[0, tasks]]))).get(0)!;
    if ('error' in outcome) throw outcome.error;
    expect(outcome.completed).toBe(tasks.length);
    return tasks.map((task) => task.id);
  };
  /** Fires n tasks as one batch; their ids. */
  const fireBatch = async (n: number) => complete(await claimDue(n));
  return { keys, claimDue, complete, fireBatch, firedLog: createFiredLog(redis, keys) };
}

/** Every entry of a partition's log: its id and fields. */
const entriesOf = async (keys: Keys) => (await redis.xrange(keys.fired(0), '-', '+')).map(([id, fields]) => ({ id, fields }));

/** A seq `k` places after or before `seq`, in its millisecond. */
const shift = (seq: string, k: number) => {
  const [ms, n] = seq.split('-');
  return `${ms}-${BigInt(n!) + BigInt(k)}`;
};

/** An event object as complete.lua of an earlier version logged it, one entry each. */
const oldEvent = (id: string) => JSON.stringify({ id, message: `old ${id}`, time: 1, createdAt: 1, firedAt: 2, lateByMs: 1, attempts: 1, firedBy: 'old', status: 'FIRED' });

describe('one fired log entry per batch', () => {
  it('writes a batch of n as one entry, its events n consecutive seqs ending at its id, published the same', async () => {
    const { keys, fireBatch, firedLog } = await deployment('log-batch');
    const subscriber = await connect();
    const published: FiredEvent[] = [];
    subscriber.on('message', (_channel: string, message: string) => published.push(...parseFiredMessage(message)));
    await subscriber.subscribe(keys.firedChannel(0));
    try {
      const ids = await fireBatch(5);
      const entries = await entriesOf(keys);
      expect(entries).toHaveLength(1);
      const [{ id, fields }] = entries as [{ id: string; fields: string[] }];
      expect(fields[0]).toBe('n');
      expect(fields[1]).toBe('5');
      const events = await firedLogEvents(redis, keys);
      expect(events.map((event) => event.task.id)).toEqual(ids);
      expect(events.map((event) => event.seq)).toEqual([-4, -3, -2, -1, 0].map((k) => shift(id, k)));
      expect(events.every((event) => event.task.status === 'FIRED')).toBe(true);
      expect(await firedLog.tails()).toEqual([id]);
      await subscriber.ping();
      expect(published.map(({ seq, task }) => [seq, task.id])).toEqual(events.map(({ seq, task }) => [seq, task.id]));
      // The message names the entry before (none) and the batch's own, and no seq per task.
      expect((await readSchedulerState(redis, keys)).partitions[0]!.firedInLog).toBe(5);
    } finally {
      subscriber.disconnect();
    }
  });

  it('resumes from an event inside an entry with exactly the events after it, a page of any size at a time', async () => {
    const { keys, fireBatch, firedLog } = await deployment('log-resume');
    await fireBatch(4);
    await fireBatch(6);
    await fireBatch(1);
    const all = await firedLogEvents(redis, keys);
    expect(all).toHaveLength(11);
    for (const [i, from] of all.entries()) {
      for (const count of [1, 2, 3, 500]) {
        const read: string[] = [];
        for (let at = from.seq; ; ) {
          const page = await firedLog.range(0, at, '+', count);
          read.push(...page.map((event) => event.seq));
          if (page.length < count) break;
          at = page[page.length - 1]!.seq;
        }
        expect(read, `from event ${i}, pages of ${count}`).toEqual(all.slice(i + 1).map((event) => event.seq));
      }
      // Up to a position inside a later entry.
      const to = all[Math.min(i + 3, all.length - 1)]!.seq;
      expect((await firedLog.range(0, from.seq, to, 500)).map((event) => event.seq)).toEqual(all.slice(i + 1, i + 4).map((event) => event.seq));
    }
    expect((await firedLog.range(0, '0-0', '+', 500)).map((event) => event.seq)).toEqual(all.map((event) => event.seq));
  });

  it('reads an entry of an earlier version (one event object) as one event, a cursor at it included', async () => {
    const { keys, fireBatch, firedLog } = await deployment('log-old');
    const oldSeq = (await redis.xadd(keys.fired(0), '*', 'e', oldEvent('0-oldoldoldold0001')))!;
    const ids = await fireBatch(3);
    const all = await firedLog.range(0, '0-0', '+', 500);
    expect(all.map((event) => event.task.id)).toEqual(['0-oldoldoldold0001', ...ids]);
    expect(all[0]).toMatchObject({ seq: oldSeq, task: { message: 'old 0-oldoldoldold0001', lateByMs: 1, status: 'FIRED' } });
    expect(increasing(all.map((event) => event.seq))).toBe(true);
    expect((await firedLog.range(0, oldSeq, '+', 500)).map((event) => event.task.id)).toEqual(ids);
    expect(await firedLog.lostAfter(0, oldSeq)).toBe(false);
    // The count of events starts from the earlier version's entries, one each.
    expect((await readSchedulerState(redis, keys)).partitions[0]!.firedInLog).toBe(4);
  });

  it('keeps about FIRED_LOG_MAX events, counted in events, and refuses a cursor whose next events were trimmed', async () => {
    const { keys, fireBatch, firedLog } = await deployment('log-cap', 20);
    const entryIds: string[] = [];
    for (let i = 0; i < 8; i++) {
      await fireBatch(7);
      entryIds.push((await firedLog.tails())[0]!);
    }
    const events = await firedLogEvents(redis, keys);
    expect(events.length).toBeGreaterThanOrEqual(14);
    expect(events.length).toBeLessThanOrEqual(22);
    expect((await readSchedulerState(redis, keys)).partitions[0]!.firedInLog).toBe(events.length);
    expect(await redis.xlen(keys.fired(0))).toBe(events.length / 7);

    // The event right before the log's first (the last of the entry trimmed before it) is gone; the first and those inside its entry are not.
    const first = events[0]!.seq;
    const trimmed = entryIds[entryIds.length - events.length / 7 - 1]!;
    expect(compareSeq(trimmed, first)).toBeLessThan(0);
    expect(await firedLog.lostAfter(0, trimmed)).toBe(true);
    expect(await firedLog.lostAfter(0, '0-0')).toBe(true);
    expect(await firedLog.lostAfter(0, first)).toBe(false);
    expect(await firedLog.lostAfter(0, events[3]!.seq)).toBe(false);
    await expect(firedLog.range(0, trimmed, '+', 10)).rejects.toMatchObject({ name: 'LogTrimmed' });

    const subscriber = await connect();
    const feed = createFeed({ redis, channels: createChannels(subscriber), subscriber, getTasks: async (ids) => ids.map(() => null) }, keys, { feedBufferMax: 100 });
    try {
      await expect(feed.subscribe(encodeCursor([trimmed]))).rejects.toMatchObject({ code: 'BAD_USER_INPUT', details: { reason: 'CURSOR_EXPIRED' } });
      const resumed = await feed.subscribe(encodeCursor([events[3]!.seq]));
      for (const expected of events.slice(4)) expect((await resumed.next()).value!.task.id).toBe(expected.task.id);
      await resumed.return!();
    } finally {
      await feed.stop();
      subscriber.disconnect();
    }
  });

  it('sets its count of events right when a trim finds the log emptied by hand', async () => {
    const { keys, fireBatch } = await deployment('log-count', 20);
    await fireBatch(7);
    await fireBatch(7);
    await redis.xtrim(keys.fired(0), 'MAXLEN', 0);
    await fireBatch(7);
    // The count says 21 and the log holds 7, under the cap: nothing to trim yet.
    expect((await readSchedulerState(redis, keys)).partitions[0]!.firedInLog).toBe(21);
    await fireBatch(7);
    const events = await firedLogEvents(redis, keys);
    expect(events).toHaveLength(7);
    expect((await readSchedulerState(redis, keys)).partitions[0]!.firedInLog).toBe(7);
  });

  it('gives batches committed in one Redis millisecond seqs that do not overlap', async () => {
    const { keys, fireBatch } = await deployment('log-same-ms');
    // A last entry ahead of Redis time: every batch after it is "in its millisecond".
    const ahead = `${(await redisNow(redis)) + 600_000}-5`;
    await redis.xadd(keys.fired(0), ahead, 'e', oldEvent('0-aheadaheadahead01'));
    await fireBatch(3);
    await fireBatch(2);
    const seqs = (await firedLogEvents(redis, keys)).map((event) => event.seq);
    expect(seqs).toEqual([0, 1, 2, 3, 4, 5].map((k) => shift(ahead, k)));
    expect((await entriesOf(keys)).map((entry) => entry.id)).toEqual([ahead, shift(ahead, 3), shift(ahead, 5)]);

    // Two batches sent back to back, most often in one millisecond: whatever the clock, no seq twice.
    const second = await deployment('log-same-ms2');
    for (let round = 0; round < 5; round++) {
      const tasks = await second.claimDue(8);
      await Promise.all([second.complete(tasks.slice(0, 4)), second.complete(tasks.slice(4))]);
    }
    const seqs2 = (await firedLogEvents(redis, second.keys)).map((event) => event.seq);
    expect(new Set(seqs2).size).toBe(40);
    expect(increasing(seqs2)).toBe(true);
  });

  it('appends after a log trimmed empty, above the last id it generated, naming it as the entry before', async () => {
    const { keys, fireBatch, firedLog } = await deployment('log-empty');
    const ahead = `${(await redisNow(redis)) + 600_000}-7`;
    await redis.xadd(keys.fired(0), ahead, 'e', oldEvent('0-gonegonegonegone1'));
    await redis.xtrim(keys.fired(0), 'MAXLEN', 0);
    expect(await redis.xlen(keys.fired(0))).toBe(0);
    expect(await firedLog.lostAfter(0, shift(ahead, -1))).toBe(true);
    expect(await firedLog.lostAfter(0, ahead)).toBe(false);
    const subscriber = await connect();
    const messages: string[] = [];
    subscriber.on('message', (_channel: string, message: string) => messages.push(message));
    await subscriber.subscribe(keys.firedChannel(0));
    try {
      const ids = await fireBatch(2);
      await subscriber.ping();
      expect((await firedLogEvents(redis, keys)).map(({ seq, task }) => [seq, task.id])).toEqual(ids.map((id, i) => [shift(ahead, i + 1), id]));
      expect(JSON.parse(messages[0]!)).toMatchObject({ prev: ahead, last: shift(ahead, 2) });
    } finally {
      subscriber.disconnect();
    }
  });

  it('lists FIRED tasks from batch entries and entries of an earlier version, filtered by due time', async () => {
    const { keys, fireBatch } = await deployment('log-listing');
    await redis.xadd(keys.fired(0), '*', 'e', oldEvent('0-oldoldoldold0002'));
    const ids = [...(await fireBatch(3)), ...(await fireBatch(2))];
    const list = createTaskListing(redis, keys);
    const listed = await list({ status: 'FIRED', first: 50 });
    expect(listed.tasks.map(({ task }) => task.id).sort()).toEqual(['0-oldoldoldold0002', ...ids].sort());
    const [first] = await firedLogEvents(redis, keys).then((events) => events.slice(1));
    // From a due time on: the earlier version's event (due at 1) is before it.
    const recent = await list({ status: 'FIRED', first: 50, from: first!.task.time });
    expect(recent.tasks.map(({ task }) => task.id).sort()).toEqual([...ids].sort());
  });

  it('delivers each event live once, with the seq the log gives it, and reads the old published form', async () => {
    const { keys, fireBatch } = await deployment('log-live');
    const subscriber = await connect();
    const feed = createFeed({ redis, channels: createChannels(subscriber), subscriber, getTasks: async (ids) => ids.map(() => null) }, keys, { feedBufferMax: 100 });
    try {
      const events = await feed.subscribe();
      const ids = [...(await fireBatch(3)), ...(await fireBatch(1)), ...(await fireBatch(4))];
      const logged = await firedLogEvents(redis, keys);
      for (const expected of logged) {
        const { value } = await events.next();
        expect(value!.task.id).toBe(expected.task.id);
        expect(decodeCursor(value!.cursor, 1)).toEqual([expected.seq]);
      }
      expect(logged.map((event) => event.task.id)).toEqual(ids);
      // Nothing more: the next event is one fired later.
      const later = await fireBatch(1);
      expect((await events.next()).value!.task.id).toBe(later[0]);
      await events.return!();
    } finally {
      await feed.stop();
      subscriber.disconnect();
    }
    // A worker of an earlier version published a seq per task.
    const old = JSON.stringify({ partition: 0, prev: '5-1', seqs: ['5-2', '6-0'], tasks: [JSON.parse(oldEvent('0-a')), JSON.parse(oldEvent('0-b'))] });
    expect(parseFiredMessage(old).map(({ seq, task }) => [seq, task.id])).toEqual([
      ['5-2', '0-a'],
      ['6-0', '0-b'],
    ]);
  });
});

/** Whether seqs are strictly increasing. */
function increasing(seqs: string[]): boolean {
  return seqs.every((seq, i) => i === 0 || compareSeq(seqs[i - 1]!, seq) < 0);
}
