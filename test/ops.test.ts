/**
 * The ops routes on a real worker and real Redis: /metrics after 1,000 fired tasks, /readyz
 * while Redis is down and after it is back, /healthz throughout, and a stalled fire loop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetrics } from '../src/metrics.js';
import { createKeys } from '../src/scheduler/keys.js';
import { createTaskStore } from '../src/scheduler/tasks.js';
import { createHealth } from '../src/health.js';
import { startPrivateRedis, type PrivateRedis } from '../src/private-redis.js';
import type { Worker } from '../src/scheduler/worker.js';
import { connect, deletePrefix, freePort, startService, testEnv, uniquePrefix, waitFor, type TestService } from './helpers.js';

/** A service in this process; its ops routes answer on its PORT, whatever its role. */
async function startWithOps(env: Record<string, string>) {
  const running = await startService(env);
  const port = running.service.server?.port ?? running.service.opsServer!.port;
  return { running, store: running.service.store, base: `http://127.0.0.1:${port}` };
}

const get = async (base: string, path: string, init?: RequestInit) => {
  const response = await fetch(`${base}${path}`, init);
  return { status: response.status, type: response.headers.get('content-type') ?? '', text: await response.text() };
};

/** The value of one sample in the Prometheus text format, or undefined when absent. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('/metrics', () => {
  const prefix = uniquePrefix('ops-metrics');
  const idlePrefix = uniquePrefix('ops-idle');
  let ops: Awaited<ReturnType<typeof startWithOps>>;

  beforeAll(async () => {
    ops = await startWithOps(testEnv(prefix));
  });
  afterAll(async () => {
        await ops?.running.stop();
    const redis = await connect();
    await deletePrefix(redis, prefix);
    await deletePrefix(redis, idlePrefix);
    await redis.quit();
  });

  it('serves the live page, with nothing from elsewhere, beside the API', async () => {
    const page = await get(ops.base, '/');
    expect(page.status).toBe(200);
    expect(page.type).toContain('text/html');
    expect(page.text).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    expect((await get(ops.base, '/live.js')).type).toContain('javascript');
    expect((await get(ops.base, '/nothing')).status).toBe(404);
  });

  it('counts 1,000 fired tasks and observes 1,000 latenesses', async () => {
    const start = Date.now() + 500;
    const tasks = Array.from({ length: 1000 }, (_, i) => ({ message: `metrics ${i}`, time: start + i }));
    await ops.store.scheduleMany(tasks);

    const before = await get(ops.base, '/metrics');
    expect(sample(before.text, 'punctual_tasks_scheduled_total')).toBe(1000);
    expect(sample(before.text, 'punctual_redis_up')).toBe(1);

    await waitFor(() => ops.running.out.lines.length >= 1000, 30_000, '1,000 printed lines');
    const text = await waitFor(async () => {
      const { text } = await get(ops.base, '/metrics');
      return sample(text, 'punctual_tasks_fired_total') === 1000 ? text : undefined;
    }, 10_000, 'the fired counter at 1,000');

    expect(sample(text, 'punctual_task_lateness_seconds_count')).toBe(1000);
    expect(sample(text, 'punctual_task_lateness_seconds_bucket{le="+Inf"}')).toBe(1000);
    expect(sample(text, 'punctual_task_lateness_seconds_bucket{le="600"}')).toBe(1000);
    expect(sample(text, 'punctual_task_lateness_seconds_sum')).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'punctual_tasks_dead_total')).toBe(0);
    expect(sample(text, 'punctual_tasks_redelivered_total')).toBe(0);
    expect(sample(text, 'punctual_tasks_promoted_total')).toBe(1000);
    // Everything fired: the schedules, streams and pending lists are empty.
    for (let p = 0; p < 4; p++) {
      expect(sample(text, `punctual_schedule_tasks{partition="${p}"}`)).toBe(0);
      expect(sample(text, `punctual_due_backlog_tasks{partition="${p}"}`)).toBe(0);
      expect(sample(text, `punctual_pending_entries{partition="${p}"}`)).toBe(0);
    }
    expect(sample(text, 'punctual_oldest_overdue_seconds')).toBe(0);
    expect(sample(text, 'punctual_workers_live')).toBe(1);
    expect(sample(text, 'punctual_fire_loop_age_seconds')).toBeLessThan(5);
    // The default process metrics come along.
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });

  it('counts cancels and shows waiting tasks in the schedule gauge', async () => {
    const far = Date.now() + 3_600_000;
    const [kept, cancelled] = await ops.store.scheduleMany([
      { message: 'waits', time: far },
      { message: 'cancelled', time: far },
    ]);
    await ops.store.cancel(cancelled!.id);
    const { text } = await get(ops.base, '/metrics');
    expect(sample(text, 'punctual_tasks_scheduled_total')).toBe(1002);
    expect(sample(text, 'punctual_tasks_cancelled_total')).toBe(1);
    const waiting = [0, 1, 2, 3].reduce((total, p) => total + (sample(text, `punctual_schedule_tasks{partition="${p}"}`) ?? 0), 0);
    expect(waiting).toBe(1);
    await ops.store.cancel(kept!.id);
  });

  it('shows the age of the oldest overdue task while no worker fires it', async () => {
    // Keys of a prefix no worker serves: a task overdue there waits.
    const { service, config } = ops.running;
    const redis = service.redis;
    const keys = createKeys(idlePrefix, config.partitions);
    await createTaskStore(redis, keys, config).schedule({ message: 'overdue', time: Date.now() - 5000 });
    const text = await createMetrics({ redis, keys, sweepMs: config.sweepMs }).render();
    expect(sample(text, 'punctual_oldest_overdue_seconds')).toBeGreaterThanOrEqual(4.5);
    expect(sample(text, 'punctual_oldest_overdue_seconds')).toBeLessThan(60);
    expect(sample(text, 'punctual_workers_live')).toBe(0);
  });
});

describe('/healthz and /readyz', () => {
  let dir: string;
  let port: number;
  let redisServer: PrivateRedis | undefined;
  let ops: Awaited<ReturnType<typeof startWithOps>> | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'punctual-ops-'));
    port = await freePort();
    redisServer = await startPrivateRedis({ port, dir });
    // A worker-only process: no API, the ops routes on a server of their own.
    ops = await startWithOps(testEnv(uniquePrefix('ops-ready'), { ROLE: 'worker', REDIS_URL: redisServer.url }));
  });
  afterAll(async () => {
        await ops?.running.stop();
    await redisServer?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('is ready with Redis up, not ready while Redis is down, and ready again when it is back', async () => {
    const base = ops!.base;
    const ready = await waitFor(async () => ((await get(base, '/readyz')).status === 200 ? true : undefined), 10_000, 'ready');
    expect(ready).toBe(true);
    const readyBody = JSON.parse((await get(base, '/readyz')).text);
    expect(readyBody).toMatchObject({ status: 'ready', checks: { redis: { ok: true }, scripts: { ok: true }, fireLoop: { ok: true } } });

    await redisServer!.stop();
    const down = await waitFor(async () => {
      const answer = await get(base, '/readyz');
      return answer.status === 503 ? answer : undefined;
    }, 10_000, '/readyz to fail with Redis down');
    expect(JSON.parse(down.text)).toMatchObject({ status: 'not ready', checks: { redis: { ok: false } } });
    // Alive all the same: restarting the process would not bring Redis back.
    const alive = await get(base, '/healthz');
    expect(alive.status).toBe(200);
    expect(JSON.parse(alive.text)).toEqual({ status: 'ok' });
    const metrics = await get(base, '/metrics');
    expect(metrics.status).toBe(200);
    expect(sample(metrics.text, 'punctual_redis_up')).toBe(0);

    // The same port and data: the script cache starts empty, so readiness loads the scripts again.
    redisServer = await startPrivateRedis({ port, dir });
    const back = await waitFor(async () => {
      const answer = await get(base, '/readyz');
      return answer.status === 200 ? answer : undefined;
    }, 20_000, '/readyz to recover with Redis back');
    expect(JSON.parse(back.text).checks.scripts.ok).toBe(true);
    expect(sample((await get(base, '/metrics')).text, 'punctual_redis_up')).toBe(1);
  });

  it('is not ready when the fire loop has stalled', async () => {
    const { service, config } = ops!.running;
    const stalledWorker = { firer: { lastLoopAt: Date.now() - config.readBlockMs - config.reclaimIdleMs - 1000 } } as unknown as Worker;
    const health = createHealth({ redis: service.redis, worker: stalledWorker, readBlockMs: config.readBlockMs, reclaimIdleMs: config.reclaimIdleMs });
    const readiness = await health.ready();
    expect(readiness.ready).toBe(false);
    expect(readiness.checks.redis.ok).toBe(true);
    expect(readiness.checks.fireLoop).toMatchObject({ ok: false });
  });

  it('serves no live page where there is no API, and refuses other methods', async () => {
    expect((await get(ops!.base, '/')).status).toBe(404);
    expect((await get(ops!.base, '/graphql')).status).toBe(404);
    expect((await get(ops!.base, '/metrics', { method: 'POST' })).status).toBe(405);
  });
});
