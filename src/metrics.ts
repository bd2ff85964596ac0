/**
 * Prometheus metrics for one process (prom-client, a registry of its own per process).
 *
 * Counters count what this process did: tasks scheduled and cancelled through its API,
 * tasks fired, dead, redelivered and reclaimed by its worker, with a histogram of how late
 * each fired. They come from hooks (the firer's `onFired`, a wrapped TaskStore) and from the
 * firer's and promoter's stats, so the scheduling core stays free of prom-client.
 *
 * Gauges describe the shared state in Redis and are read at scrape time, in one pipelined
 * round trip timed by Redis TIME: every process of a deployment reports the same values, so
 * aggregate them with max(), not sum().
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RedisClient } from './redis.js';
import type { Keys } from './scheduler/keys.js';
import { countLiveWorkers, type Worker } from './scheduler/worker.js';
import type { FiredTask } from './scheduler/firer.js';
import type { TaskStore } from './scheduler/tasks.js';
import { readSchedulerState, type SchedulerState } from './scheduler/stats.js';

/** Lateness buckets, in seconds: 1 ms to 10 minutes. */
export const LATENESS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

export interface MetricsSources {
  redis: RedisClient;
  keys: Keys;
  /** The worker of this process, when its role runs one. */
  worker?: Worker | undefined;
  /** Workers beat once per sweep; the live-worker gauge allows three missed beats. */
  sweepMs: number;
}

export interface Metrics {
  readonly registry: Registry;
  /** The Content-Type of `render()`'s text. */
  readonly contentType: string;
  /** Reads the Redis gauges, then renders every metric in the Prometheus text format. */
  render(): Promise<string>;
  /** Counts tasks fired in one committed batch and observes their lateness. */
  observeFired(tasks: readonly FiredTask[]): void;
  countScheduled(count: number): void;
  countCancelled(count: number): void;
}

