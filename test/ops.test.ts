/**
 * The ops routes on real processes and real Redis: /metrics after 1,000 fired tasks, /readyz
 * while Redis is down and after it is back, /healthz throughout; an API-only process, a
 * worker whose fire loop stalls, and the log level.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, connect as connectTcp, type Socket } from 'node:net';
import { createMetrics } from '../src/metrics.js';
import { createKeys } from '../src/scheduler/keys.js';
import { createTaskStore } from '../src/scheduler/tasks.js';
import { startPrivateRedis, type PrivateRedis } from '../src/private-redis.js';
import {
  SHARED_REDIS_URL,
  ServiceProcess,
  connect,
  deletePrefix,
  freePort,
  startRedisServer,
  startService,
  testEnv,
  uniquePrefix,
  waitFor,
} from './helpers.js';

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

/** Resolves with the answer once `path` answers `status`; a refused connection counts as not yet. */
const answers = (base: string, path: string, status: number, timeoutMs: number, what: string) =>
  waitFor(async () => {
    const answer = await get(base, path).catch(() => undefined);
    return answer?.status === status ? answer : undefined;
  }, timeoutMs, what);

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
    const readyBody = JSON.parse((await answers(base, '/readyz', 200, 10_000, 'ready')).text);
    expect(readyBody).toMatchObject({ status: 'ready', checks: { redis: { ok: true }, scripts: { ok: true }, fireLoop: { ok: true } } });

    await redisServer!.stop();
    const down = await answers(base, '/readyz', 503, 10_000, '/readyz to fail with Redis down');
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
    const back = await answers(base, '/readyz', 200, 20_000, '/readyz to recover with Redis back');
    expect(JSON.parse(back.text).checks.scripts.ok).toBe(true);
    expect(sample((await get(base, '/metrics')).text, 'punctual_redis_up')).toBe(1);
  });

  it('serves no live page where there is no API, and refuses other methods', async () => {
    expect((await get(ops!.base, '/')).status).toBe(404);
    expect((await get(ops!.base, '/graphql')).status).toBe(404);
    expect((await get(ops!.base, '/metrics', { method: 'POST' })).status).toBe(405);
  });
});

/**
 * A TCP proxy in front of Redis that can cut off the connections a client named (CLIENT
 * SETNAME): `hold` lets nothing through them either way and tells neither end, as a NAT or
 * stateful firewall that dropped a connection's state does (the socket stays open, no reset
 * comes); `release` lets what it held through, in order. The other connections pass untouched.
 */
async function startHoldingProxy(targetPort: number) {
  let held: string | undefined;
  const pipes = new Set<{ client: Socket; upstream: Socket; hello: string; queue: (() => void)[] }>();
  const server = createServer((client) => {
    const upstream = connectTcp({ host: '127.0.0.1', port: targetPort });
    const pipe = { client, upstream, hello: '', queue: [] as (() => void)[] };
    pipes.add(pipe);
    const close = () => {
      pipes.delete(pipe);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) socket.on('error', close).on('close', close);
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (chunk: Buffer) => {
        // ioredis names its connection first thing: the first bytes a client sends say whose it is.
        if (from === client && pipe.hello.length < 4096) pipe.hello += chunk.toString('latin1');
        const send = () => {
          if (!to.destroyed) to.write(chunk);
        };
        if (held !== undefined && pipe.hello.includes(held)) pipe.queue.push(send);
        else send();
      });
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    /** Holds the traffic of every connection named `name`, now and later. */
    hold(name: string) {
      held = name;
    },
    release() {
      held = undefined;
      for (const pipe of pipes) for (const send of pipe.queue.splice(0)) send();
    },
    async close() {
      for (const { client, upstream } of pipes) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('an API-only process', () => {
  const prefix = uniquePrefix('ops-api');
  let api: ServiceProcess | undefined;
  let base: string;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    api = new ServiceProcess(testEnv(prefix, { ROLE: 'api', PORT: String(port), LOG_LEVEL: 'info' }));
    await api.started();
  });
  afterAll(async () => {
    await api?.stop();
    const redis = await connect();
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('serves /graphql, /metrics, /healthz and /readyz on its PORT, with no fire loop to check', async () => {
    const time = new Date(Date.now() + 3_600_000).toISOString();
    const response = await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: 'mutation ($message: String!, $time: DateTime!) { delayedTask(message: $message, time: $time) { id status } }',
        variables: { message: 'from the API process', time },
      }),
    });
    expect(response.status).toBe(200);
    const scheduled = (await response.json()) as { data: { delayedTask: { id: string; status: string } } };
    expect(scheduled.data.delayedTask.status).toBe('SCHEDULED');

    const metrics = await get(base, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.type).toContain('text/plain');
    expect(sample(metrics.text, 'punctual_tasks_scheduled_total')).toBe(1);
    expect(sample(metrics.text, 'punctual_redis_up')).toBe(1);
    expect(metrics.text).toMatch(/^process_cpu_user_seconds_total /m);

    const alive = await get(base, '/healthz');
    expect(alive.status).toBe(200);
    expect(JSON.parse(alive.text)).toEqual({ status: 'ok' });

    const ready = await get(base, '/readyz');
    expect(ready.status).toBe(200);
    const body = JSON.parse(ready.text);
    expect(body).toMatchObject({ status: 'ready', checks: { redis: { ok: true }, scripts: { ok: true } } });
    expect(body.checks.fireLoop).toBeUndefined();
  });
});

