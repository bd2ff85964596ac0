/**
 * Where the partitions fall on a cluster's masters, read at start from CLUSTER SHARDS and
 * logged: each master's partitions, and a warning when they do not split evenly (a partition
 * count that is no multiple of the master count, or slots moved by hand).
 */
import type { Cluster } from 'ioredis';
import type { Logger } from './log.js';
import { type Keys, slotOf } from './scheduler/keys.js';

export interface ClusterLayout {
  /** Per master (`host:port`), the partitions whose slot it serves. */
  masters: Map<string, number[]>;
  /** Partitions whose slot no master serves now. */
  unserved: number[];
}

/** Reads who serves which slots (CLUSTER SHARDS; fields are name/value lists) and places every partition. */
export async function readClusterLayout(redis: Cluster, keys: Keys): Promise<ClusterLayout> {
  const shards = (await redis.cluster('SHARDS')) as unknown[][];
  const ranges: { from: number; to: number; master: string }[] = [];
  const masters = new Map<string, number[]>();
  for (const shard of shards) {
    const fields = pairs(shard);
    const slots = (fields.get('slots') as number[] | undefined) ?? [];
    const nodes = ((fields.get('nodes') as unknown[][] | undefined) ?? []).map(pairs);
    const master = nodes.find((node) => node.get('role') === 'master' && node.get('health') !== 'fail');
    if (!master || slots.length === 0) continue;
    const name = `${master.get('ip') ?? master.get('endpoint')}:${master.get('port')}`;
    masters.set(name, []);
    for (let i = 0; i + 1 < slots.length; i += 2) ranges.push({ from: Number(slots[i]), to: Number(slots[i + 1]), master: name });
  }
  const unserved: number[] = [];
  for (let p = 0; p < keys.partitions; p++) {
    const slot = slotOf(keys.schedule(p));
    const range = ranges.find((r) => r.from <= slot && slot <= r.to);
    if (range) masters.get(range.master)!.push(p);
    else unserved.push(p);
  }
  return { masters, unserved };
}

export async function logClusterLayout(redis: Cluster, keys: Keys, log: Logger): Promise<void> {
  const layout = await readClusterLayout(redis, keys);
  const counts = [...layout.masters.values()].map((list) => list.length);
  const partitions = Object.fromEntries(layout.masters);
  if (layout.unserved.length > 0 || Math.max(...counts) - Math.min(...counts) > 1 || keys.partitions % layout.masters.size !== 0) {
    log.warn(
      { masters: layout.masters.size, partitions, unserved: layout.unserved },
      `the ${keys.partitions} partitions do not split evenly over ${layout.masters.size} masters: set PARTITIONS to a multiple of the master count, with the slots in equal contiguous ranges (as redis-cli --cluster create makes them)`,
    );
  } else {
    log.info({ masters: layout.masters.size, partitions }, `cluster: ${keys.partitions / layout.masters.size} partitions on each of ${layout.masters.size} masters`);
  }
}

function pairs(list: unknown[]): Map<string, unknown> {
  const map = new Map<string, unknown>();
  for (let i = 0; i + 1 < list.length; i += 2) map.set(String(list[i]), list[i + 1]);
  return map;
}
