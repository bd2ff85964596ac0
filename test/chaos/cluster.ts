/**
 * A whole Punctual deployment on loopback for the chaos suite: its own redis-server (AOF
 * on), or its own Redis Cluster (3 masters, 3 replicas), API processes, worker processes,
 * load driven through the GraphQL API, and the history the checker needs: what each client
 * was told, what each worker printed, and what the fired logs (written in the same atomic
 * step as each published event) hold.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { ServiceProcess, connectBackend, readTasksAt, sleep, waitFor } from '../helpers.js';
import { startCluster, type LocalCluster } from '../../scripts/cluster.js';
import { createKeys, type Keys, taskIdsOfEntry } from '../../src/scheduler/keys.js';
import type { RedisClient } from '../../src/redis.js';
import { freePort, startPrivateRedis, type PrivateRedis } from '../../src/private-redis.js';
import { startProxy, type TcpProxy } from './proxy.js';
import { eventsOfEntry } from '../../src/scheduler/fired-log.js';

export const FAULTS_MODULE = fileURLToPath(new URL('./faults.mjs', import.meta.url));
export const PARTITIONS = 4;
/** On a cluster: two partitions on each of the 3 masters. */
export const CLUSTER_PARTITIONS = 6;

export interface Accepted {
  id: string;
  message: string;
  due: number;
  acceptedAt: number;
}

export interface Answer {
  ok: boolean;
  code?: string;
  id?: string;
  ms: number;
  at: number;
}

export interface FiredRecord {
  id: string;
  firedAt: number;
  lateByMs: number;
  time: number;
  /** Deliveries the task had when it fired: each claim counts one, a retried claim too. */
  attempts: number;
}

export interface ClusterOptions {
  workers: number;
  apis: number;
  /** Extra redis-server arguments (a negative control turns persistence off). */
  redisArgs?: string[];
  /** Settings for every process. */
  env?: Record<string, string>;
  /** Settings for worker i. */
  workerEnv?: (index: number) => Record<string, string>;
  /** Chaos faults preloaded into workers (faults.mjs). */
  workerFaults?: string;
  /** Worker 0 reaches Redis through a proxy the scenario controls. */
  proxyWorker0?: boolean;
  /** API 0 reaches Redis through a proxy the scenario controls. */
  proxyApi0?: boolean;
  /** Chaos faults preloaded into API processes (faults.mjs). */
  apiFaults?: string;
  /** Tasks the load sends are due this many ms after they are sent, plus up to `dueSpanMs` more. @default 1000 */
  dueAfterMs?: number;
  /** @default 4000 */
  dueSpanMs?: number;
  /** A Redis Cluster of 3 masters and 3 replicas (cluster-node-timeout 1000 ms) instead of one redis-server. */
  redisCluster?: boolean;
}

interface WorkerSlot {
  index: number;
  name: string;
  process: ServiceProcess;
}

let clusterCounter = 0;

export class Cluster {
  readonly prefix = `chaos${process.pid}x${clusterCounter++}`;
  readonly accepted: Accepted[] = [];
  readonly answers: Answer[] = [];
  /** Outcome of each cancel the scenario made: the status, or the error code. */
  readonly cancels = new Map<string, string>();
  /** Every worker process that ever ran, its printed lines kept after it died. */
  readonly allWorkers: ServiceProcess[] = [];
  readonly workers: WorkerSlot[] = [];
  readonly apis: { port: number; process: ServiceProcess }[] = [];
  redis!: PrivateRedis;
  /** The Redis Cluster, when the options ask for one. */
  nodes: LocalCluster | undefined;
  readonly keys: Keys;
  proxy: TcpProxy | undefined;
  events: { at: number; what: string }[] = [];
  private dir = mkdtempSync(join(tmpdir(), 'punctual-chaos-'));
  private redisPort = 0;
  private nameCounter = 0;
  private apiCursor = 0;

  constructor(readonly options: ClusterOptions) {
    this.keys = createKeys(this.prefix, options.redisCluster ? CLUSTER_PARTITIONS : PARTITIONS, Boolean(options.redisCluster));
  }

  get redisUrl(): string {
    return `redis://127.0.0.1:${this.redisPort}`;
  }

  note(what: string): void {
    this.events.push({ at: Date.now(), what });
  }

