/**
 * The benchmark's options: a profile (full, quick for development, guard for CI) and flags
 * that override a size. `npm run bench -- --help` lists them.
 */

import type { AofFsync } from './bench-redis.js';
import { SYSTEMS, type SystemName } from './systems.js';

export interface BenchOptions {
  profile: 'full' | 'quick' | 'guard';
  /** Runs of each workload per system; the table shows the median and the range. */
  runs: number;
  /** Which workloads: limit, w1, w2, w3, w4, w3-aof, w2-aof, w5, w3-cluster, w1-cluster. */
  only: Set<string>;
  /** Which systems (both by default; one alone is for profiling, it gives no ratios). */
  systems: SystemName[];
  json: boolean;
  /** Extra redis-server arguments for both systems (`--redis-args "--hash-max-listpack-value 128"`). */
  redisArgs: string[];
  /** Where child processes write V8 CPU profiles (`--cpu-prof DIR`); none when unset. */
  cpuProfileDir: string | undefined;
  w1Tasks: number;
  w1Workers: number[];
  /** Pause between the expected end of scheduling and W1's due instant. */
  w1LeadMs: number;
  w2Rate: number;
  w2Seconds: number;
  w3Tasks: number;
  w3InFlight: number;
  /** Single calls through GraphQL: fewer, since each costs the API far more than a core call. */
  w3GraphqlSingleTasks: number;
  /** Tasks per bulk call, for both systems (Punctual's MAX_BULK default). */
  bulkChunk: number;
  w4Tasks: number;
  /** Requests per redis-benchmark test. */
  limitRequests: number;
  /** The AOF fsync settings w3-aof and w2-aof are measured under, each on a fresh redis-server. */
  aofFsync: AofFsync[];
  /** W5: the numbers of graphql-ws subscribers on one API process, a run each (Punctual only). */
  w5Subscribers: number[];
  /** W5: tasks scheduled per second, each due 1 s after it is sent. */
  w5Rate: number;
  /** W5: how long tasks are scheduled for. */
  w5Seconds: number;
  /** BullMQ jobs in parallel per worker process. */
  bullmqConcurrency: number;
  /** A run ends when no task was done for this long after the due time (the rest is lost). */
  stallMs: number;
  /** Longest a run waits for its tasks after the due time. */
  maxWaitMs: number;
}

const WORKLOADS: readonly string[] = ['limit', 'w4', 'w3', 'w1', 'w2', 'w3-aof', 'w2-aof', 'w5', 'w3-cluster', 'w1-cluster'];
const AOF_FSYNC: readonly AofFsync[] = ['always', 'everysec'];

const PROFILES: Record<BenchOptions['profile'], Omit<BenchOptions, 'profile' | 'only' | 'systems' | 'json' | 'cpuProfileDir' | 'redisArgs'>> = {
  full: {
    runs: 3,
    w1Tasks: 100_000,
    w1Workers: [1, 2],
    w1LeadMs: 2000,
    w2Rate: 1000,
    w2Seconds: 30,
    w3Tasks: 100_000,
    w3InFlight: 64,
    w3GraphqlSingleTasks: 20_000,
    bulkChunk: 1000,
    w4Tasks: 200_000,
    limitRequests: 300_000,
    aofFsync: ['always', 'everysec'],
    w5Subscribers: [200, 1000, 2000, 5000],
    w5Rate: 20,
    w5Seconds: 10,
    bullmqConcurrency: 100,
    stallMs: 10_000,
    maxWaitMs: 120_000,
  },
  quick: {
    runs: 1,
    w1Tasks: 20_000,
    w1Workers: [1, 2],
    w1LeadMs: 1500,
    w2Rate: 500,
    w2Seconds: 8,
    w3Tasks: 20_000,
    w3InFlight: 64,
    w3GraphqlSingleTasks: 5000,
    bulkChunk: 1000,
    w4Tasks: 20_000,
    limitRequests: 200_000,
    aofFsync: ['always', 'everysec'],
    w5Subscribers: [100],
    w5Rate: 10,
    w5Seconds: 3,
    bullmqConcurrency: 100,
    stallMs: 5000,
    maxWaitMs: 60_000,
  },
  guard: {
    runs: 1,
    w1Tasks: 20_000,
    w1Workers: [1],
    w1LeadMs: 1500,
    w2Rate: 500,
    w2Seconds: 10,
    w3Tasks: 0,
    w3InFlight: 64,
    w3GraphqlSingleTasks: 0,
    bulkChunk: 1000,
    w4Tasks: 0,
    limitRequests: 0,
    aofFsync: [],
    w5Subscribers: [],
    w5Rate: 20,
    w5Seconds: 10,
    bullmqConcurrency: 100,
    stallMs: 5000,
    maxWaitMs: 60_000,
  },
};

