/**
 * The two systems behind one interface, so every workload is defined once and runs the
 * same way against both: a producer that schedules tasks (one call, or a bulk call) and a
 * worker whose work is writing the task's message to a stream.
 *
 * BullMQ is used the way its documentation recommends for delayed jobs: `Queue.add` /
 * `addBulk` with `delay`, a `Worker` with a concurrency, finished jobs removed (its cheapest
 * setting; Punctual keeps fired tasks readable for the retention period, a cost it pays).
 */
import { Agent, request as httpRequest } from 'node:http';
import type { Writable } from 'node:stream';
import { Queue, Worker as BullWorker } from 'bullmq';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createRedis, redisTarget } from '../src/redis.js';
import { createService } from '../src/service.js';
import { createKeys } from '../src/scheduler/keys.js';
import { defineScripts, loadScripts } from '../src/scheduler/scripts.js';
import { createTaskStore, type NewTask } from '../src/scheduler/tasks.js';

export type SystemName = 'punctual' | 'bullmq';
/** How a producer reaches a system: Punctual also through its GraphQL API over HTTP. */
export type ProducerKind = SystemName | 'punctual-graphql';

export const SYSTEMS: readonly SystemName[] = ['punctual', 'bullmq'];

/** Key prefix / queue name of the benchmark's data; the runner flushes its own Redis anyway. */
export const BENCH_PREFIX = 'bench';

export interface Producer {
  scheduleOne(task: NewTask): Promise<void>;
  scheduleBulk(tasks: NewTask[]): Promise<void>;
  close(): Promise<void>;
}

export interface RunningWorker {
  stop(): Promise<void>;
}

export interface WorkerOptions {
  /** BullMQ's jobs in parallel per worker process; Punctual fires in batches instead. */
  bullmqConcurrency: number;
}

function redisHostPort(redisUrl: string): { host: string; port: number } {
  const url = new URL(redisUrl);
  return { host: url.hostname, port: Number(url.port) };
}

/** Punctual's settings for a benchmark process: the defaults, with quiet logs. */
/** A target of `cluster:host:port,host:port,...` is a Redis Cluster's seed nodes (bench/bench-redis.ts). */
export const CLUSTER_TARGET = 'cluster:';

function punctualConfig(redisUrl: string, role: 'api' | 'worker') {
  const redis = redisUrl.startsWith(CLUSTER_TARGET) ? { REDIS_CLUSTER_NODES: redisUrl.slice(CLUSTER_TARGET.length) } : { REDIS_URL: redisUrl };
  // PORT 0: each worker's ops endpoint (/metrics, /readyz) on a port of its own.
  return loadConfig({ ...process.env, ...redis, ROLE: role, KEY_PREFIX: BENCH_PREFIX, PRIVATE_REDIS: 'off', LOG_LEVEL: 'error', PORT: '0' });
}

export async function startWorker(system: SystemName, redisUrl: string, out: Writable, options: WorkerOptions): Promise<RunningWorker> {
  if (system === 'punctual') {
    const config = punctualConfig(redisUrl, 'worker');
    const service = createService(config, { log: createLogger(config.logLevel), out });
    await service.start();
    return { stop: () => service.stop() };
  }
  const worker = new BullWorker<{ m: string }>(
    BENCH_PREFIX,
    async (job) => {
      out.write(`${job.data.m}\n`);
    },
    { connection: { ...redisHostPort(redisUrl), maxRetriesPerRequest: null }, concurrency: options.bullmqConcurrency },
  );
  worker.on('error', (error) => process.stderr.write(`bullmq worker: ${error.message}\n`));
  await worker.waitUntilReady();
  return { stop: () => worker.close() };
}

