/**
 * W5 (issue 11): live subscribers on one API process. S graphql-ws subscribers to
 * `taskFired` on one Punctual API process (ROLE=api, its own process), the clients in
 * processes of their own (bench/subscriber-process.ts, S split over two), one Punctual
 * worker process, and a producer scheduling R tasks/s for D s, each due 1 s after it is sent.
 * Punctual only: BullMQ has no live feed.
 *
 * Figures per run:
 * - delivered: events received once, over S x tasks the worker fired;
 * - ended: subscriptions that ended (error or complete) or never connected;
 * - delay: from each task's due time (in its message) to its receipt at the client;
 * - RSS per subscriber: the API's VmRSS with S idle subscribers minus with none, over S;
 * - API Redis commands/s: counted inside the API process (bench/redis-command-count.ts),
 *   over the D + 1 s from the first task sent to the last one due; beside it, every
 *   client's commands/s as Redis counts them (worker and producer included, and the
 *   commands scripts run), over the same window;
 * - CPU of the API and of the subscriber processes over that window, and the API's
 *   event-loop delay (p99 and max, from its own /metrics, whose histogram each scrape resets).
 */
import { readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { forkChild, type Child } from './children.js';
import { COMMANDS_FILE_ENV, type CommandCount } from './redis-command-count.js';
import { percentile } from './stats.js';
import type { SubscriberProgress, SubscriberResult } from './subscriber-process.js';
import { runJob, quit, sleep, startGraphqlServer, startProducer, startWorkers, waitForWork, type Context, type GraphqlServer, type RunningWorkers } from './workloads.js';

/** One W5 run at one number of subscribers. */
export interface W5Run {
  subscribers: number;
  run: number;
  /** Tasks the worker fired (the probe aside). */
  fired: number;
  /** Events received once over subscribers x tasks fired: 1 is every event to every subscriber. */
  delivered: number;
  /** Events a subscriber received more than once. */
  duplicates: number;
  /** Subscriptions that ended (error or complete) or never connected. */
  ended: number;
  /** Subscriptions still live when the measured window opened (absent in older results). */
  liveAtStart?: number;
  /** Why they ended, with how many ended that way. */
  reasons: Record<string, number>;
  delayP50: number;
  delayP99: number;
  delayMax: number;
  /** The worker's lateness p99, due time to print (absent in older results): the part of the delay before the API. */
  firingLatenessP99?: number;
  rssPerSubscriberKb: number;
  apiCommandsPerSec: number;
  redisCommandsPerSec: number;
  /** The API process's CPU over the window, in % of one core. */
  apiCpuPercent: number;
  /** The subscriber processes' CPU over the window, together, in % of one core (absent in older results). */
  clientCpuPercent?: number;
  /**
   * CPU per event delivered to one subscriber, µs, from the first task sent until every
   * subscriber had every event (or the run gave up): the API's (with the part spent in the
   * kernel) and the subscriber processes' (absent in older results).
   */
  apiCpuUsPerDelivery?: number;
  apiSystemCpuUsPerDelivery?: number;
  clientCpuUsPerDelivery?: number;
  /** The API's event-loop delay over the window, p99 and max, ms (absent in older results). */
  apiLoopDelayP99?: number;
  apiLoopDelayMax?: number;
}

/** The subscribers are spread over this many processes, so one client process is not the bottleneck. */
const SUBSCRIBER_PROCESSES = 2;
/** Each task is due this long after it is sent. */
const DUE_AFTER_MS = 1000;
/** Pause before each RSS reading, for the API to finish what the last step started. */
const SETTLE_MS = 1000;
const PROBE_WAIT_MS = 30_000;
/** Descriptors the API and a client process need besides one per socket. */
const FD_MARGIN = 200;
const START_TIMEOUT_MS = 30_000;
/** Extra time to connect, per subscriber. */
const CONNECT_MS_PER_SUBSCRIBER = 20;

/** The soft limit on open files this process (and so every child) has. */
export function openFileLimit(): number {
  const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !line || line[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(line[1]);
}

/**
 * The subscriber counts to run: the API holds one socket per subscriber, so counts above the
 * open-file limit (less a margin) are capped to it, with a line in `pending` saying so.
 */
export function subscriberCounts(wanted: number[], pending: string[]): number[] {
  const limit = openFileLimit();
  const cap = limit - FD_MARGIN;
  if (wanted.every((count) => count <= cap)) return wanted;
  pending.push(`W5: ulimit -n is ${limit}, so at most ${cap} subscribers: ${wanted.filter((count) => count > cap).join(', ')} capped to ${cap}; raise it (ulimit -n 12000) before npm run bench to run them`);
  return [...new Set(wanted.map((count) => Math.min(count, cap)))];
}

function procStatus(pid: number): string {
  return readFileSync(`/proc/${pid}/status`, 'utf8');
}

/** Resident memory of a process, KiB. */
function rssKb(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(procStatus(pid));
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]);
}