  private baseEnv(): Record<string, string> {
    return {
      ...(this.nodes ? { REDIS_CLUSTER_NODES: this.nodes.seeds } : { REDIS_URL: this.redisUrl }),
      KEY_PREFIX: this.prefix,
      PARTITIONS: String(this.keys.partitions),
      // "punctual started" is an info line, and the timeline wants the workers' notes.
      LOG_LEVEL: 'info',
      RECLAIM_IDLE_MS: '2000',
      SWEEP_MS: '500',
      READ_BLOCK_MS: '1000',
      PRIVATE_REDIS: 'off',
      // The load comes from one address, 127.0.0.1, with up to 200 requests in flight and
      // their kept-alive connections: more than the per-address cap sized for many clients.
      MAX_CONNECTIONS_PER_CLIENT: '2000',
      ...this.options.env,
    };
  }

  async start(): Promise<void> {
    if (this.options.redisCluster) this.nodes = await startCluster({ nodeTimeoutMs: 1000 });
    else {
      this.redisPort = await freePort();
      await this.startRedis();
    }
    if (this.options.proxyWorker0 || this.options.proxyApi0) this.proxy = await startProxy(this.redisPort);
    for (let i = 0; i < this.options.apis; i++) {
      this.apis.push({ port: await freePort(), process: undefined! });
      this.restartApi(i);
    }
    for (let i = 0; i < this.options.workers; i++) this.startWorker(i);
    await Promise.all([...this.apis.map((a) => a.process.started()), ...this.workers.map((w) => w.process.started())]);
  }

  async startRedis(): Promise<void> {
    this.redis = await startPrivateRedis({ port: this.redisPort, dir: this.dir, appendfsync: 'always', args: this.options.redisArgs });
  }

  /** Starts (or restarts) the worker in slot index; a new name unless sameName. */
  startWorker(index: number, sameName = false): WorkerSlot {
    const previous = this.workers[index];
    const name = sameName && previous ? previous.name : `w${index}-${this.nameCounter++}`;
    const url = index === 0 && this.options.proxyWorker0 ? `redis://127.0.0.1:${this.proxy!.port}` : this.redisUrl;
    const env: Record<string, string> = { ...this.baseEnv(), ROLE: 'worker', PORT: '0', WORKER_NAME: name, ...(this.nodes ? {} : { REDIS_URL: url }), ...this.options.workerEnv?.(index) };
    if (this.options.workerFaults) env.CHAOS_FAULT = this.options.workerFaults;
    const child = new ServiceProcess(env, this.options.workerFaults ? [FAULTS_MODULE] : []);
    const slot: WorkerSlot = { index, name, process: child };
    this.workers[index] = slot;
    this.allWorkers.push(child);
    return slot;
  }

  /** Starts API process index again on its port (after it was stopped). */
  restartApi(index: number): void {
    const api = this.apis[index]!;
    const env: Record<string, string> = { ...this.baseEnv(), ROLE: 'api', PORT: String(api.port) };
    if (index === 0 && this.options.proxyApi0) env.REDIS_URL = `redis://127.0.0.1:${this.proxy!.port}`;
    if (this.options.apiFaults) env.CHAOS_FAULT = this.options.apiFaults;
    api.process = new ServiceProcess(env, this.options.apiFaults ? [FAULTS_MODULE] : []);
  }

  /** Waits until every task's status and deliveries so far satisfy `settled`, or the time is up. */
  async waitForTasks(ids: string[], settled: (status: string | null, attempts: number) => boolean, timeoutMs: number): Promise<boolean> {
    const redis = await this.connect();
    const settledAll = async () => {
      const tasks = await readTasksAt(redis, this.keys, ids);
      return tasks.every((task) => settled(task?.status ?? null, task?.attempts ?? 0));
    };
    try {
      await waitFor(settledAll, timeoutMs, 'the tasks to settle', 250);
      return true;
    } catch {
      return false;
    } finally {
      redis.disconnect();
    }
  }


  /** Tasks of the entries delivered to a worker and not yet acknowledged, over every partition (an entry names one task or more). */
  async pendingFor(redis: RedisClient, name: string): Promise<number> {
    let held = 0;
    for (let p = 0; p < this.keys.partitions; p++) {
      const pending = (await redis.xpending(this.keys.due(p), 'workers', '-', '+', 10_000, name)) as [string, ...unknown[]][];
      for (const [entry] of pending) {
        const [found] = (await redis.xrange(this.keys.due(p), entry, entry)) as [string, string[]][];
        held += found ? taskIdsOfEntry(found[1][1] ?? '').length : 1;
      }
    }
    return held;
  }

