/**
 * Every Redis key and channel name. A partition's keys share the hash tag `{prefix:n}` so a
 * script that touches them runs unchanged on Redis Cluster; the task id names its partition,
 * so any process finds a task without a lookup.
 *
 * On a cluster the tag is `{prefix:n.k}`, k the smallest number that puts partition n's slot
 * in the n-th of `partitions` equal slot ranges: a cluster made with equal contiguous ranges
 * per master (what `redis-cli --cluster create` does) then holds partitions/masters partitions
 * on each master. The tag depends on the prefix and the partition count only, never on the
 * topology, so no key moves when masters change. The channels are then per partition too
 * (sharded pub/sub: an event travels to the partition's shard only).
 */
import { randomFillSync, createHash } from 'node:crypto';

export interface Keys {
  readonly prefix: string;
  readonly partitions: number;
  /** `{P:n}:` — the start of every key of partition n. */
  tag(partition: number): string;
  task(partition: number, id: string): string;
  /** The prefix a script appends a task id to. */
  taskPrefix(partition: number): string;
  schedule(partition: number): string;
  due(partition: number): string;
  idempotency(partition: number, key: string): string;
  idempotencyPrefix(partition: number): string;
  fired(partition: number): string;
  /** Whether the names are a cluster's: tags spread over slot ranges, a channel per partition. */
  readonly cluster: boolean;
  /** Live `taskFired` events, one message per completed batch of a partition (one channel for all partitions on one Redis). */
  firedChannel(partition: number): string;
  /** "partition n has an earlier head": re-aims every worker's timer. */
  wakeChannel(partition: number): string;
  /** Per partition, each worker's "lastBeatMs:aliveSinceMs", read by claim before a takeover. */
  liveness(partition: number): string;
  /** What an acquiring call read, under its call id, so the call sent again claims the same entries (firing.lua). */
  call(partition: number, callId: string): string;
  /** The lease on a worker name: the token of the live process that holds it (lease.lua). `P:lease:<w>` on one Redis; in the slot of a partition on a cluster. */
  workerLease(worker: string): string;
  /** Per partition, the record of each FIRING task (task id -> attempt, fired-at, call, worker; lua/task-state.lua). */
  firing(partition: number): string;
  /** Per partition, running totals of tasks that ended FIRED, CANCELLED or DEAD (fields `fired`, `cancelled`, `dead`). */
  totals(partition: number): string;
  /** The consumer group every worker joins on every due stream. */
  group: string;
  /** Per partition, the CANCELLED tasks by when they were cancelled (score: endedAt ms), for listing them without a scan. */
  cancelled(partition: number): string;
  /** Per partition, the DEAD tasks by when they became DEAD (score: endedAt ms). */
  dead(partition: number): string;
}

/** The channels of a kind, each once: one for all partitions on one Redis, one per partition on a cluster. */
export function channelsOf(keys: Keys, channel: (partition: number) => string): string[] {
  return [...new Set(Array.from({ length: keys.partitions }, (_, p) => channel(p)))];
}

export function createKeys(prefix: string, partitions: number, cluster = false): Keys {
  const tags = Array.from({ length: partitions }, (_, n) => (cluster ? spreadTag(prefix, n, partitions) : `{${prefix}:${n}}:`));
  const tag = (n: number) => tags[n] ?? `{${prefix}:${n}}:`;
  return {
    prefix,
    partitions,
    cluster,
    tag,
    task: (n, id) => `${tag(n)}task:${id}`,
    taskPrefix: (n) => `${tag(n)}task:`,
    schedule: (n) => `${tag(n)}schedule`,
    due: (n) => `${tag(n)}due`,
    idempotency: (n, key) => `${tag(n)}idem:${key}`,
    idempotencyPrefix: (n) => `${tag(n)}idem:`,
    fired: (n) => `${tag(n)}fired`,
    firedChannel: cluster ? (n) => `${tag(n)}taskFired` : () => `${prefix}:taskFired`,
    wakeChannel: cluster ? (n) => `${tag(n)}wake` : () => `${prefix}:wake`,
    liveness: (n) => `${tag(n)}workers`,
    call: (n, callId) => `${tag(n)}call:${callId}`,
    // On a cluster in the slot of a partition the name hashes to: the leases spread over the masters.
    workerLease: cluster ? (worker) => `${tag(partitionOfKey(worker, partitions))}lease:${worker}` : (worker) => `${prefix}:lease:${worker}`,
    totals: (n) => `${tag(n)}totals`,
    firing: (n) => `${tag(n)}firing`,
    group: 'workers',
    cancelled: (n) => `${tag(n)}cancelled`,
    dead: (n) => `${tag(n)}dead`,
  };
}