/** CPU a process has used, seconds, in user and in system (kernel) mode; /proc counts in ticks of 1/100 s on Linux. */
function processCpuSeconds(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

/** The median of five RSS readings 200 ms apart: one reading can land mid-collection. */
async function steadyRssKb(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 5; i++) {
    if (i > 0) await sleep(200);
    readings.push(rssKb(pid));
  }
  return readings.sort((a, b) => a - b)[2]!;
}

/** Counters read at both ends of the measured window. */
interface Reading {
  api: CommandCount;
  redisCommands: number;
  apiCpuSeconds: { user: number; system: number };
  clientCpuSeconds: number;
  at: number;
}

async function read(api: GraphqlServer, countFile: string, ctx: Context, clientCpuSeconds: number): Promise<Reading> {
  return {
    api: JSON.parse(readFileSync(countFile, 'utf8')) as CommandCount,
    redisCommands: await ctx.redis.commandsProcessed(),
    apiCpuSeconds: processCpuSeconds(api.pid),
    clientCpuSeconds,
    at: Date.now(),
  };
}

/**
 * The API's event-loop delay since the last scrape of its /metrics, in ms: prom-client's
 * default metrics read a `monitorEventLoopDelay` histogram and reset it at each scrape.
 */
async function loopDelay(api: GraphqlServer): Promise<{ p99: number; max: number }> {
  const text = await (await fetch(new URL('/metrics', api.endpoint))).text();
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN) * 1000;
  return { p99: gauge('nodejs_eventloop_lag_p99_seconds'), max: gauge('nodejs_eventloop_lag_max_seconds') };
}

/** `total` split into `parts` shares as even as can be, none empty. */
function shares(total: number, parts: number): number[] {
  const count = Math.min(parts, total);
  return Array.from({ length: count }, (_, i) => Math.floor(total / count) + (i < total % count ? 1 : 0));
}

/** Subscriber processes holding `subscribers` clients between them, once every client is connected. */
async function startSubscribers(api: GraphqlServer, subscribers: number, expected: number) {
  const url = api.endpoint.replace(/^http/, 'ws');
  const progress: SubscriberProgress[] = [];
  const children: Child[] = shares(subscribers, SUBSCRIBER_PROCESSES).map((share, i) => {
    progress[i] = { type: 'progress', received: 0, probed: 0, ended: 0, settled: 0, cpuSeconds: 0 };
    const child = forkChild(`W5 subscribers ${i + 1}`, './subscriber-process.ts', [url, String(share), String(expected)]);
    child.on('progress', (message) => (progress[i] = message as SubscriberProgress));
    return child;
  });
  const sum = (field: 'received' | 'probed' | 'ended' | 'cpuSeconds') => progress.reduce((total, p) => total + p[field], 0);
  try {
    await Promise.all(children.map((child) => child.next('ready', START_TIMEOUT_MS + subscribers * CONNECT_MS_PER_SUBSCRIBER)));
  } catch (error) {
    for (const child of children) child.kill();
    throw error;
  }
  return {
    children,
    sum,
    async finish(): Promise<SubscriberResult[]> {
      for (const child of children) child.send({ type: 'stop' });
      const results = await Promise.all(children.map((child) => child.next<SubscriberResult>('result', 60_000)));
      await Promise.all(children.map((child) => child.exited(5000)));
      return results;
    },
  };
}

