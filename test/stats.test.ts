/**
 * The scheduler's state as stats and metrics read it, step by step through the firing
 * scripts, while complete.lua trims acknowledged entries from the due stream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { connect, deletePrefix, redisNow, uniquePrefix, waitFor } from './helpers.js';
import { createKeys } from '../src/scheduler/keys.js';
import { createTaskStore } from '../src/scheduler/tasks.js';
import { defineScripts, runScript } from '../src/scheduler/scripts.js';
import { readSchedulerState } from '../src/scheduler/stats.js';

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

const read = async (count: number, consumer: string) => {
  const reply = (await redis.xreadgroup('GROUP', keys.group, consumer, 'COUNT', count, 'STREAMS', keys.due(0), '>')) as [string, [string, string[]][]][];
  return reply[0]![1].map(([entry, fields]) => [entry, fields[1]!] as [string, string]);
};

/** Claims and completes entries as a worker named `consumer` does, without printing. */
const fire = async (entries: [string, string][], consumer: string) => {
  const [fireList] = (await runScript(
    redis,
    'claim',
    [keys.due(0), keys.liveness(0)],
    [keys.group, keys.taskPrefix(0), consumer, 5, 60_000, keys.idempotencyPrefix(0), 5000, ...entries.flat()],
  )) as [(string | number)[]];
  const args: (string | number)[] = [];
  for (let i = 0; i < fireList.length; i += 7) args.push(fireList[i + 1]!, fireList[i]!, fireList[i + 5]!, JSON.stringify({ id: fireList[i] }));
  await runScript(
    redis,
    'complete',
    [keys.due(0), keys.fired(0)],
    [keys.group, keys.taskPrefix(0), keys.firedChannel, 1000, 60_000, keys.idempotencyPrefix(0), 0, consumer, ...args],
  );
};

describe('scheduler state', () => {
  it('counts scheduled, unread and pending entries and finds the oldest unfinished one while acknowledged entries are trimmed', async () => {
    const store = createTaskStore(redis, keys, { horizonMs: 3_600_000, retentionMs: 60_000, maxMessageBytes: 1000, maxBulk: 100 });
    const base = (await redisNow(redis)) + 100;
    const times = Array.from({ length: 6 }, (_, i) => base + i);
    await store.scheduleMany(times.map((time, i) => ({ message: `task ${i}`, time })));
    await redis.xgroup('CREATE', keys.due(0), keys.group, '0', 'MKSTREAM');
    const state = async () => (await readSchedulerState(redis, keys)).partitions[0]!;

    expect(await state()).toMatchObject({ scheduled: 6, unread: 0, pending: 0 });
    await waitFor(async () => (await state()).overdue === 6, 5000, 'all six to come due');
    expect((await state()).oldestDue).toBe(times[0]);

    await runScript(redis, 'promote', [keys.schedule(0), keys.due(0)], [1000, keys.taskPrefix(0)]);
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
    expect((await store.getMany((await redis.xrange(keys.fired(0), '-', '+')).map(([, f]) => JSON.parse(f[1]!).id))).map((t) => t?.status)).toEqual(
      Array(6).fill('FIRED'),
    );
  });
});
