/**
 * Test helpers: unique key prefixes on the shared Redis, services in this process with their
 * printed lines captured, real worker processes, private redis-servers, and waiting for
 * conditions instead of sleeping.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, Redis } from 'ioredis';
import { loadConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createService, type Service } from '../src/service.js';
import { freePort, startPrivateRedis, type PrivateRedis } from '../src/private-redis.js';
import { type FiredEvent, parseFiredMessage, type Task } from '../src/scheduler/task.js';
import { eventsOfEntry } from '../src/scheduler/fired-log.js';
import { type RedisClient, isCluster } from '../src/redis.js';
import { channelsOf, createKeys, type Keys } from '../src/scheduler/keys.js';
import { defineScripts } from '../src/scheduler/scripts.js';
import { readTasks } from '../src/scheduler/calls/store.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The shared Redis of the tests: 127.0.0.1:6379, or the one test/global-setup.ts started when none answered there. */
export const SHARED_REDIS_URL = process.env.PUNCTUAL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const SHARED_REDIS_PORT = Number(new URL(SHARED_REDIS_URL).port || 6379);

/**
 * What the core suites run against: the shared single Redis, and the 3-master cluster with a
 * replica each that test/global-setup.ts started (PUNCTUAL_TEST_CLUSTER_NODES).
 */
export const BACKENDS = ['redis', 'cluster'] as const;
export type Backend = (typeof BACKENDS)[number];
export const SHARED_CLUSTER_NODES = process.env.PUNCTUAL_TEST_CLUSTER_NODES ?? '';

/** The settings that point a service at a backend. */
export function backendEnv(backend: Backend): Record<string, string> {
  if (backend === 'redis') return { REDIS_URL: SHARED_REDIS_URL };
  if (!SHARED_CLUSTER_NODES) throw new Error('no test cluster: PUNCTUAL_TEST_CLUSTER_NODES is unset (test/global-setup.ts sets it)');
  return { REDIS_CLUSTER_NODES: SHARED_CLUSTER_NODES };
}

/** The seed nodes of a REDIS_CLUSTER_NODES value. */
export const seedsOf = (nodes: string) => nodes.split(',').map((node) => ({ host: node.split(':')[0]!, port: Number(node.split(':')[1]) }));

let counter = 0;
export function uniquePrefix(name: string): string {
  return `t-${name}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until condition returns a truthy value; fails with the description after timeoutMs. */
export async function waitFor<T>(condition: () => T | Promise<T>, timeoutMs: number, description: string, intervalMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`);
    await sleep(intervalMs);
  }
}

export { freePort };

/** Settings for tests: a unique prefix, fast recovery, quiet logs. */
export function testEnv(prefix: string, overrides: Record<string, string> = {}, backend: Backend = 'redis'): Record<string, string> {
  return {
    ...backendEnv(backend),
    KEY_PREFIX: prefix,
    LOG_LEVEL: 'error',
    RECLAIM_IDLE_MS: '2000',
    SWEEP_MS: '500',
    READ_BLOCK_MS: '500',
    PRIVATE_REDIS: 'off',
    PORT: '0',
    ...overrides,
  };
}

/** A Writable that records every printed line with the local time it arrived. */
export class LineCollector extends Writable {
  readonly lines: { line: string; at: number }[] = [];
  private partial = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    const at = Date.now();
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop()!;
    for (const line of parts) this.lines.push({ line, at });
    done();
  }
  count(line: string): number {
    return this.lines.filter((entry) => entry.line === line).length;
  }
}

export interface TestService {
  service: Service;
  out: LineCollector;
  config: Config;
  stop(): Promise<void>;
}

/** A service in this process, its prints captured (by `out`, when the test brings its own). */
export async function startService(env: Record<string, string>, out = new LineCollector()): Promise<TestService> {
  const config = loadConfig(env);
  const service = createService(config, { log: createLogger(config.logLevel), out });
  await service.start();
  let stopped = false;
  return {
    service,
    out,
    config,
    async stop() {
      if (stopped) return;
      stopped = true;
      await service.stop();
    },
  };
}

/**
 * Registers hooks that stop every service a test file started and delete its keys;
 * returns the function that starts one with a fresh prefix.
 */
