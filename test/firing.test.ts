/**
 * Firing on time: every task printed once, never before its due time by Redis time; past,
 * far-future and beyond-horizon times; a worker whose own clock is an hour off. On one Redis
 * and on a Redis Cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, redisNow, useServices, waitFor } from './helpers.js';
import { SchedulerError } from '../src/scheduler/errors.js';

describe.each(BACKENDS)('firing on %s', (backend) => {
  const suite = useServices(beforeAll, afterAll, backend);
  const serviceFor = suite.serviceFor;

  it('prints each of 1,000 tasks spread over 3 s exactly once, none early, each FIRED with firedAt and lateByMs', async () => {
    const { service, out } = await serviceFor('spread');
    const start = (await redisNow(suite.redis)) + 1000;
    const inputs = Array.from({ length: 1000 }, (_, i) => ({ message: `spread ${i}`, time: start + Math.floor(Math.random() * 3000) }));
    const tasks = (await Promise.all(inputs.map((input) => service.store.schedule(input)))).map((task, i) => ({ ...task, due: inputs[i]!.time }));
    expect(tasks.every((task) => task.status === 'SCHEDULED')).toBe(true);

    await waitFor(() => out.lines.length >= 1000, 30_000, '1,000 prints');
    // Give a duplicate a chance to show up before counting.
    await waitFor(async () => (await service.store.getMany(tasks.map((t) => t.id))).every((t) => t?.status === 'FIRED'), 10_000, 'all FIRED');

    const byMessage = new Map<string, number>();
    for (const { line } of out.lines) byMessage.set(line, (byMessage.get(line) ?? 0) + 1);
    expect(out.lines.length).toBe(1000);
    expect([...byMessage.values()].every((n) => n === 1)).toBe(true);

    const stored = await service.store.getMany(tasks.map((t) => t.id));
    const lateness: number[] = [];
    stored.forEach((task, i) => {
      expect(task).not.toBeNull();
      expect(task!.status).toBe('FIRED');
      expect(task!.time).toBe(tasks[i]!.due);
      expect(task!.firedAt).not.toBeNull();
      expect(task!.firedAt!).toBeGreaterThanOrEqual(task!.time); // judged by Redis time
      expect(task!.lateByMs).toBe(task!.firedAt! - task!.time);
      expect(task!.attempts).toBe(1);
      lateness.push(task!.lateByMs!);
    });
    // The print itself, seen by this process's clock (the same machine clock as Redis).
    for (const { line, at } of out.lines) {
      const index = Number(line.split(' ')[1]);
      expect(at).toBeGreaterThanOrEqual(inputs[index]!.time);
    }
    lateness.sort((a, b) => a - b);
    // Generous bound for a noisy 2-core machine; the benchmark measures precision.
    expect(lateness[Math.floor(lateness.length * 0.99)]!).toBeLessThan(1000);
  });

  it('keeps a long message in compact parts and prints, returns and compares it whole', async () => {
    const { service, out } = await serviceFor('long');
    // Multi-byte characters straddle the 64-byte part boundaries.
    const messages = [64, 65, 100, 1000, 20_000].map((length, i) => `${i} ${'é🎉x'.repeat(length)}`.slice(0, length + 2));
    const now = await redisNow(suite.redis);
    const tasks = await service.store.scheduleMany(messages.map((message) => ({ message, time: now + 300 })));
    const again = await service.store.schedule({ message: messages[3]!, time: now + 300, idempotencyKey: 'long' });
    expect((await service.store.schedule({ message: messages[3]!, time: now + 300, idempotencyKey: 'long' })).id).toBe(again.id);
    await waitFor(() => out.lines.length >= 6, 10_000, 'six prints');
    expect(out.lines.map((l) => l.line).sort()).toEqual([...messages, messages[3]!].sort());
    for (const [i, task] of tasks.entries()) expect((await service.store.get(task.id))!.message).toBe(messages[i]);
    // A 100-byte message keeps the task's hash in Redis's compact encoding.
    const hundred = await service.store.schedule({ message: 'x'.repeat(100), time: now + 3_600_000 });
    expect(await suite.redis.object('ENCODING', service.keys.task(Number(hundred.id.split('-')[0]), hundred.id))).toBe('listpack');
  });

  it('fires a time in the past at once and reports how late it is', async () => {
    const { service, out } = await serviceFor('past');
    const now = await redisNow(suite.redis);
    const task = await service.store.schedule({ message: 'from the past', time: now - 60_000 });
    await waitFor(() => out.count('from the past') === 1, 5000, 'the past task to print');
    const fired = await waitFor(async () => {
      const t = await service.store.get(task.id);
      return t?.status === 'FIRED' ? t : null;
    }, 5000, 'FIRED');
    expect(fired.lateByMs!).toBeGreaterThanOrEqual(60_000);
    expect(fired.firedAt! - now).toBeLessThan(3000);
  });

  // Counts keys on one server: the check of the horizon does not depend on the backend.
  it.skipIf(backend === 'cluster')('refuses a time past the horizon and writes nothing', async () => {
    const { service, config } = await serviceFor('horizon', { HORIZON_MS: String(24 * 3600 * 1000) });
    const now = await redisNow(suite.redis);
    const before = await suite.redis.dbsize();
    const error = await service.store.schedule({ message: 'too far', time: now + 2 * 24 * 3600 * 1000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SchedulerError);
    expect((error as SchedulerError).code).toBe('TIME_TOO_FAR');
    const keys = await suite.redis.keys(`{${config.keyPrefix}:*}:task:*`);
    expect(keys).toHaveLength(0);
    // A bulk across partitions with one bad task writes none of the others.
    const bulk = Array.from({ length: 20 }, (_, i) => ({ message: `bulk ${i}`, time: now + (i === 13 ? 3 * 24 * 3600 * 1000 : 60_000) }));
    const bulkError = await service.store.scheduleMany(bulk).catch((e: unknown) => e);
    expect((bulkError as SchedulerError).code).toBe('TIME_TOO_FAR');
    expect((bulkError as SchedulerError).details.index).toBe(13);
    expect(await suite.redis.keys(`{${config.keyPrefix}:*}:task:*`)).toHaveLength(0);
    expect(await suite.redis.dbsize()).toBeLessThanOrEqual(before + 50); // other suites share this Redis
  });

  // Timers in the worker, whatever holds the tasks: once is enough.
  it.skipIf(backend === 'cluster')('keeps a task 40 days ahead (beyond the 2^31 ms timer limit) scheduled, and fires a near one beside it', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      const { service, out } = await serviceFor('far');
      const now = await redisNow(suite.redis);
      const far = await service.store.schedule({ message: 'forty days', time: now + 40 * 24 * 3600 * 1000 });
      await service.store.schedule({ message: 'soon', time: now + 1500 });
      await waitFor(() => out.count('soon') === 1, 10_000, 'the near task');
      // Proving an absence takes time: three more sweeps (SWEEP_MS 500) pass, and it still waits.
      await new Promise((r) => setTimeout(r, 1500));
      expect(out.count('forty days')).toBe(0);
      expect((await service.store.get(far.id))!.status).toBe('SCHEDULED');
      expect(warnings).not.toContain('TimeoutOverflowWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  // A clock ahead is the one that could fire early; on a cluster the masters' clocks are checked by it.
  const skews: [string, number][] = [
    ['an hour ahead', 3_600_000],
    ['an hour behind', -3_600_000],
  ];
  it.each(backend === 'cluster' ? skews.slice(0, 1) : skews)('with a worker clock %s fires nothing early, and on time', async (_label, offset) => {
    const { service, out } = await serviceFor('skew', { CLOCK_OFFSET_MS: String(offset) });
    const start = (await redisNow(suite.redis)) + 1500;
    const inputs = Array.from({ length: 200 }, (_, i) => ({ message: `skew ${i}`, time: start + i * 10 }));
    const tasks = await service.store.scheduleMany(inputs);
    await waitFor(() => out.lines.length >= 200, 20_000, '200 prints');
    for (const { line, at } of out.lines) expect(at).toBeGreaterThanOrEqual(inputs[Number(line.split(' ')[1])]!.time);
    const stored = await service.store.getMany(tasks.map((t) => t.id));
    for (const task of stored) {
      expect(task!.firedAt!).toBeGreaterThanOrEqual(task!.time);
      expect(task!.lateByMs!).toBeLessThan(1000);
    }
  });
});
