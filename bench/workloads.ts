/**
 * The workloads of issue 4, each defined once and run against both systems on the same
 * Redis, flushed in between. Producers and workers are separate processes.
 */
import { forkChild, spawnNode, type Child, type Message } from './children.js';
import { aofLabel, type BenchRedis, type CommandStat } from './bench-redis.js';
import type { Figures } from './figures.js';
import type { BenchOptions } from './options.js';
import type { ProducerJob, ProducerResult } from './producer-process.js';
import { percentile } from './stats.js';
import type { ProducerKind, SystemName } from './systems.js';
import { freePort, isListening } from '../src/private-redis.js';

/** Tasks of W3 and W4 are due far enough ahead that nothing fires while they are measured. */
const FAR_AHEAD_MS = 3_600_000;
const START_TIMEOUT_MS = 30_000;

/** One redis-server and what its workloads record; each AOF setting has its own. */
export interface Context {
  redis: BenchRedis;
  options: BenchOptions;
  /** Rows of their own when the redis-server runs with the AOF on (`Figures.onAof`). */
  figures: Figures;
  log(line: string): void;
  /** Bulk scheduling rate seen per system, to place W1's due instant just after scheduling ends. */
  bulkRate: Partial<Record<SystemName, number>>;
  /** Where the time went, per workload and system, for BENCHMARKS.md. */
  profiles: Profile[];
}

export interface Profile {
  workload: string;
  system: SystemName;
  tasks: number;
  redisCpuSeconds: number;
  workerCpuSeconds: number;
  /** Top commands by Redis time (script-internal commands included, EVALSHA also counts the script). */
  commands: CommandStat[];
}

interface WorkerResult extends Message {
  seqs: Int32Array;
  lateness: Float64Array;
  lastWorkAt: number;
  cpuSeconds: number;
}

/** Everything the workers of one run did. */
interface WorkDone {
  unique: number;
  duplicates: number;
  lateness: Float64Array;
  lastWorkAt: number;
  workerCpuSeconds: number;
}