const NUMBER_FLAGS: Record<string, keyof BenchOptions> = {
  '--runs': 'runs',
  '--w1-tasks': 'w1Tasks',
  '--w1-lead-ms': 'w1LeadMs',
  '--w2-rate': 'w2Rate',
  '--w2-seconds': 'w2Seconds',
  '--w3-tasks': 'w3Tasks',
  '--w3-in-flight': 'w3InFlight',
  '--w3-graphql-single-tasks': 'w3GraphqlSingleTasks',
  '--bulk-chunk': 'bulkChunk',
  '--w4-tasks': 'w4Tasks',
  '--limit-requests': 'limitRequests',
  '--w5-rate': 'w5Rate',
  '--w5-seconds': 'w5Seconds',
  '--bullmq-concurrency': 'bullmqConcurrency',
};

export const USAGE = `npm run bench -- [options]

  --quick                 small sizes, one run (for development)
  --only w1,w2,w3,w4,limit,w3-aof,w2-aof,w5,w3-cluster,w1-cluster  run only these workloads (default: all)
  --aof always,everysec   AOF fsync settings of w3-aof and w2-aof, a fresh redis-server each
  --systems punctual      run one system only (for profiling; no ratios)
  --json                  print the results as JSON on stdout (progress stays on stderr)
  --render FILE           print the tables of a result saved with --json
  --cpu-prof DIR          every worker and producer process writes a V8 CPU profile to DIR
  --redis-args "ARGS"     extra redis-server arguments, the same for both systems
  --runs N                runs of each workload per system (full: 3)
  --w1-tasks N            W1 burst size (full: 100000)
  --w1-workers 1,2        W1 worker process counts (full: 1,2)
  --w1-lead-ms N          W1 pause between the end of scheduling and the due instant (2000)
  --w2-rate N --w2-seconds N   W2 arrival rate and duration (full: 1000/s for 30 s)
  --w3-tasks N            W3 tasks per variant (full: 100000)
  --w3-in-flight N        W3 single calls in flight (64)
  --w3-graphql-single-tasks N  W3 single calls through GraphQL (full: 20000)
  --bulk-chunk N          tasks per bulk call, both systems (1000)
  --w4-tasks N            W4 tasks (full: 200000)
  --limit-requests N      redis-benchmark requests per test (full: 300000)
  --w5-subscribers 200,1000   W5 subscriber counts on one API, Punctual only (full: 200,1000,2000,5000)
  --w5-rate N --w5-seconds N  W5 tasks/s, each due 1 s after it is sent, and duration (full: 20/s for 10 s)
  --bullmq-concurrency N  BullMQ jobs in parallel per worker process (100)
`;

export class UsageError extends Error {}

export function parseOptions(argv: string[], profile: BenchOptions['profile'] = 'full'): BenchOptions {
  const chosen = argv.includes('--quick') ? 'quick' : profile;
  const options: BenchOptions = { profile: chosen, only: new Set(WORKLOADS), systems: [...SYSTEMS], json: false, cpuProfileDir: undefined, redisArgs: [], ...PROFILES[chosen] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const raw = argv[++i];
      if (raw === undefined) throw new UsageError(`${flag} needs a value`);
      return raw;
    };
    if (flag === '--quick') continue;
    if (flag === '--json') options.json = true;
    else if (flag === '--systems') options.systems = listOf(flag, value(), SYSTEMS);
    else if (flag === '--cpu-prof') options.cpuProfileDir = value();
    else if (flag === '--redis-args') options.redisArgs = value().split(/\s+/).filter(Boolean);
    else if (flag === '--only') options.only = new Set(listOf(flag, value(), WORKLOADS));
    else if (flag === '--w1-workers') options.w1Workers = numbers(flag, value());
    else if (flag === '--w5-subscribers') options.w5Subscribers = numbers(flag, value());
    else if (flag === '--aof') options.aofFsync = listOf(flag, value(), AOF_FSYNC);
    else if (flag in NUMBER_FLAGS) {
      (options as unknown as Record<string, number>)[NUMBER_FLAGS[flag]!] = positive(flag, value());
    } else throw new UsageError(`unknown option ${flag}`);
  }
  return options;
}

/** A comma-separated list of names, each one of `known`. */
function listOf<T extends string>(flag: string, raw: string, known: readonly T[]): T[] {
  const names = raw.split(',').map((name) => name.trim().toLowerCase());
  const unknown = names.filter((name) => !(known as readonly string[]).includes(name));
  if (unknown.length > 0) throw new UsageError(`${flag}: unknown ${unknown.join(', ')}; known: ${known.join(', ')}`);
  return names as T[];
}

/** A comma-separated list of whole numbers, each at least 1. */
function numbers(flag: string, raw: string): number[] {
  return raw.split(',').map((n) => positive(flag, n));
}

function positive(flag: string, raw: string): number {
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new UsageError(`${flag} expects a whole number of at least 1, got "${raw}"`);
  return value;
}