/** A counter that follows a monotonic number kept elsewhere (the core's stats), read at scrape time. */
function followingCounter(registry: Registry, name: string, help: string, read: () => number): void {
  let seen = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

export function createMetrics(sources: MetricsSources): Metrics {
  const { redis, keys, worker } = sources;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const scheduled = new Counter({ name: 'punctual_tasks_scheduled_total', help: 'Tasks accepted by this process (an idempotent retry counts again).', registers });
  const cancelled = new Counter({ name: 'punctual_tasks_cancelled_total', help: 'Successful cancels through this process.', registers });
  // Registered only where a worker fires, so an API process shows no misleading zeros.
  const workerRegisters = worker ? registers : [];
  const fired = new Counter({ name: 'punctual_tasks_fired_total', help: 'Tasks this process printed and committed as FIRED.', registers: workerRegisters });
  const lateness = new Histogram({
    name: 'punctual_task_lateness_seconds',
    help: 'How late each task fired: firedAt - time, by Redis time.',
    buckets: LATENESS_BUCKETS,
    registers: workerRegisters,
  });
  if (worker) {
    const { firer, promoter } = worker;
    followingCounter(registry, 'punctual_tasks_dead_total', 'Tasks that became DEAD after the maximum deliveries.', () => firer.stats.dead);
    followingCounter(registry, 'punctual_tasks_redelivered_total', 'Tasks printed on a second or later delivery (they may have printed twice).', () => firer.stats.redelivered);
    followingCounter(registry, 'punctual_tasks_reclaimed_total', 'Tasks of due entries taken over from a worker that left them unacknowledged.', () => firer.stats.reclaimed);
    followingCounter(registry, 'punctual_tasks_promoted_total', 'Tasks moved from a schedule to a due stream by this process.', () => promoter.stats.promoted);
    new Gauge({
      name: 'punctual_fire_loop_age_seconds',
      help: "Seconds since this worker's fire loop last began a round; it grows when the loop stalls.",
      registers,
      collect() {
        this.set(firer.lastLoopAt > 0 ? (Date.now() - firer.lastLoopAt) / 1000 : 0);
      },
    });
    const previous = firer.onFired;
    firer.onFired = (tasks) => {
      previous?.(tasks);
      observeFired(tasks);
    };
  }

  const redisUp = new Gauge({ name: 'punctual_redis_up', help: '1 when this scrape could read Redis, else 0 (the Redis gauges then read 0 or are absent).', registers });
  const labelNames = ['partition'] as const;
  const scheduleSize = new Gauge({ name: 'punctual_schedule_tasks', help: 'Tasks waiting for their time (ZCARD of the schedule).', labelNames, registers });
  const dueBacklog = new Gauge({ name: 'punctual_due_backlog_tasks', help: 'Due tasks no worker has read yet.', labelNames, registers });
  const pendingEntries = new Gauge({ name: 'punctual_pending_entries', help: 'Tasks of the due entries delivered to a worker and not yet committed (an entry names one task or more).', labelNames, registers });
  const oldestOverdue = new Gauge({
    name: 'punctual_oldest_overdue_seconds',
    help: 'How long the oldest task whose time has come has waited to fire; 0 when none is waiting.',
    registers,
  });
  const liveWorkers = new Gauge({ name: 'punctual_workers_live', help: 'Workers whose heartbeat is recent.', registers });
  const redisGauges = [scheduleSize, dueBacklog, pendingEntries, oldestOverdue, liveWorkers];

  function observeFired(tasks: readonly FiredTask[]): void {
    fired.inc(tasks.length);
    for (const task of tasks) lateness.observe(Math.max(task.firedAt - task.time, 0) / 1000);
  }

  const refreshRedisGauges = async () => {
    for (const gauge of redisGauges) gauge.reset();
    // Never send a command on a connection that is not up: with lazyConnect it would
    // connect it behind the service's back, and while reconnecting it would only queue.
    if (redis.status !== 'ready') return redisUp.set(0);
    let reading: SchedulerState;
    try {
      reading = await readSchedulerState(redis, keys);
    } catch {
      return redisUp.set(0);
    }
    redisUp.set(1);
    const { now, partitions, beats } = reading;
    let oldestDue = Infinity;
    partitions.forEach((state, p) => {
      const partition = String(p);
      scheduleSize.set({ partition }, state.scheduled);
      pendingEntries.set({ partition }, state.pending);
      dueBacklog.set({ partition }, state.unread);
      if (state.oldestDue !== undefined) oldestDue = Math.min(oldestDue, state.oldestDue);
    });
    oldestOverdue.set(oldestDue === Infinity ? 0 : Math.max(now - oldestDue, 0) / 1000);
    liveWorkers.set(countLiveWorkers(beats, now, sources.sweepMs));
  };

  return {
    registry,
    contentType: registry.contentType,
    async render() {
      await refreshRedisGauges();
      return registry.metrics();
    },
    observeFired,
    countScheduled: (count) => scheduled.inc(count),
    countCancelled: (count) => cancelled.inc(count),
  };
}

/** A TaskStore that counts what it schedules and cancels; everything else passes through. */
export function instrumentStore(store: TaskStore, metrics: Pick<Metrics, 'countScheduled' | 'countCancelled'>): TaskStore {
  return {
    ...store,
    async schedule(task) {
      const created = await store.schedule(task);
      metrics.countScheduled(1);
      return created;
    },
    async scheduleMany(tasks) {
      const created = await store.scheduleMany(tasks);
      metrics.countScheduled(created.length);
      return created;
    },
    async cancel(id) {
      const task = await store.cancel(id);
      metrics.countCancelled(1);
      return task;
    },
  };
}

/** What an API process holds open, read at scrape time: its limits are in the README's Limits table. */
export interface ApiLoad {
  subscriptions(): number;
  connections(): number;
  webSockets(): number;
}

/** Gauges of what this API process holds open (per process: sum them across processes). */
export function registerApiGauges(registry: Registry, load: ApiLoad): void {
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  gauge('punctual_api_subscriptions', 'Live taskFired subscriptions this process serves (MAX_SUBSCRIPTIONS).', load.subscriptions);
  gauge('punctual_api_connections', 'Open HTTP connections of this process, WebSockets included (MAX_CONNECTIONS).', load.connections);
  gauge('punctual_api_websockets', 'Open WebSockets of this process (MAX_WEBSOCKETS).', load.webSockets);
}