async function punctualProducer(redisUrl: string): Promise<Producer> {
  const config = punctualConfig(redisUrl, 'api');
  const redis = createRedis(redisTarget(config), 'commands', 'bench-producer');
  defineScripts(redis);
  await redis.connect();
  await loadScripts(redis);
  const store = createTaskStore(redis, createKeys(config.keyPrefix, config.partitions, Boolean(config.redisClusterNodes)), config);
  return {
    async scheduleOne(task) {
      await store.schedule(task);
    },
    async scheduleBulk(tasks) {
      await store.scheduleMany(tasks);
    },
    async close() {
      await redis.quit();
    },
  };
}

async function bullmqProducer(redisUrl: string): Promise<Producer> {
  const queue = new Queue<{ m: string }>(BENCH_PREFIX, { connection: redisHostPort(redisUrl) });
  queue.on('error', (error) => process.stderr.write(`bullmq queue: ${error.message}\n`));
  await queue.waitUntilReady();
  // `timestamp` pins the job's clock to the one the due time came from: due = timestamp + delay exactly.
  const jobOptions = (task: NewTask) => {
    const now = Date.now();
    return { delay: Math.max(task.time - now, 0), timestamp: now, removeOnComplete: true, removeOnFail: true };
  };
  return {
    async scheduleOne(task) {
      await queue.add('task', { m: task.message }, jobOptions(task));
    },
    async scheduleBulk(tasks) {
      await queue.addBulk(tasks.map((task) => ({ name: 'task', data: { m: task.message }, opts: jobOptions(task) })));
    },
    async close() {
      await queue.close();
    },
  };
}

/**
 * The GraphQL API over HTTP: one POST per call on keep-alive connections, as a client in
 * another process would. node:http rather than fetch: undici's fetch spends about a
 * millisecond of client CPU per request, which would measure the client, not the API.
 */
function graphqlProducer(endpoint: string): Producer {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const post = (query: string, variables: Record<string, unknown>) =>
    new Promise<void>((resolve, reject) => {
      const body = JSON.stringify({ query, variables });
      const request = httpRequest(endpoint, {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      request.on('error', reject);
      request.on('response', (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('error', reject);
        response.on('end', () => {
          // A GraphQL error comes back with status 200: only the body tells.
          if (response.statusCode !== 200 || text.startsWith('{"errors"') || text.includes('"errors":[')) {
            reject(new Error(`GraphQL call failed (${response.statusCode}): ${text.slice(0, 500)}`));
          } else resolve();
        });
      });
      request.end(body);
    });
  const iso = (time: number) => new Date(time).toISOString();
  return {
    async scheduleOne(task) {
      await post('mutation One($message: String!, $time: DateTime!) { delayedTask(message: $message, time: $time) { id } }', {
        message: task.message,
        time: iso(task.time),
      });
    },
    async scheduleBulk(tasks) {
      await post(`mutation Many($tasks: [${GRAPHQL_TASK_INPUT}!]!) { delayedTasks(tasks: $tasks) { id } }`, {
        tasks: tasks.map((task) => ({ message: task.message, time: iso(task.time) })),
      });
    },
    async close() {
      agent.destroy();
    },
  };
}

/** The input type of `delayedTasks(tasks: [...])` in the committed schema. */
const GRAPHQL_TASK_INPUT = 'DelayedTaskInput';

/** A producer; `target` is a Redis URL, or the GraphQL endpoint for `punctual-graphql`. */
export function connectProducer(kind: ProducerKind, target: string): Promise<Producer> {
  if (kind === 'punctual') return punctualProducer(target);
  if (kind === 'bullmq') return bullmqProducer(target);
  return Promise.resolve(graphqlProducer(target));
}

/**
 * A task's message carries its sequence number and due time, so the worker that does the
 * work can tell lateness, losses and duplicates without asking either system.
 */
export function taskMessage(seq: number, due: number, bytes = 0): string {
  const message = `${seq}:${due}`;
  return bytes > message.length ? `${message}:${'x'.repeat(bytes - message.length - 1)}` : message;
}

export function parseTaskMessage(message: string): { seq: number; due: number } {
  const colon = message.indexOf(':');
  return { seq: Number.parseInt(message, 10), due: Number.parseInt(message.slice(colon + 1), 10) };
}