export const CLUSTER_SLOTS = 16384;

/** The tag of partition n on a cluster: `{prefix:n.k}`, its slot in [n, n+1) * 16384 / partitions. */
function spreadTag(prefix: string, n: number, partitions: number): string {
  const from = Math.floor((n * CLUSTER_SLOTS) / partitions);
  const to = Math.floor(((n + 1) * CLUSTER_SLOTS) / partitions);
  for (let k = 0; ; k++) {
    const inner = `${prefix}:${n}.${k}`;
    const slot = crc16(inner) % CLUSTER_SLOTS;
    if (slot >= from && slot < to) return `{${inner}}:`;
  }
}

/** CRC16-CCITT (XMODEM), as Redis Cluster hashes keys. */
function crc16(text: string): number {
  let crc = 0;
  for (const byte of Buffer.from(text)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The cluster slot of a key: of its hash tag when it has a non-empty one. */
export function slotOf(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return crc16(key.slice(open + 1, close)) % CLUSTER_SLOTS;
  }
  return crc16(key) % CLUSTER_SLOTS;
}

const ID_PATTERN = /^(\d{1,4})-([0-9a-z]{16,32})$/;

// One synchronous call into the CSPRNG per 4 KiB instead of per id: per-call cost
// dominated a producer's CPU when scheduling single tasks.
const POOL_SIZE = 4096;
let pool = Buffer.alloc(0);
let poolOffset = 0;
function takeRandomBytes(size: number): Buffer {
  if (poolOffset + size > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_SIZE));
    poolOffset = 0;
  }
  poolOffset += size;
  return pool.subarray(poolOffset - size, poolOffset);
}

/** The partition of a task with an idempotency key: the key and its task share a slot, and a retry finds both. */
export function partitionOfKey(idempotencyKey: string, partitions: number): number {
  return createHash('sha1').update(idempotencyKey).digest().readUInt32BE(0) % partitions;
}

/** A new task id `<partition>-<random>`. */
export function newTaskId(partition: number): string {
  return `${partition}-${BigInt(`0x${takeRandomBytes(10).toString('hex')}`).toString(36).padStart(16, '0')}`;
}

/** A random id for one call of a write, so that the call sent again is known as the same one. */
export function newCallId(): string {
  return takeRandomBytes(10).toString('base64url');
}

/** The task id a schedule member or one task of a due entry names (`id` or `id/generation`; lua/task-state.lua). */
export function taskIdOfMember(value: string): string {
  const slash = value.lastIndexOf('/');
  return slash < 0 ? value : value.slice(0, slash);
}

/** A due entry's value, from its fields (`id`, then `id/g id/g ...`); '' when it has none. */
export function dueEntryValue(fields: string[]): string {
  return fields[fields.indexOf('id') + 1] ?? '';
}

/** The task ids a due entry's value names (`id/g id/g ...`, one task or more; lua/task-state.lua). */
export function taskIdsOfEntry(value: string): string[] {
  return value.split(' ').filter(Boolean).map(taskIdOfMember);
}

/** The partition a task id names, or undefined when the id is not one of ours. */
export function partitionOf(id: string, partitions: number): number | undefined {
  const match = ID_PATTERN.exec(id);
  if (!match) return undefined;
  const partition = Number(match[1]);
  return partition < partitions ? partition : undefined;
}
