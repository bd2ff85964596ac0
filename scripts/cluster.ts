/**
 * A local Redis Cluster for tests, the chaos suite and the benchmark: 3 masters and 3
 * replicas of Debian's `redis-server --cluster-enabled yes` on free loopback ports, in a
 * temp dir, joined by `redis-cli --cluster create --cluster-replicas 1`. `startCluster`
 * resolves once every node reports `cluster_state:ok` and sees every slot covered; `stop`
 * kills them all and removes the dir.
 *
 *   npx tsx scripts/cluster.ts        starts one, prints REDIS_CLUSTER_NODES, stops on Ctrl-C
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freeClusterPort, startPrivateRedis, type PrivateRedis } from '../src/private-redis.js';

const run = promisify(execFile);

export interface LocalCluster {
  /** The nodes, masters first (as created; a failover swaps roles). */
  readonly nodes: PrivateRedis[];
  /** `host:port,...` of every node: the value of REDIS_CLUSTER_NODES. */
  readonly seeds: string;
  /** The node serving as master for a slot now (CLUSTER SLOTS asked of a live node). */
  masterOf(slot: number): Promise<PrivateRedis>;
  /** The replicas of the master that serves a slot now. */
  replicasOf(slot: number): Promise<PrivateRedis[]>;
  /** kill -9 of a node: no goodbye to its replicas or the cluster bus. */
  kill(node: PrivateRedis): Promise<void>;
  /** Starts a killed node again on its port and data dir: it rejoins (a master that lost its slots comes back as a replica). */
  restart(node: PrivateRedis): Promise<PrivateRedis>;
  /** Waits until every live node reports cluster_state:ok and agrees on who serves each slot. */
  healthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  masters?: number;
  /** Replicas per master. @default 1 */
  replicas?: number;
  /** How long a master may be silent before its replica takes over. @default 1500 */
  nodeTimeoutMs?: number;
  /** Extra redis-server arguments for every node. */
  args?: string[];
}

const cli = async (port: number, ...args: string[]) => (await run('redis-cli', ['-p', String(port), ...args], { timeout: 10_000 })).stdout;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startCluster(options: ClusterOptions = {}): Promise<LocalCluster> {
  const masterCount = options.masters ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'punctual-cluster-'));
  const nodes: PrivateRedis[] = [];
  const startNode = (port: number) =>
    startPrivateRedis({
      port,
      dir: join(dir, String(port)),
      // No fsync per write: a cluster's durability comes from its replicas (WAIT), and fsync
      // on six nodes would measure the disk, not Redis.
      appendfsync: 'everysec',
      args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 1500), '--repl-diskless-sync-delay', '0', ...(options.args ?? [])],
    });
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const replicas = options.replicas ?? 1;
    for (let i = 0; i < masterCount * (1 + replicas); i++) nodes.push(await startNode(await freeClusterPort()));
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 60_000 });
  } catch (error) {
    await stop();
    throw error;
  }
  const live = () => nodes.filter((node) => node.process.exitCode === null && node.process.signalCode === null);
  /**
   * The slot ranges, each with its master's port and its live replicas' ports, as a node sees
   * them (CLUSTER NODES: id, ip:port@bus, flags, master id, ..., link state, slots).
   */
  const masters = async (port: number) => {
    const rows = (await cli(port, 'CLUSTER', 'NODES'))
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [id, address, flags, master, , , , link, ...slots] = line.split(' ');
        return { id, port: Number(/:(\d+)@/.exec(address ?? '')?.[1]), flags: (flags ?? '').split(','), master, link, slots };
      });
    const ranges: { from: number; to: number; port: number; replicas: number[] }[] = [];
    for (const row of rows.filter((r) => r.flags.includes('master') && !r.flags.includes('fail'))) {
      const replicas = rows.filter((r) => r.master === row.id && !r.flags.includes('fail') && r.link === 'connected').map((r) => r.port);
      for (const slot of row.slots.filter((item) => /^\d+(-\d+)?$/.test(item))) {
        const [from, to] = slot.split('-').map(Number) as [number, number?];
        ranges.push({ from, to: to ?? from, port: row.port, replicas });
      }
    }
    return ranges.sort((a, b) => a.from - b.from);
  };
  /** The slot's range as the first live node that answers sees it. */
  const rangeOf = async (slot: number) => {
    for (const node of live()) {
      const range = (await masters(node.port).catch(() => [])).find((r) => r.from <= slot && slot <= r.to);
      if (range && nodes.some((candidate) => candidate.port === range.port)) return range;
    }
    throw new Error(`no live node knows the master of slot ${slot}`);
  };
  const cluster: LocalCluster = {
    nodes,
    seeds: nodes.map((node) => `127.0.0.1:${node.port}`).join(','),
    async masterOf(slot) {
      const range = await rangeOf(slot);
      return nodes.find((candidate) => candidate.port === range.port)!;
    },
    async replicasOf(slot) {
      const range = await rangeOf(slot);
      return nodes.filter((candidate) => range.replicas.includes(candidate.port));
    },
    async kill(node) {
      await node.stop('SIGKILL');
    },
    async restart(node) {
      const restarted = await startNode(node.port);
      nodes[nodes.indexOf(node)] = restarted;
      return restarted;
    },
    async healthy(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(
          live().map(async (node) => {
            const info = await cli(node.port, 'CLUSTER', 'INFO').catch(() => '');
            if (!/cluster_state:ok/.test(info) || !/cluster_slots_ok:16384/.test(info)) return 'x';
            const ranges = await masters(node.port).catch(() => []);
            // Every slot served by a node that is alive (a killed master is not, until its replica took over).
            if (ranges.length === 0 || ranges.some((r) => !live().some((n) => n.port === r.port))) return 'x';
            // As many masters with a replica as there are live nodes to be replicas.
            const masterPorts = new Set(ranges.map((r) => r.port));
            const replicated = new Set(ranges.filter((r) => r.replicas.length > 0).map((r) => r.port));
            if (replicated.size < Math.min(masterPorts.size, live().length - masterPorts.size)) return 'x';
            return JSON.stringify(ranges);
          }),
        );
        if (!states.includes('x') && new Set(states).size === 1) return;
        if (Date.now() > deadline) throw new Error(`the cluster did not become healthy within ${timeoutMs} ms`);
        // Each look spawns two redis-cli per node: not more often, on a machine of 2 cores.
        await sleep(300);
      }
    },
    stop,
  };
  try {
    await cluster.healthy();
  } catch (error) {
    await stop();
    throw error;
  }
  return cluster;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'))) {
  const cluster = await startCluster();
  process.stdout.write(`REDIS_CLUSTER_NODES=${cluster.seeds}\n`);
  const shutdown = () => void cluster.stop().then(() => process.exit(0));
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