export function useServices(beforeAll: (fn: () => Promise<void>) => void, afterAll: (fn: () => Promise<void>) => void, backend: Backend = 'redis') {
  const prefixes: string[] = [];
  const services: TestService[] = [];
  const shared: { redis?: RedisClient } = {};
  beforeAll(async () => {
    shared.redis = await connectBackend(backend);
  });
  afterAll(async () => {
    for (const service of services) await service.stop();
    for (const prefix of prefixes) await deletePrefix(shared.redis!, prefix);
    await shared.redis!.quit();
  });
  return {
    backend,
    /** The shared Redis (or cluster), for assertions (set once the file's tests start). */
    get redis(): RedisClient {
      return shared.redis!;
    },
    async serviceFor(name: string, overrides: Record<string, string> = {}, out?: LineCollector): Promise<TestService> {
      const prefix = uniquePrefix(name);
      prefixes.push(prefix);
      const service = await startService(testEnv(prefix, overrides, backend), out);
      services.push(service);
      return service;
    },
  };
}

/** A real Punctual process (`src/main.ts`), its stdout lines captured. */
export class ServiceProcess {
  readonly lines: string[] = [];
  /** The same lines with the time each reached this process (never earlier than its print). */
  readonly stamped: { line: string; at: number }[] = [];
  readonly stderr: string[] = [];
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private partial = '';

  /** `preload`: modules loaded with --import before the program (the chaos suite's faults). */
  constructor(env: Record<string, string>, preload: string[] = []) {
    const imports = ['tsx', ...preload].flatMap((module) => ['--import', module]);
    this.child = spawn(process.execPath, [...imports, join(ROOT, 'src/main.ts')], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (chunk: Buffer) => {
      const at = Date.now();
      const parts = (this.partial + chunk.toString('utf8')).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
      for (const line of parts) this.stamped.push({ line, at });
    });
    this.child.stderr!.on('data', (chunk: Buffer) => this.stderr.push(chunk.toString('utf8')));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resolves once the process logged that it started. */
  async started(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      () => {
        if (this.child.exitCode !== null) throw new Error(`process exited with ${this.child.exitCode}: ${this.stderr.join('')}`);
        return this.stderr.join('').includes('punctual started');
      },
      timeoutMs,
      'the process to start',
    ).catch((error: Error) => {
      throw new Error(`${error.message}; its stderr: ${this.stderr.join('').slice(-2000)}`);
    });
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** SIGTERM (or the given signal) and wait for a clean exit. */
  async stop(timeoutMs = 20_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const code = await Promise.race([this.exited, sleep(timeoutMs).then(() => 'timeout' as const)]);
    if (code === 'timeout') {
      this.child.kill('SIGKILL');
      throw new Error(`the process did not stop within its time on ${signal}`);
    }
    return code;
  }

  /** Its stderr as log records: every line must be a JSON object with a level and a msg. */
  logs(): LogRecord[] {
    return parseLogLines(this.stderr.join(''));
  }
}

export interface LogRecord {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** Parses JSON log lines, failing on any line that is not an object with a numeric level and a string msg. */
export function parseLogLines(text: string): LogRecord[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        throw new Error(`not a JSON log line: ${line}`);
      }
      const { level, msg } = (record ?? {}) as Partial<LogRecord>;
      if (typeof record !== 'object' || Array.isArray(record) || typeof level !== 'number' || typeof msg !== 'string') {
        throw new Error(`not a log record with a level and a msg: ${line}`);
      }
      return record as LogRecord;
    });
}

/** The pino level numbers. */
export const LOG_LEVEL = { info: 30, warn: 40, error: 50, fatal: 60 } as const;

