/**
 * Cancel and reschedule under races, and idempotency keys; on one Redis and on a Redis Cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, redisNow, sleep, useServices, waitFor } from './helpers.js';
import { SchedulerError } from '../src/scheduler/errors.js';

const codeOf = (error: unknown) => (error instanceof SchedulerError ? error.code : String(error));

describe.each(BACKENDS)('cancel on %s', (backend) => {
  const suite = useServices(beforeAll, afterAll, backend);
  const serviceFor = suite.serviceFor;

  it('races 1,000 cancels against the firing: each task either cancelled and never printed, or printed and its cancel refused', async () => {
    const { service, out } = await serviceFor('race', { FIRE_BATCH: '20' });
    const start = (await redisNow(suite.redis)) + 1000;
    const inputs = Array.from({ length: 1000 }, (_, i) => ({ message: `race ${i}`, time: start + Math.floor(i / 2) }));
    const tasks = await service.store.scheduleMany(inputs);
    // Cancels land across the 500 ms in which the tasks come due, each within a few
    // milliseconds of its own task's time, some before and some after.
    const offset = (await redisNow(suite.redis)) - Date.now();
    const outcomes = new Map<string, string>();
    await Promise.all(
      tasks.map(async (task, i) => {
        const wait = inputs[i]!.time - offset - Date.now() + ((i * 37) % 50) - 35;
        if (wait > 0) await sleep(wait);
        outcomes.set(
          task.id,
          await service.store.cancel(task.id).then(
            (t) => t.status,
            (error: unknown) => codeOf(error),
          ),
        );
      }),
    );
    const cancelled = tasks.filter((t) => outcomes.get(t.id) === 'CANCELLED');
    const refused = tasks.filter((t) => outcomes.get(t.id) === 'TOO_LATE');
    expect(cancelled.length + refused.length).toBe(1000);
    await waitFor(() => out.lines.length >= refused.length, 20_000, 'every refused cancel to print');
    await waitFor(async () => (await service.store.getMany(refused.map((t) => t.id))).every((t) => t?.status === 'FIRED'), 10_000, 'FIRED');
    await sleep(1000); // a late print of a cancelled task would show up here
    const printed = new Set(out.lines.map((l) => l.line));
    const message = (id: string) => inputs[tasks.findIndex((t) => t.id === id)]!.message;
    const both = cancelled.filter((t) => printed.has(message(t.id)));
    const neither = refused.filter((t) => !printed.has(message(t.id)));
    expect(both).toEqual([]);
    expect(neither).toEqual([]);
    expect(out.lines.length).toBe(refused.length);
    const stored = await service.store.getMany(cancelled.map((t) => t.id));
    expect(stored.every((t) => t?.status === 'CANCELLED')).toBe(true);
    console.log(`cancel race: ${cancelled.length} cancelled and never printed, ${refused.length} printed and refused, 0 both`);
    // The race was real: both outcomes happened.
    expect(cancelled.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
  });

  it('cancels a scheduled task for good, is idempotent, and refuses unknown ids', async () => {
    const { service, out } = await serviceFor('cancel');
    const task = await service.store.schedule({ message: 'never', time: (await redisNow(suite.redis)) + 800 });
    expect((await service.store.cancel(task.id)).status).toBe('CANCELLED');
    expect((await service.store.cancel(task.id)).status).toBe('CANCELLED');
    expect(codeOf(await service.store.cancel('0-doesnotexist0000000').catch((e: unknown) => e))).toBe('NOT_FOUND');
    expect(codeOf(await service.store.cancel('garbage').catch((e: unknown) => e))).toBe('NOT_FOUND');
    expect(codeOf(await service.store.reschedule(task.id, Date.now()).catch((e: unknown) => e))).toBe('TOO_LATE');
    await sleep(1500);
    expect(out.count('never')).toBe(0);
  });

  it('reschedules a task earlier and later; the old time never fires it', async () => {
    const { service, out } = await serviceFor('reschedule');
    const now = await redisNow(suite.redis);
    const later = await service.store.schedule({ message: 'moved later', time: now + 500 });
    const earlier = await service.store.schedule({ message: 'moved earlier', time: now + 60_000 });
    await service.store.reschedule(later.id, now + 2500);
    await service.store.reschedule(earlier.id, now + 700);
    await waitFor(() => out.count('moved earlier') === 1, 5000, 'the task moved earlier');
    expect(out.count('moved later')).toBe(0);
    await waitFor(() => out.count('moved later') === 1, 5000, 'the task moved later');
    const fired = (await service.store.get(later.id))!;
    expect(fired.firedAt!).toBeGreaterThanOrEqual(now + 2500);
    expect(codeOf(await service.store.reschedule(later.id, now + 9000).catch((e: unknown) => e))).toBe('TOO_LATE');
    await sleep(500);
    expect(out.count('moved later')).toBe(1);
  });

  describe('idempotency keys', () => {
    it('returns the existing task for a repeated key, and refuses the key with another message', async () => {
      const { service } = await serviceFor('idem');
      const time = (await redisNow(suite.redis)) + 60_000;
      const first = await service.store.schedule({ message: 'once', time, idempotencyKey: 'order-42' });
      const again = await service.store.schedule({ message: 'once', time, idempotencyKey: 'order-42' });
      expect(again.id).toBe(first.id);
      const conflict = await service.store.schedule({ message: 'twice', time, idempotencyKey: 'order-42' }).catch((e: unknown) => e);
      expect(codeOf(conflict)).toBe('IDEMPOTENCY_CONFLICT');
      const bulk = await service.store.scheduleMany([
        { message: 'a', time, idempotencyKey: 'k1' },
        { message: 'a', time, idempotencyKey: 'k1' },
        { message: 'b', time },
      ]);
      expect(bulk[0]!.id).toBe(bulk[1]!.id);
      expect(bulk[2]!.id).not.toBe(bulk[0]!.id);
    });
  });
});
