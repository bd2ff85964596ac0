/**
 * `npm run bench`: Punctual against BullMQ, side by side on one redis-server of its own,
 * workload by workload, several runs each, flushing in between; prints a table of medians
 * with ranges and the ratio Punctual/BullMQ (or JSON with --json).
 */
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { CPU_PROFILE_DIR_ENV, killChildren } from './children.js';
import { aofLabel, startBenchRedis, type AofFsync, type BenchRedis } from './bench-redis.js';
import { Figures, type RowSummary } from './figures.js';
import { measureLimit, type RedisLimit } from './limit.js';
import { liveSubscriberRuns, type W5Run } from './live-subscribers.js';
import { parseOptions, UsageError, USAGE, type BenchOptions } from './options.js';
import { aofCostTable, limitTable, markdownTable, profileTable, w5Table } from './report.js';
import { burst, memory, startGraphqlServer, steady, throughput, type Context, type Profile } from './workloads.js';
import { clusterWorkloads } from './bench-cluster.js';

export interface BenchResult {
  machine: {
    cpus: string;
    cores: number;
    memoryGb: number;
    node: string;
    redis: string;
    /** The redis-server of limit, w1-w4. */
    redisSettings: string[];
    /** One redis-server per AOF setting, for w3-aof and w2-aof (absent in older results). */
    aofRedisSettings?: Partial<Record<AofFsync, string[]>>;
    /** The Redis Cluster of w1-cluster and w3-cluster (absent in older results). */
    clusterRedisSettings?: string[];
    bullmq: string;
  };
  options: Omit<BenchOptions, 'only'> & { only: string[] };
  startedAt: string;
  seconds: number;
  rows: RowSummary[];
  limits: RedisLimit[] | null;
  profiles: Profile[];
  /** W5, Punctual alone: one entry per run and number of subscribers (absent in older results). */
  w5?: W5Run[];
  /** Parts that could not run, and why. */
  pending: string[];
}

async function bullmqVersion(): Promise<string> {
  const { createRequire } = await import('node:module');
  return (createRequire(import.meta.url)('bullmq/package.json') as { version: string }).version;
}

/**
 * W3 on each context's redis-server, run by run, the servers taking turns within a run so
 * that the machine's drift over time falls on every setting alike.
 */
async function schedulingThroughput(ctxs: Context[], pending: string[]): Promise<void> {
  const { options } = ctxs[0]!;
  const apis: ({ endpoint: string; stop(): Promise<void> } | undefined)[] = [];
  try {
    for (const ctx of ctxs) {
      const api = await startGraphqlServer(ctx).catch((error: unknown) => {
        pending.push(`W3 via GraphQL: the API did not start: ${String(error)}`);
        return undefined;
      });
      if (!api && !pending.some((line) => line.startsWith('W3 via GraphQL'))) pending.push('W3 via GraphQL: src/server.ts does not exist yet');
      apis.push(api);
    }
    for (let run = 1; run <= options.runs; run++) {
      for (const [i, ctx] of ctxs.entries()) {
        ctx.log(`W3 scheduling throughput${aofLabel(ctx.redis.aof)}, run ${run}`);
        for (const system of options.systems) await throughput(ctx, system, ctx.redis.url, run);
        const api = apis[i];
        if (api) await throughput(ctx, 'punctual-graphql', api.endpoint, run);
      }
    }
    for (const ctx of ctxs) {
      // Through GraphQL, Punctual is compared with BullMQ's own client calls.
      ctx.figures.copy('w3.single.tasksPerSec', 'w3.graphqlSingle.tasksPerSec', 'bullmq');
      ctx.figures.copy('w3.bulk.tasksPerSec', 'w3.graphqlBulk.tasksPerSec', 'bullmq');
    }
  } finally {
    await Promise.all(apis.map((api) => api?.stop()));
  }
}

/** W2 on each context's redis-server, taking turns within a run as W3 does. */
async function steadyLateness(ctxs: Context[]): Promise<void> {
  const { options } = ctxs[0]!;
  for (let run = 1; run <= options.runs; run++) {
    for (const ctx of ctxs) {
      ctx.log(`W2 steady ${options.w2Rate}/s for ${options.w2Seconds} s${aofLabel(ctx.redis.aof)}, run ${run}`);
      for (const system of options.systems) await steady(ctx, system, run);
    }
  }
}

/**
 * w3-aof and w2-aof: W3 and W2 again on a fresh redis-server per AOF fsync setting, all of
 * them up at once so the settings can take turns within each run.
 */