  /**
   * kill -9 a worker mid-batch: it is frozen (SIGSTOP) at moments until it holds delivered,
   * unacknowledged entries, then killed; restarted at once, under the same or a new name.
   * Returns how many tasks those entries named.
   */
  async killWorker(index: number, restart: 'new-name' | 'same-name' | 'no', attempts = 100): Promise<number> {
    const slot = this.workers[index]!;
    const redis = await this.connect();
    let held = 0;
    try {
      for (let attempt = 0; attempt < attempts && held === 0; attempt++) {
        slot.process.kill('SIGSTOP');
        held = await this.pendingFor(redis, slot.name).catch(() => 0);
        if (held === 0) {
          slot.process.kill('SIGCONT');
          await sleep(10);
        }
      }
    } finally {
      redis.disconnect();
    }
    slot.process.kill('SIGKILL');
    await slot.process.exited;
    this.note(`killed worker ${slot.name} holding ${held} tasks`);
    if (restart !== 'no') this.startWorker(index, restart === 'same-name');
    return held;
  }

  async killRedis(): Promise<void> {
    await this.redis.stop('SIGKILL');
    this.note('redis killed');
  }

  /** The commands connection for the harness's own reads (a Cluster client on a cluster). */
  async connect(): Promise<RedisClient> {
    if (this.nodes) return connectBackend('cluster', this.nodes.seeds);
    const redis = new Redis(this.redisUrl, { lazyConnect: true, retryStrategy: () => 100 });
    redis.on('error', () => {});
    await redis.connect();
    return redis;
  }