describe('a worker whose fire loop stalls', () => {
  const prefix = uniquePrefix('ops-stall');
  const name = `stalling-${process.pid}`;
  let proxy: Awaited<ReturnType<typeof startHoldingProxy>> | undefined;
  let worker: ServiceProcess | undefined;
  let base: string;

  beforeAll(async () => {
    proxy = await startHoldingProxy(Number(new URL(SHARED_REDIS_URL).port));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    worker = new ServiceProcess(testEnv(prefix, { ROLE: 'worker', WORKER_NAME: name, REDIS_URL: proxy.url, PORT: String(port), LOG_LEVEL: 'info' }));
    await worker.started();
  });
  afterAll(async () => {
    proxy?.release();
    await worker?.stop();
    await proxy?.close();
    const redis = await connect();
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('is not ready while its blocking read hangs, and ready again once it answers', async () => {
    await answers(base, '/readyz', 200, 15_000, 'the worker to be ready');

    // The fire loop waits on its blocking XREADGROUP, which has no client-side timeout (it
    // blocks by design). When that one connection goes silent, the loop waits for ever while
    // the command connection, and so PING and HTTP, keep working: only readiness tells.
    proxy!.hold(`${name}:blocking`);
    const stalled = await answers(base, '/readyz', 503, 20_000, '/readyz to fail with the fire loop stalled');
    const body = JSON.parse(stalled.text);
    expect(body).toMatchObject({ status: 'not ready', checks: { redis: { ok: true }, scripts: { ok: true }, fireLoop: { ok: false } } });
    expect(body.checks.fireLoop.detail).toMatch(/^the fire loop last began a round \d+ ms ago \(limit 2500 ms\)$/);
    expect((await get(base, '/healthz')).status).toBe(200);
    expect(sample((await get(base, '/metrics')).text, 'punctual_fire_loop_age_seconds')).toBeGreaterThan(2.5);

    proxy!.release();
    const back = await answers(base, '/readyz', 200, 20_000, '/readyz to recover once the read answers');
    expect(JSON.parse(back.text).checks.fireLoop).toEqual({ ok: true });
  });
});

describe('LOG_LEVEL', () => {
  let redisServer: Awaited<ReturnType<typeof startRedisServer>> | undefined;

  // A Redis that keeps nothing on disk, so that start-up logs a warning whatever the level.
  beforeAll(async () => {
    redisServer = await startRedisServer(['--appendonly', 'no']);
  });
  afterAll(async () => {
    await redisServer?.cleanup();
  });

  /** Starts a worker at the level, stops it once it serves, and returns its log lines. */
  async function logsAt(level: string) {
    const port = await freePort();
    const child = new ServiceProcess(testEnv(uniquePrefix('ops-log'), { ROLE: 'worker', REDIS_URL: redisServer!.url, PORT: String(port), LOG_LEVEL: level }));
    try {
      // "punctual started" is logged in the same turn as the listen completes, so before any
      // request is answered; "stopping" on SIGTERM.
      await answers(`http://127.0.0.1:${port}`, '/healthz', 200, 30_000, `the worker at ${level} to serve`).catch((error: Error) => {
        throw new Error(`${error.message}; its stderr: ${child.stderr.join('').slice(-2000)}`);
      });
    } finally {
      expect(await child.stop()).toBe(0);
    }
    const lines = child.stderr.join('').split('\n').filter((line) => line.startsWith('{'));
    return lines.map((line) => JSON.parse(line) as { level: number; msg: string });
  }

  it('at warn, logs the warnings and none of the info lines that info shows', async () => {
    const warn = await logsAt('warn');
    expect(warn.filter((line) => line.level < 40)).toEqual([]);
    expect(warn.some((line) => line.level === 40 && /persists nothing/.test(line.msg))).toBe(true);

    const info = await logsAt('info');
    const infoLines = info.filter((line) => line.level === 30).map((line) => line.msg);
    expect(infoLines).toContain('punctual started');
    expect(infoLines).toContain('stopping');
    expect(info.some((line) => line.level === 40 && /persists nothing/.test(line.msg))).toBe(true);
  });
});