/** A redis-server of the test's own (AOF on, fsync always), in a temp dir. */
export async function startRedisServer(args: string[] = []): Promise<PrivateRedis & { cleanup(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'punctual-redis-'));
  const port = await freePort();
  const server = await startPrivateRedis({ port, dir, appendfsync: 'always', args });
  return {
    ...server,
    async cleanup() {
      await server.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Counts the taskFired events per task id, from a subscription confirmed before it returns. On
 * a cluster (`cluster` the keys of the deployment) it listens on every partition's sharded channel.
 */
export async function countFiredEvents(redisUrl: string, prefix: string, cluster?: { nodes: string; keys: Keys }) {
  const subscriber = cluster
    ? new Cluster(seedsOf(cluster.nodes), { shardedSubscribers: true, lazyConnect: true, clusterRetryStrategy: () => 100 })
    : new Redis(redisUrl, { lazyConnect: true, retryStrategy: () => 100 });
  subscriber.on('error', () => {});
  await subscriber.connect();
  const counts = new Map<string, number>();
  subscriber.on(cluster ? 'smessage' : 'message', (_channel: string, message: string) => {
    for (const { task } of parseFiredMessage(message)) counts.set(task.id, (counts.get(task.id) ?? 0) + 1);
  });
  if (cluster) for (const channel of channelsOf(cluster.keys, cluster.keys.firedChannel)) await subscriber.ssubscribe(channel);
  else await subscriber.subscribe(`${prefix}:taskFired`);
  return {
    counts,
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    close: () => subscriber.quit().catch(() => subscriber.disconnect()),
  };
}

/** Every event in a deployment's fired logs, partition by partition, each in its log's order. */
export async function firedLogEvents(redis: RedisClient, keys: Keys): Promise<FiredEvent[]> {
  const events: FiredEvent[] = [];
  for (let p = 0; p < keys.partitions; p++) {
    for (const entry of await redis.xrange(keys.fired(p), '-', '+')) events.push(...eventsOfEntry(p, entry));
  }
  return events;
}

/** Task id -> its event's seq, for every event in a deployment's fired logs. */
export async function firedSeqs(redis: RedisClient, keys: Keys): Promise<Map<string, string>> {
  return new Map((await firedLogEvents(redis, keys)).map(({ seq, task }) => [task.id, seq]));
}

/** Counts the events per task id in the fired logs (which, unlike the channel, survive a restart). */
export async function firedLogCounts(redis: RedisClient, prefix: string, partitions = 4, keys: Keys = createKeys(prefix, partitions)): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const { task } of await firedLogEvents(redis, keys)) counts.set(task.id, (counts.get(task.id) ?? 0) + 1);
  return counts;
}

/** Deletes every key of a prefix on the shared Redis (on every master of a cluster). */
export async function deletePrefix(redis: RedisClient, prefix: string): Promise<void> {
  for (const node of isCluster(redis) ? redis.nodes('master') : [redis]) {
    for (const pattern of [`{${prefix}:*`, `${prefix}:*`]) {
      let cursor = '0';
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        // One key at a time on a cluster: keys of different slots cannot share a command.
        if (found.length > 0) await Promise.all(isCluster(redis) ? found.map((key) => node.unlink(key)) : [node.unlink(...found)]);
      } while (cursor !== '0');
    }
  }
}

/** A plain connection for assertions, separate from the service's. */
export async function connect(url = SHARED_REDIS_URL): Promise<Redis> {
  const redis = new Redis(url, { lazyConnect: true });
  await redis.connect();
  return redis;
}

/** A connection for assertions to a backend: the shared Redis, or a Cluster client of the test cluster. */
export async function connectBackend(backend: Backend, nodes = SHARED_CLUSTER_NODES): Promise<RedisClient> {
  if (backend === 'redis') return connect();
  const cluster = new Cluster(seedsOf(nodes), { lazyConnect: true, scaleReads: 'master' });
  cluster.on('error', () => {});
  await cluster.connect();
  return cluster;
}

export function tempDir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'punctual-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Redis TIME in ms on a given connection. */
export async function redisNow(redis: RedisClient): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/** Tasks as readers see them (lua/read.lua), by id, under a key prefix; null for one that is gone. */
export async function readTasksAt(redis: RedisClient, where: string | Keys, ids: string[]): Promise<(Task | null)[]> {
  defineScripts(redis);
  const partitionOfId = (id: string) => Number(id.split('-')[0]);
  // A prefix names one Redis's keys; a cluster's tags depend on the partition count, so it passes its Keys.
  const keys = typeof where === 'string' ? createKeys(where, Math.max(0, ...ids.map(partitionOfId)) + 1) : where;
  const byPartition = new Map<number, string[]>();
  for (const id of ids) byPartition.set(partitionOfId(id), [...(byPartition.get(partitionOfId(id)) ?? []), id]);
  const found = new Map<string, Task | null>();
  for (const [p, list] of byPartition) {
    const tasks = await readTasks(redis, keys, p, list);
    for (const [i, task] of tasks.entries()) found.set(list[i]!, task);
  }
  return ids.map((id) => found.get(id) ?? null);
}

/** A task's status as readers see it, or null when it is gone. */
export async function statusAt(redis: RedisClient, where: string | Keys, id: string): Promise<string | null> {
  return (await readTasksAt(redis, where, [id]))[0]?.status ?? null;
}
