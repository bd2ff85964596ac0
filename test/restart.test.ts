/**
 * Restarts: the whole service stopped while tasks come due (on one Redis and on a cluster),
 * and Redis itself killed and restarted under running workers (AOF, fsync always). Nothing
 * accepted is lost. A cluster master killed under load is in cluster-failover.test.ts.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { BACKENDS, ServiceProcess, connectBackend, readTasksAt, countFiredEvents, firedLogCounts, deletePrefix, redisNow, startRedisServer, startService, testEnv, uniquePrefix, waitFor } from './helpers.js';
import { startPrivateRedis } from '../src/private-redis.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

describe('restarts', () => {
  it.each(BACKENDS)('fires every task that came due while every process was stopped, each showing how late (%s)', async (backend) => {
    const prefix = uniquePrefix('restart');
    const redis = await connectBackend(backend);
    cleanups.push(async () => {
      await deletePrefix(redis, prefix);
      await redis.quit();
    });
    const first = await startService(testEnv(prefix, {}, backend));
    const due = (await redisNow(redis)) + 1500;
    const tasks = await first.service.store.scheduleMany(Array.from({ length: 500 }, (_, i) => ({ message: `while down ${i}`, time: due + i })));
    await first.stop();
    expect(first.out.lines).toHaveLength(0);

    // Their due time passes with nothing running.
    await waitFor(async () => (await redisNow(redis)) > due + 2500, 10_000, 'the due times to pass');
    const second = await startService(testEnv(prefix, {}, backend));
    cleanups.push(() => second.stop());
    await waitFor(() => second.out.lines.length >= 500, 15_000, '500 prints after the restart');
    const stored = await waitFor(async () => {
      const all = await second.service.store.getMany(tasks.map((t) => t.id));
      return all.every((t) => t?.status === 'FIRED') ? all : null;
    }, 10_000, 'all FIRED');
    // Each printed once: as many lines as tasks, and every message among them.
    expect(second.out.lines).toHaveLength(500);
    expect(second.out.lines.map((l) => l.line).sort()).toEqual(tasks.map((t) => t.message).sort());
    for (const task of stored) {
      expect(task!.attempts).toBe(1);
      expect(task!.lateByMs).toBe(task!.firedAt! - task!.time);
      // Down for 2.5 s past the first due time, the last due 0.5 s after it.
      expect(task!.lateByMs!).toBeGreaterThanOrEqual(2000 - 500);
    }
  });

  it('survives kill -9 of Redis (AOF): accepted tasks fire, and workers resume without a restart', async () => {
    const server = await startRedisServer();
    cleanups.push(() => server.cleanup());
    const prefix = uniquePrefix('redis-restart');
    const worker = new ServiceProcess(testEnv(prefix, { REDIS_URL: server.url, ROLE: 'worker', LOG_LEVEL: 'info' }));
    cleanups.push(async () => worker.kill('SIGKILL'));
    await worker.started();
    const events = await countFiredEvents(server.url, prefix);
    cleanups.push(() => events.close());

    const api = await startService(testEnv(prefix, { REDIS_URL: server.url, ROLE: 'api' }));
    const direct = new Redis(server.url, { lazyConnect: true, retryStrategy: () => 100 });
    direct.on('error', () => {});
    await direct.connect();
    cleanups.push(async () => direct.disconnect());
    const now = await redisNow(direct);
    // Some fire before the crash, most are due after it.
    const inputs = Array.from({ length: 1000 }, (_, i) => ({ message: `survivor ${i}`, time: now + 300 + i * 5 }));
    const tasks = await api.service.store.scheduleMany(inputs);
    await api.stop();
    await waitFor(() => events.total() > 0, 10_000, 'the first events');

    await server.stop('SIGKILL');
    const firedBeforeCrash = events.total();
    const restarted = await startPrivateRedis({ port: server.port, dir: server.dir, appendfsync: 'always' });
    cleanups.push(() => restarted.stop('SIGKILL'));

    // Live events published while a subscriber reconnects are gone (pub/sub keeps nothing);
    // the fired logs are the durable record of what was published.
    const logged = await waitFor(async () => {
      const counts = await firedLogCounts(direct, prefix).catch(() => new Map<string, number>());
      return counts.size >= 1000 ? counts : null;
    }, 30_000, 'all 1,000 tasks to fire after the Redis restart');
    await waitFor(() => new Set(worker.lines).size >= 1000, 10_000, 'all 1,000 printed');
    expect(firedBeforeCrash).toBeLessThan(1000);
    expect(worker.child.exitCode).toBeNull(); // the same worker process, never restarted
    expect(logged.size).toBe(1000);
    expect([...logged.values()].every((n) => n === 1)).toBe(true);
    expect([...events.counts.values()].every((n) => n === 1)).toBe(true);
    const statuses = (await readTasksAt(direct, prefix, tasks.map((t) => t.id))).map((task) => task?.status);
    expect(statuses.every((s) => s === 'FIRED')).toBe(true);
    await worker.stop();
  });
});