  private async graphql(query: string, variables: Record<string, unknown>): Promise<{ data?: Record<string, unknown>; code?: string; ms: number }> {
    const api = this.apis[this.apiCursor++ % this.apis.length]!;
    const started = Date.now();
    try {
      const response = await fetch(`http://127.0.0.1:${api.port}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query, variables }),
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await response.json()) as { data?: Record<string, unknown>; errors?: { extensions?: { code?: string } }[] };
      const ms = Date.now() - started;
      if (response.status >= 500) return { code: `HTTP_${response.status}`, ms };
      if (body.errors?.length) return { code: body.errors[0]!.extensions?.code ?? 'NO_CODE', ms };
      return { data: body.data ?? {}, ms };
    } catch (error) {
      return { code: `TRANSPORT:${(error as Error).name}:${String(((error as Error).cause as Error | undefined)?.message ?? (error as Error).cause)}`, ms: Date.now() - started };
    }
  }

  /** Schedules one task through the API; an accepted task joins the history. */
  async schedule(message: string, due: number, idempotencyKey?: string): Promise<Answer> {
    const at = Date.now();
    const result = await this.graphql('mutation ($m: String!, $t: DateTime!, $k: String) { delayedTask(message: $m, time: $t, idempotencyKey: $k) { id } }', {
      m: message,
      t: new Date(due).toISOString(),
      k: idempotencyKey,
    });
    const id = (result.data?.delayedTask as { id?: string } | undefined)?.id;
    const answer: Answer = id ? { ok: true, id, ms: result.ms, at } : { ok: false, code: result.code ?? 'NO_ID', ms: result.ms, at };
    this.answers.push(answer);
    if (id) this.accepted.push({ id, message, due, acceptedAt: Date.now() });
    return answer;
  }

  private cancelling = new Set<Promise<void>>();

  /** Cancels a task through the API after delayMs; `cancelsSettled` waits for every cancel. */
  cancel(id: string, delayMs = 0): Promise<void> {
    const request = sleep(delayMs).then(() => this.sendCancel(id));
    this.cancelling.add(request);
    void request.finally(() => this.cancelling.delete(request));
    return request;
  }

  async cancelsSettled(): Promise<void> {
    await Promise.all(this.cancelling);
  }

  private async sendCancel(id: string): Promise<void> {
    const result = await this.graphql('mutation ($id: ID!) { cancelTask(id: $id) { status } }', { id });
    this.cancels.set(id, (result.data?.cancelTask as { status?: string } | undefined)?.status ?? result.code ?? 'UNKNOWN');
  }

  /**
   * Drives load: `count` tasks at `perSecond`, each due 1-5 s after it is sent (by default), with
   * `messageOf(i)` as the message. Returns once every request was answered.
   */
  async load(
    count: number,
    perSecond: number,
    messageOf: (i: number) => string,
    onAccepted?: (accepted: Accepted) => void,
    retry: 'no' | 'with-key' | 'without-key' = 'no',
  ): Promise<void> {
    const started = Date.now();
    const inFlight = new Set<Promise<void>>();
    for (let i = 0; i < count; i++) {
      const sendAt = started + (i * 1000) / perSecond;
      const wait = sendAt - Date.now();
      if (wait > 0) await sleep(wait);
      const due = Date.now() + (this.options.dueAfterMs ?? 1000) + Math.floor(Math.random() * (this.options.dueSpanMs ?? 4000));
      const request = this.scheduleWithRetry(messageOf(i), due, retry).then((answer) => {
        if (answer.ok && onAccepted) onAccepted(this.accepted[this.accepted.length - 1]!);
      });
      inFlight.add(request);
      void request.finally(() => inFlight.delete(request));
      // Bounded concurrency, so an outage cannot pile up requests without end.
      if (inFlight.size >= 200) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  }

  /**
   * What a careful client does with UNAVAILABLE: try again shortly, with the same
   * idempotency key, so a request that reached Redis after all is not stored twice.
   */
  private async scheduleWithRetry(message: string, due: number, retry: 'no' | 'with-key' | 'without-key'): Promise<Answer> {
    const key = retry === 'with-key' ? `key-${message}` : undefined;
    const giveUp = Date.now() + 30_000;
    for (;;) {
      const answer = await this.schedule(message, due, key);
      if (answer.ok || retry === 'no' || Date.now() > giveUp) return answer;
      if (answer.code !== 'UNAVAILABLE' && !answer.code?.startsWith('TRANSPORT')) return answer;
      await sleep(300);
    }
  }

  /** Every event in the fired logs, read once Redis is up. */
  async firedRecords(): Promise<FiredRecord[]> {
    const redis = await this.connect();
    try {
      const records: FiredRecord[] = [];
      for (let p = 0; p < this.keys.partitions; p++) {
        for (const { task: event } of (await redis.xrange(this.keys.fired(p), '-', '+')).flatMap((entry) => eventsOfEntry(p, entry))) {
          records.push({ id: event.id, firedAt: event.firedAt!, lateByMs: event.lateByMs!, time: event.time, attempts: event.attempts });
        }
      }
      return records;
    } finally {
      redis.disconnect();
    }
  }

  /** Statuses of tasks, by id. */
  async statuses(ids: string[]): Promise<Map<string, string | null>> {
    const redis = await this.connect();
    try {
      const tasks = await readTasksAt(redis, this.keys, ids);
      return new Map(ids.map((id, i) => [id, tasks[i]?.status ?? null]));
    } finally {
      redis.disconnect();
    }
  }

  /**
   * What Redis holds of a task, for a closer look at one the checker counts as lost: the
   * task as readers see it, its firing record, and its due-stream entries with the consumer
   * that holds each and how often it was delivered.
   */
  async describeTask(id: string): Promise<string> {
    const redis = await this.connect();
    try {
      const [task] = await readTasksAt(redis, this.keys, [id]);
      const p = Number(id.split('-')[0]);
      const record = await redis.hget(this.keys.firing(p), id);
      const entries = ((await redis.xrange(this.keys.due(p), '-', '+')) as [string, string[]][]).filter(([, fields]) => taskIdsOfEntry(fields[1] ?? '').includes(id));
      const pending = await Promise.all(entries.map(([entry]) => redis.xpending(this.keys.due(p), 'workers', entry, entry, 1)));
      return JSON.stringify({ id, task, record, entries, pending });
    } finally {
      redis.disconnect();
    }
  }

  /** Printed lines of every worker that ever ran, with the time each reached the harness. */
  prints(): { line: string; at: number }[] {
    return this.allWorkers.flatMap((w) => w.stamped);
  }

  /** Waits until every expected task has an event in the fired logs, or the time is up. */
  async drain(expected: string[], timeoutMs: number): Promise<boolean> {
    const want = new Set(expected);
    try {
      await waitFor(
        async () => {
          const seen = new Set((await this.firedRecords().catch(() => [])).map((r) => r.id));
          for (const id of want) if (!seen.has(id)) return false;
          return true;
        },
        timeoutMs,
        'every accepted task to fire',
        250,
      );
      // stdout travels through pipes: let the last lines arrive.
      await sleep(300);
      return true;
    } catch {
      return false;
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.apis.map((a) => a.process), ...this.workers.map((w) => w.process)].map((p) => p.stop(15_000).catch(() => p.kill('SIGKILL'))),
    );
    for (const p of this.allWorkers) if (p.child.exitCode === null && p.child.signalCode === null) p.kill('SIGKILL');
    await this.proxy?.close();
    await this.nodes?.stop();
    await this.redis?.stop('SIGKILL').catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}