async function withAof(ctx: Context, pending: string[]): Promise<Partial<Record<AofFsync, string[]>>> {
  const { options } = ctx;
  const wanted = options.only.has('w3-aof') || options.only.has('w2-aof');
  if (!wanted || options.aofFsync.length === 0) return {};
  const servers: BenchRedis[] = [];
  try {
    for (const aof of options.aofFsync) servers.push(await startBenchRedis(aof, options.redisArgs));
    for (const server of servers) ctx.log(`redis-server on port ${server.port} (${server.settings.join(' ')})`);
    const ctxs = servers.map((redis): Context => ({ ...ctx, redis, figures: ctx.figures.onAof(redis.aof!), bulkRate: {} }));
    if (options.only.has('w3-aof')) await schedulingThroughput(ctxs, pending);
    if (options.only.has('w2-aof')) await steadyLateness(ctxs);
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
  return Object.fromEntries(servers.map((server) => [server.aof, server.settings]));
}

export async function runBenchmark(options: BenchOptions, log: (line: string) => void): Promise<BenchResult> {
  const started = Date.now();
  if (options.cpuProfileDir) process.env[CPU_PROFILE_DIR_ENV] = resolve(options.cpuProfileDir);
  const redis = await startBenchRedis(undefined, options.redisArgs);
  const ctx: Context = { redis, options, figures: new Figures(), log, bulkRate: {}, profiles: [] };
  const pending: string[] = [];
  let limits: RedisLimit[] | undefined;
  let aofRedisSettings: Partial<Record<AofFsync, string[]>> = {};
  let w5: W5Run[] = [];
  let clusterRedisSettings: string[] | undefined;
  log(`redis-server ${redis.version} on port ${redis.port} (${redis.settings.join(' ')}); profile ${options.profile}, ${options.runs} run(s)`);
  try {
    if (options.only.has('limit')) {
      log('limit: redis-benchmark');
      limits = await measureLimit(redis.port, options.limitRequests);
      if (!limits) pending.push('limit: redis-benchmark is not installed (Debian: apt-get install redis-tools)');
      await redis.flush();
    }
    for (let run = 1; run <= options.runs; run++) {
      if (options.only.has('w4')) {
        log(`W4 memory, run ${run}`);
        for (const system of options.systems) await memory(ctx, system, run);
      }
    }
    if (options.only.has('w3')) await schedulingThroughput([ctx], pending);
    if (options.only.has('w1')) {
      for (const workers of options.w1Workers) {
        for (let run = 1; run <= options.runs; run++) {
          log(`W1 burst of ${options.w1Tasks}, ${workers} worker(s), run ${run}`);
          for (const system of options.systems) await burst(ctx, system, workers, run);
        }
      }
    }
    if (options.only.has('w2')) await steadyLateness([ctx]);
    aofRedisSettings = await withAof(ctx, pending);
    if (options.only.has('w1-cluster') || options.only.has('w3-cluster')) clusterRedisSettings = await clusterWorkloads(ctx);
    if (options.only.has('w5')) w5 = await liveSubscriberRuns(ctx, pending);
  } finally {
    killChildren();
    await redis.stop();
  }
  const cpuList = cpus();
  return {
    machine: {
      cpus: cpuList[0]?.model ?? 'unknown',
      cores: cpuList.length,
      memoryGb: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      redis: redis.version,
      redisSettings: redis.settings,
      aofRedisSettings,
      clusterRedisSettings,
      bullmq: await bullmqVersion(),
    },
    options: { ...options, only: [...options.only] },
    startedAt: new Date(started).toISOString(),
    seconds: Math.round((Date.now() - started) / 1000),
    rows: ctx.figures.summary(),
    limits: limits ?? null,
    profiles: ctx.profiles,
    w5,
    pending,
  };
}

export function printable(result: BenchResult): string {
  const m = result.machine;
  const o = result.options;
  const w5 = result.w5 && result.w5.length > 0
    ? [`W5 live subscribers on one API process (Punctual only): ${o.w5Rate} tasks/s for ${o.w5Seconds} s, each due 1 s after it is sent`, '', w5Table(result.w5), '']
    : [];
  return [
    `Punctual vs BullMQ ${m.bullmq}: ${m.cores} x ${m.cpus}, ${m.memoryGb} GB, Node ${m.node}, Redis ${m.redis} (${m.redisSettings.join(' ')})`,
    ...Object.entries(m.aofRedisSettings ?? {}).map(([aof, settings]) => `rows "${aofLabel(aof as AofFsync).slice(2)}": a redis-server of their own (${settings.join(' ')})`),
    ...(m.clusterRedisSettings ? [`rows "cluster of 3 masters": Punctual alone on a Redis Cluster (${m.clusterRedisSettings.join(', ')}); BullMQ keeps a queue in one slot, so one master`] : []),
    `profile ${result.options.profile}, ${result.options.runs} run(s), ${result.seconds} s, ${result.startedAt}`,
    '',
    result.rows.length > 0 ? markdownTable(result.rows) : '',
    '',
    aofCostTable(result.rows),
    '',
    result.limits ? limitTable(result.limits) : '',
    '',
    result.profiles.length > 0 ? profileTable(result.profiles) : '',
    '',
    ...w5,
    ...result.pending.map((line) => `pending: ${line}`),
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
}

/** Children die with the runner; Redis too, through its own stop on the way out. */
function exitOnSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killChildren();
      process.exit(130);
    });
  }
}

async function main(): Promise<void> {
  if (process.argv.includes('--help')) {
    process.stdout.write(USAGE);
    return;
  }
  const render = process.argv.indexOf('--render');
  if (render >= 0) {
    // Prints the tables of a result saved with --json, e.g. to paste into BENCHMARKS.md.
    const { readFileSync } = await import('node:fs');
    process.stdout.write(`${printable(JSON.parse(readFileSync(process.argv[render + 1] ?? '', 'utf8')) as BenchResult)}\n`);
    return;
  }
  let options: BenchOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n\n${USAGE}`);
      process.exit(2);
    }
    throw error;
  }
  exitOnSignals();
  const result = await runBenchmark(options, (line) => process.stderr.write(`${line}\n`));
  process.stdout.write(options.json ? `${JSON.stringify(result, null, 2)}\n` : `${printable(result)}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    killChildren();
    process.exit(1);
  });
}