export interface RunningWorkers {
  readonly children: Child[];
  readonly worked: () => number;
  finish(expected: number): Promise<WorkDone>;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startWorkers(ctx: Context, system: SystemName, count: number): Promise<RunningWorkers> {
  const progress = new Array<number>(count).fill(0);
  const children = Array.from({ length: count }, (_, i) => {
    const child = forkChild(`${system} worker ${i + 1}`, './worker-process.ts', [system, ctx.redis.url, JSON.stringify({ bullmqConcurrency: ctx.options.bullmqConcurrency })]);
    child.on('progress', (message) => (progress[i] = Number(message.count)));
    return child;
  });
  try {
    await Promise.all(children.map((child) => child.next('ready', START_TIMEOUT_MS)));
  } catch (error) {
    for (const child of children) child.kill();
    throw error;
  }
  return {
    children,
    worked: () => progress.reduce((a, b) => a + b, 0),
    async finish(expected) {
      for (const child of children) child.send({ type: 'stop' });
      const results = await Promise.all(children.map((child) => child.next<WorkerResult>('result', 30_000)));
      await Promise.all(children.map((child) => child.exited(5000)));
      const seen = new Uint8Array(expected);
      let total = 0;
      let unique = 0;
      for (const result of results) {
        for (const seq of result.seqs) {
          // A negative sequence number is a probe (W5's), not one of the run's tasks.
          if (seq < 0) continue;
          total += 1;
          if (seq >= 0 && seq < expected && seen[seq] === 0) {
            seen[seq] = 1;
            unique += 1;
          }
        }
      }
      const lateness = new Float64Array(total);
      let offset = 0;
      for (const result of results) {
        result.seqs.forEach((seq, i) => {
          if (seq >= 0) lateness[offset++] = result.lateness[i]!;
        });
      }
      return {
        unique,
        duplicates: total - unique,
        lateness: lateness.sort(),
        lastWorkAt: Math.max(...results.map((r) => r.lastWorkAt)),
        workerCpuSeconds: results.reduce((sum, r) => sum + r.cpuSeconds, 0),
      };
    },
  };
}

/**
 * Waits until `done()` (tasks worked, events received) reaches `expected`, or nothing more
 * was done for `stallMs` after `notBefore` (what is missing then counts as lost), or
 * `deadline` passed.
 */
export async function waitForWork(done: () => number, expected: number, notBefore: number, stallMs: number, deadline: number): Promise<void> {
  let last = -1;
  let lastChange = Date.now();
  while (Date.now() < deadline) {
    const worked = done();
    if (worked >= expected) break;
    if (worked !== last) {
      last = worked;
      lastChange = Date.now();
    } else if (Date.now() > notBefore && Date.now() - Math.max(lastChange, notBefore) > stallMs) break;
    await sleep(20);
  }
  // Duplicates would arrive just after the last task: give them a moment to show up.
  await sleep(250);
}

export async function startProducer(kind: ProducerKind, target: string): Promise<Child> {
  const child = forkChild(`${kind} producer`, './producer-process.ts', [kind, target]);
  await child.next('ready', START_TIMEOUT_MS);
  return child;
}

export async function runJob(producer: Child, job: ProducerJob, timeoutMs: number): Promise<ProducerResult> {
  producer.send({ type: 'run', job });
  const result = await producer.next<ProducerResult>('done', timeoutMs);
  if (result.error) throw new Error(`${producer.name}: ${result.error}`);
  return result;
}

export async function quit(producer: Child): Promise<void> {
  producer.send({ type: 'quit' });
  await producer.exited(5000);
}

function recordLateness(ctx: Context, prefix: string, label: string, system: SystemName, lateness: Float64Array): void {
  for (const p of [50, 90, 99]) ctx.figures.record(`${prefix}.lateness.p${p}`, `${label} lateness p${p}`, 'ms', 'lower', system, percentile(lateness, p));
  ctx.figures.record(`${prefix}.lateness.max`, `${label} lateness max`, 'ms', 'lower', system, percentile(lateness, 100));
}

function recordLosses(ctx: Context, prefix: string, label: string, system: SystemName, expected: number, done: WorkDone): void {
  ctx.figures.record(`${prefix}.lost`, `${label} lost`, 'tasks', 'lower', system, expected - done.unique);
  ctx.figures.record(`${prefix}.duplicates`, `${label} duplicates`, 'tasks', 'lower', system, done.duplicates);
}

/** W1: `count` tasks scheduled in bulk, all due at one instant just after scheduling ends. */
export async function burst(ctx: Context, system: SystemName, workerCount: number, run: number): Promise<void> {
  const { redis, options } = ctx;
  const count = options.w1Tasks;
  await redis.flush();
  const workers = await startWorkers(ctx, system, workerCount);
  let producer: Child | undefined;
  try {
    producer = await startProducer(system, redis.url);
    const knownRate = ctx.bulkRate[system];
    const schedulingMs = knownRate ? (count / knownRate) * 1000 * 1.3 : count * 0.1;
    const due = Date.now() + Math.round(options.w1LeadMs + schedulingMs);
    const scheduled = await runJob(producer, { kind: 'bulk', count, chunk: options.bulkChunk, due }, 600_000);
    ctx.bulkRate[system] = (count / (scheduled.endedAt - scheduled.startedAt)) * 1000;
    if (scheduled.endedAt > due) ctx.log(`  warning: ${system} scheduling ended ${scheduled.endedAt - due} ms after the due instant`);
    const cpuBefore = await redis.cpuSeconds();
    await redis.resetCommandStats();
    await waitForWork(workers.worked, count, due, options.stallMs, due + options.maxWaitMs);
    const redisCpuSeconds = (await redis.cpuSeconds()) - cpuBefore;
    const commands = await redis.commandStats();
    const done = await workers.finish(count);
    const prefix = `w1.workers${workerCount}`;
    const label = `W1 burst, ${workerCount} worker${workerCount > 1 ? 's' : ''}:`;
    const seconds = (done.lastWorkAt - due) / 1000;
    ctx.figures.record(`${prefix}.seconds`, `${label} due instant to last task`, 's', 'lower', system, seconds);
    ctx.figures.record(`${prefix}.tasksPerSec`, `${label} tasks/s`, 'tasks/s', 'higher', system, done.unique / seconds);
    recordLateness(ctx, prefix, label, system, done.lateness);
    recordLosses(ctx, prefix, label, system, count, done);
    if (run === 1) ctx.profiles.push({ workload: `W1 ${workerCount} worker(s)`, system, tasks: count, redisCpuSeconds, workerCpuSeconds: done.workerCpuSeconds, commands });
    ctx.log(`  W1 ${system} ${workerCount}w run ${run}: ${(done.unique / seconds).toFixed(0)} tasks/s, p99 ${percentile(done.lateness, 99)} ms, lost ${count - done.unique}, redis cpu ${redisCpuSeconds.toFixed(2)} s, worker cpu ${done.workerCpuSeconds.toFixed(2)} s`);
  } finally {
    for (const child of workers.children) child.kill();
    if (producer) await quit(producer);
  }
}

/** W2: single calls at a steady rate, each due 1-5 s later; one worker. */
export async function steady(ctx: Context, system: SystemName, run: number): Promise<void> {
  const { redis, options } = ctx;
  await redis.flush();
  const workers = await startWorkers(ctx, system, 1);
  let producer: Child | undefined;
  try {
    producer = await startProducer(system, redis.url);
    const cpuBefore = await redis.cpuSeconds();
    const job: ProducerJob = { kind: 'steady', rate: options.w2Rate, seconds: options.w2Seconds, minDelayMs: 1000, maxDelayMs: 5000 };
    const scheduled = await runJob(producer, job, (options.w2Seconds + 60) * 1000);
    await waitForWork(workers.worked, scheduled.count, scheduled.endedAt + job.maxDelayMs, options.stallMs, scheduled.endedAt + job.maxDelayMs + options.maxWaitMs);
    const redisCpuSeconds = (await redis.cpuSeconds()) - cpuBefore;
    const done = await workers.finish(scheduled.count);
    recordLateness(ctx, 'w2', 'W2 steady:', system, done.lateness);
    ctx.figures.record('w2.lost', 'W2 steady: lost', 'tasks', 'lower', system, scheduled.count - done.unique);
    if (run === 1) ctx.profiles.push({ workload: `W2${aofLabel(redis.aof)}`, system, tasks: scheduled.count, redisCpuSeconds, workerCpuSeconds: done.workerCpuSeconds, commands: [] });
    ctx.log(`  W2 ${system}${aofLabel(redis.aof)} run ${run}: p50 ${percentile(done.lateness, 50)} ms, p99 ${percentile(done.lateness, 99)} ms, max ${percentile(done.lateness, 100)} ms, lost ${scheduled.count - done.unique}`);
  } finally {
    for (const child of workers.children) child.kill();
    if (producer) await quit(producer);
  }
}

/** W3: scheduling throughput, single calls with some in flight, then bulk calls. */
export async function throughput(ctx: Context, kind: ProducerKind, target: string, run: number): Promise<void> {
  const { redis, options } = ctx;
  const system: SystemName = kind === 'bullmq' ? 'bullmq' : 'punctual';
  const variant = kind === 'punctual-graphql' ? 'graphql' : '';
  const how = kind === 'punctual-graphql' ? ' (Punctual via GraphQL/HTTP)' : '';
  const producer = await startProducer(kind, target);
  try {
    const count = options.w3Tasks;
    await redis.flush();
    const singleCount = variant ? options.w3GraphqlSingleTasks : count;
    const single = await runJob(producer, { kind: 'single', count: singleCount, inFlight: options.w3InFlight, dueInMs: FAR_AHEAD_MS }, 600_000);
    const singleRate = (singleCount / (single.endedAt - single.startedAt)) * 1000;
    const singleId = variant ? `w3.${variant}Single.tasksPerSec` : 'w3.single.tasksPerSec';
    ctx.figures.record(singleId, `W3 single calls, ${options.w3InFlight} in flight${how}`, 'tasks/s', 'higher', system, singleRate);
    await redis.flush();
    const bulk = await runJob(producer, { kind: 'bulk', count, chunk: options.bulkChunk, dueInMs: FAR_AHEAD_MS }, 600_000);
    const bulkRate = (count / (bulk.endedAt - bulk.startedAt)) * 1000;
    const bulkId = variant ? `w3.${variant}Bulk.tasksPerSec` : 'w3.bulk.tasksPerSec';
    ctx.figures.record(bulkId, `W3 bulk, chunks of ${options.bulkChunk}${how}`, 'tasks/s', 'higher', system, bulkRate);
    if (!variant) ctx.bulkRate[system] = bulkRate;
    ctx.log(`  W3 ${kind}${aofLabel(redis.aof)} run ${run}: single ${singleRate.toFixed(0)}/s, bulk ${bulkRate.toFixed(0)}/s`);
  } finally {
    await quit(producer);
  }
}

export interface GraphqlServer {
  /** http://127.0.0.1:PORT/graphql; the WebSocket endpoint is the same with ws:. */
  endpoint: string;
  /** The API process's id, to read its memory and CPU from /proc. */
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts Punctual's API role as its own process; undefined while the GraphQL server is not
 * built. `env` adds to its environment, `preload` loads bench modules into it (see spawnNode).
 */
export async function startGraphqlServer(ctx: Context, extra: { env?: Record<string, string>; preload?: string[] } = {}): Promise<GraphqlServer | undefined> {
  const serverModule = new URL('../src/server.ts', import.meta.url);
  const { existsSync } = await import('node:fs');
  if (!existsSync(serverModule)) return undefined;
  const port = await freePort();
  const main = new URL('../src/main.ts', import.meta.url).pathname;
  const server = spawnNode(main, {
    ROLE: 'api',
    PORT: String(port),
    REDIS_URL: ctx.redis.url,
    PRIVATE_REDIS: 'off',
    KEY_PREFIX: 'bench',
    LOG_LEVEL: 'error',
    // Every client of the benchmark comes from 127.0.0.1: the per-address and per-process
    // caps (sized for many clients) would refuse its load, which is what it measures.
    MAX_CONNECTIONS: '20000',
    MAX_CONNECTIONS_PER_CLIENT: '20000',
    MAX_WEBSOCKETS: '20000',
    MAX_WEBSOCKETS_PER_CLIENT: '20000',
    MAX_SUBSCRIPTIONS: '20000',
    ...extra.env,
  }, extra.preload);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await isListening('127.0.0.1', port, 200))) {
    if (server.process.exitCode !== null || Date.now() > deadline) {
      await server.stop();
      throw new Error(`the Punctual API did not start on port ${port}\n${server.stderr()}`);
    }
    await sleep(100);
  }
  return { endpoint: `http://127.0.0.1:${port}/graphql`, pid: server.process.pid!, stop: () => server.stop() };
}

/** W4: Redis memory per scheduled task, 100-byte messages, nothing firing. */
export async function memory(ctx: Context, system: SystemName, run: number): Promise<void> {
  const { redis, options } = ctx;
  await redis.flush();
  const producer = await startProducer(system, redis.url);
  try {
    // Measured with the producer connected, so only the tasks make the difference.
    const before = await redis.usedMemory();
    const count = options.w4Tasks;
    await runJob(producer, { kind: 'bulk', count, chunk: options.bulkChunk, dueInMs: FAR_AHEAD_MS, messageBytes: 100 }, 600_000);
    const bytesPerTask = ((await redis.usedMemory()) - before) / count;
    ctx.figures.record('w4.bytesPerTask', 'W4 Redis memory per scheduled task (100-byte message)', 'bytes', 'lower', system, bytesPerTask);
    ctx.log(`  W4 ${system} run ${run}: ${bytesPerTask.toFixed(0)} bytes/task`);
  } finally {
    await quit(producer);
  }
}