/** W5 at one number of subscribers: a fresh API, worker and producer, on a flushed Redis. */
export async function liveSubscribers(ctx: Context, subscribers: number, run: number): Promise<W5Run> {
  const { redis, options } = ctx;
  const expected = Math.round(options.w5Rate * options.w5Seconds);
  await redis.flush();
  const countFile = join(tmpdir(), `punctual-bench-w5-${process.pid}.json`);
  const api = await startGraphqlServer(ctx, { env: { [COMMANDS_FILE_ENV]: countFile }, preload: ['./redis-command-count.ts'] });
  if (!api) throw new Error('W5 needs the GraphQL API (src/server.ts)');
  let workers: RunningWorkers | undefined;
  let producer: Child | undefined;
  let clients: Awaited<ReturnType<typeof startSubscribers>> | undefined;
  try {
    workers = await startWorkers(ctx, 'punctual', 1);
    producer = await startProducer('punctual', redis.url);
    await sleep(SETTLE_MS);
    const rssBefore = await steadyRssKb(api.pid);
    clients = await startSubscribers(api, subscribers, expected);
    const { sum } = clients;

    // A probe task (numbered -1) due now: once every subscriber has it, every subscription is live.
    await runJob(producer, { kind: 'bulk', count: 1, chunk: 1, dueInMs: 0, firstSeq: -1 }, START_TIMEOUT_MS);
    const probeDeadline = Date.now() + PROBE_WAIT_MS;
    while (sum('probed') + sum('ended') < subscribers && Date.now() < probeDeadline) await sleep(50);
    if (sum('probed') < subscribers) ctx.log(`  warning: the probe reached ${sum('probed')} of ${subscribers} subscribers (${sum('ended')} ended)`);
    await sleep(SETTLE_MS);
    const rssIdle = await steadyRssKb(api.pid);

    const job = { kind: 'steady', rate: options.w5Rate, seconds: options.w5Seconds, minDelayMs: DUE_AFTER_MS, maxDelayMs: DUE_AFTER_MS } as const;
    const liveAtStart = subscribers - sum('ended');
    await loopDelay(api); // resets the histogram: the next scrape covers the window
    const start = await read(api, countFile, ctx, sum('cpuSeconds'));
    const scheduling = runJob(producer, job, (options.w5Seconds + 60) * 1000);
    // The window: from the first task sent to the last one due.
    await sleep(start.at + options.w5Seconds * 1000 + DUE_AFTER_MS - Date.now());
    const end = await read(api, countFile, ctx, sum('cpuSeconds'));
    const delay = await loopDelay(api);
    const scheduled = await scheduling;
    const lastDue = scheduled.endedAt + DUE_AFTER_MS;
    await waitForWork(() => sum('received'), subscribers * expected, lastDue, options.stallMs, lastDue + options.maxWaitMs);
    const settled = await read(api, countFile, ctx, sum('cpuSeconds'));

    const results = await clients.finish();
    const done = await workers.finish(expected);
    const delays = new Float64Array(results.reduce((n, r) => n + r.delays.length, 0));
    let offset = 0;
    for (const result of results) {
      delays.set(result.delays, offset);
      offset += result.delays.length;
    }
    delays.sort();
    const reasons: Record<string, number> = {};
    for (const result of results) for (const [reason, count] of Object.entries(result.reasons)) reasons[reason] = (reasons[reason] ?? 0) + count;
    const seconds = (end.at - start.at) / 1000;
    const deliveries = results.reduce((n, r) => n + r.received, 0);
    const cpu = (reading: Reading) => reading.apiCpuSeconds.user + reading.apiCpuSeconds.system;
    const perDelivery = (cpuSeconds: number) => (cpuSeconds * 1e6) / deliveries;
    const w5: W5Run = {
      subscribers,
      run,
      fired: done.unique,
      delivered: results.reduce((n, r) => n + r.received, 0) / (subscribers * done.unique),
      duplicates: results.reduce((n, r) => n + r.duplicates, 0),
      ended: results.reduce((n, r) => n + r.ended, 0),
      liveAtStart,
      reasons,
      delayP50: percentile(delays, 50),
      delayP99: percentile(delays, 99),
      delayMax: percentile(delays, 100),
      firingLatenessP99: percentile(done.lateness, 99),
      rssPerSubscriberKb: (rssIdle - rssBefore) / subscribers,
      apiCommandsPerSec: ((end.api.count - start.api.count) * 1000) / (end.api.at - start.api.at),
      redisCommandsPerSec: (end.redisCommands - start.redisCommands) / seconds,
      apiCpuPercent: ((cpu(end) - cpu(start)) / seconds) * 100,
      clientCpuPercent: ((end.clientCpuSeconds - start.clientCpuSeconds) / seconds) * 100,
      apiCpuUsPerDelivery: perDelivery(cpu(settled) - cpu(start)),
      apiSystemCpuUsPerDelivery: perDelivery(settled.apiCpuSeconds.system - start.apiCpuSeconds.system),
      clientCpuUsPerDelivery: perDelivery(settled.clientCpuSeconds - start.clientCpuSeconds),
      apiLoopDelayP99: delay.p99,
      apiLoopDelayMax: delay.max,
    };
    ctx.log(
      `  W5 ${subscribers} subscribers run ${run}: delivered ${(w5.delivered * 100).toFixed(1)}% of ${done.unique} x ${subscribers}, ended ${w5.ended} (${liveAtStart} live at the start), ` +
        `delay p50 ${w5.delayP50} p99 ${w5.delayP99} max ${w5.delayMax} ms (firing lateness p99 ${w5.firingLatenessP99} ms), ${w5.rssPerSubscriberKb.toFixed(1)} KB/subscriber, ` +
        `API ${w5.apiCommandsPerSec.toFixed(0)} Redis commands/s, API CPU ${w5.apiCpuPercent.toFixed(0)}%, clients' CPU ${w5.clientCpuPercent!.toFixed(0)}%, ` +
        `API event-loop delay p99 ${delay.p99.toFixed(0)} max ${delay.max.toFixed(0)} ms, ` +
        `CPU per delivery: API ${w5.apiCpuUsPerDelivery!.toFixed(1)} µs (${w5.apiSystemCpuUsPerDelivery!.toFixed(1)} in the kernel), clients ${w5.clientCpuUsPerDelivery!.toFixed(1)} µs`,
    );
    for (const [reason, count] of Object.entries(reasons)) ctx.log(`    ended ${count}: ${reason}`);
    return w5;
  } finally {
    for (const child of [...(clients?.children ?? []), ...(workers?.children ?? [])]) child.kill();
    if (producer) await quit(producer);
    await api.stop();
    rmSync(countFile, { force: true });
  }
}

/** Every W5 run: the subscriber counts take turns within each run, so drift falls on all alike. */
export async function liveSubscriberRuns(ctx: Context, pending: string[]): Promise<W5Run[]> {
  const { options } = ctx;
  const counts = subscriberCounts(options.w5Subscribers, pending);
  const runs: W5Run[] = [];
  for (let run = 1; run <= options.runs; run++) {
    for (const subscribers of counts) {
      ctx.log(`W5 ${subscribers} live subscribers, ${options.w5Rate} tasks/s for ${options.w5Seconds} s, run ${run}, load average ${loadavg().map((n) => n.toFixed(2)).join(' ')}`);
      runs.push(await liveSubscribers(ctx, subscribers, run));
    }
  }
  return runs;
}
