/**
 * W1 and W3 on a Redis Cluster of 3 masters (each with a replica), Punctual alone: BullMQ
 * keeps a whole queue in one hash slot, so a cluster gives it one master whatever its size.
 * Beside the throughput, what each master spent: Redis CPU per task on each master, and how
 * evenly the load split (the spread between the busiest and the idlest master).
 */
import { Redis } from 'ioredis';
import { startCluster, type LocalCluster } from '../scripts/cluster.js';
import { killWithRunner } from './children.js';
import type { BenchRedis, CommandStat } from './bench-redis.js';
import { CLUSTER_TARGET } from './systems.js';
import { loadConfig } from '../src/config.js';
import { burst, throughput, type Context } from './workloads.js';

const MASTERS = 3;
/** The partitions Punctual uses on a cluster by default (src/config.ts). */
const PARTITIONS = loadConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:1' }).partitions;

/** The cluster as a BenchRedis (its figures summed over the masters), and each master's CPU. */
interface BenchCluster extends BenchRedis {
  /** CPU seconds each master has used since it started, in slot order. */
  cpuPerMaster(): Promise<number[]>;
}

const infoNumber = (info: string, field: string) => Number(new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1] ?? Number.NaN);

async function startBenchCluster(): Promise<BenchCluster> {
  // No persistence, as the one redis-server of w1 and w3 (bench-redis.ts).
  const cluster: LocalCluster = await startCluster({ masters: MASTERS, args: ['--appendonly', 'no', '--save', ''] });
  for (const node of cluster.nodes) killWithRunner(node.process);
  const controls: Redis[] = [];
  const masters = async () => {
    // The masters as they are now, in slot order: (0, 5461, 10923) with the ranges of cluster create.
    const list = await Promise.all([0, 8192, 16383].map((slot) => cluster.masterOf(slot)));
    return list.map((node) => {
      let control = controls.find((c) => c.options.port === node.port);
      if (!control) {
        control = new Redis(node.url, { maxRetriesPerRequest: 1 });
        control.on('error', () => {});
        controls.push(control);
      }
      return control;
    });
  };
  const sum = async (read: (control: Redis) => Promise<number>) => (await Promise.all((await masters()).map(read))).reduce((a, b) => a + b, 0);
  const cpu = async (control: Redis) => {
    const info = await control.info('cpu');
    return infoNumber(info, 'used_cpu_user') + infoNumber(info, 'used_cpu_sys');
  };
  const first = (await masters())[0]!;
  return {
    url: `${CLUSTER_TARGET}${cluster.seeds}`,
    port: cluster.nodes[0]!.port,
    version: /^redis_version:(.*)$/m.exec(await first.info('server'))?.[1]?.trim() ?? 'unknown',
    aof: undefined,
    settings: [`cluster of ${MASTERS} masters, 1 replica each`, '--appendonly no', '--save ""'],
    async flush() {
      await Promise.all((await masters()).map((control) => control.flushall()));
    },
    usedMemory: () => sum(async (control) => infoNumber(await control.info('memory'), 'used_memory')),
    cpuSeconds: () => sum(cpu),
    commandsProcessed: () => sum(async (control) => infoNumber(await control.info('stats'), 'total_commands_processed')),
    async resetCommandStats() {
      await Promise.all((await masters()).map((control) => control.config('RESETSTAT')));
    },
    async commandStats() {
      const stats = new Map<string, CommandStat>();
      for (const control of await masters()) {
        for (const match of (await control.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
          const stat = stats.get(match[1]!) ?? { command: match[1]!, calls: 0, usec: 0 };
          stat.calls += Number(match[2]);
          stat.usec += Number(match[3]);
          stats.set(stat.command, stat);
        }
      }
      return [...stats.values()].sort((a, b) => b.usec - a.usec);
    },
    async cpuPerMaster() {
      return Promise.all((await masters()).map(cpu));
    },
    async stop() {
      for (const control of controls) control.disconnect();
      await cluster.stop();
    },
  };
}

/**
 * Runs `work` and records each master's Redis CPU per task (µs) and the split: how much more
 * the busiest master spent than the idlest, in percent.
 */
async function perMaster(ctx: Context, cluster: BenchCluster, id: string, label: string, tasks: number, work: () => Promise<void>): Promise<void> {
  const before = await cluster.cpuPerMaster();
  const profiles = ctx.profiles.length;
  await work();
  // Where the time went, summed over the masters: named apart from the one redis-server's.
  for (const profile of ctx.profiles.slice(profiles)) profile.workload += `, cluster of ${MASTERS} masters`;
  const spent = (await cluster.cpuPerMaster()).map((seconds, i) => seconds - before[i]!);
  for (const [i, seconds] of spent.entries()) ctx.figures.record(`${id}.redisCpuPerTask.master${i + 1}`, `${label} Redis CPU per task, master ${i + 1}`, 'µs', 'lower', 'punctual', (seconds * 1e6) / tasks);
  const split = (Math.max(...spent) / Math.min(...spent) - 1) * 100;
  ctx.figures.record(`${id}.redisCpuSplit`, `${label} busiest master over the idlest`, '%', 'lower', 'punctual', split);
  ctx.log(`  per master: ${spent.map((s) => `${((s * 1e6) / tasks).toFixed(1)} µs/task`).join(', ')}; split ${split.toFixed(1)}%`);
}

/** w1-cluster and w3-cluster: Punctual on the cluster, rows of their own beside the one-Redis rows. */
export async function clusterWorkloads(ctx: Context): Promise<string[]> {
  const { options } = ctx;
  const cluster = await startBenchCluster();
  try {
    ctx.log(`Redis Cluster of ${MASTERS} masters (${cluster.url})`);
    // Bulk calls take the partitions in turn: a whole number of rounds over the 12 partitions
    // gives each master the same share (20,000 in chunks of 1,000 would give 8, 8 and 4).
    const round = options.bulkChunk * PARTITIONS;
    const rounded = (tasks: number) => Math.ceil(tasks / round) * round;
    const sized = { ...options, w1Tasks: rounded(options.w1Tasks), w3Tasks: rounded(options.w3Tasks) };
    const on: Context = { ...ctx, options: sized, redis: cluster, figures: ctx.figures.on({ key: `cluster${MASTERS}`, label: `, cluster of ${MASTERS} masters` }), bulkRate: {} };
    for (let run = 1; run <= options.runs; run++) {
      if (options.only.has('w3-cluster')) {
        on.log(`W3 scheduling throughput on the cluster, run ${run}`);
        const tasks = sized.w3Tasks * 2;
        await perMaster(on, cluster, 'w3', 'W3 (single and bulk):', tasks, () => throughput(on, 'punctual', cluster.url, run));
      }
      if (options.only.has('w1-cluster')) {
        for (const workers of options.w1Workers) {
          on.log(`W1 burst of ${sized.w1Tasks} on the cluster, ${workers} worker(s), run ${run}`);
          await perMaster(on, cluster, `w1.workers${workers}`, `W1 burst, ${workers} worker${workers > 1 ? 's' : ''} (scheduling and firing):`, sized.w1Tasks, () => burst(on, 'punctual', workers, run));
        }
      }
    }
    return cluster.settings;
  } finally {
    await cluster.stop();
  }
}
