/**
 * Every Redis key and channel name. A partition's keys share the hash tag `{prefix:n}` so a
 * script that touches them runs unchanged on Redis Cluster; the task id names its partition,
 * so any process finds a task without a lookup.
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
  /** Live `taskFired` events, one message per completed batch of a partition. */
  firedChannel: string;
  /** "partition n has an earlier head": re-aims every worker's timer. */
  wakeChannel: string;
  /** Per partition, each worker's "lastBeatMs:aliveSinceMs", read by claim before a takeover. */
  liveness(partition: number): string;
  /** What an acquiring call read, under its call id, so the call sent again claims the same entries (firing.lua). */
  call(partition: number, callId: string): string;
  /** The lease on a worker name: the token of the live process that holds it (lease.lua). */
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

export function createKeys(prefix: string, partitions: number): Keys {
  const tag = (n: number) => `{${prefix}:${n}}:`;
  return {
    prefix,
    partitions,
    tag,
    task: (n, id) => `${tag(n)}task:${id}`,
    taskPrefix: (n) => `${tag(n)}task:`,
    schedule: (n) => `${tag(n)}schedule`,
    due: (n) => `${tag(n)}due`,
    idempotency: (n, key) => `${tag(n)}idem:${key}`,
    idempotencyPrefix: (n) => `${tag(n)}idem:`,
    fired: (n) => `${tag(n)}fired`,
    firedChannel: `${prefix}:taskFired`,
    wakeChannel: `${prefix}:wake`,
    liveness: (n) => `${tag(n)}workers`,
    call: (n, callId) => `${tag(n)}call:${callId}`,
    workerLease: (worker) => `${prefix}:lease:${worker}`,
    totals: (n) => `${tag(n)}totals`,
    firing: (n) => `${tag(n)}firing`,
    group: 'workers',
    cancelled: (n) => `${tag(n)}cancelled`,
    dead: (n) => `${tag(n)}dead`,
  };
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

/** The task id a schedule member or a due entry's value names (`id` or `id/generation`; lua/task-state.lua). */
export function taskIdOfMember(value: string): string {
  const slash = value.lastIndexOf('/');
  return slash < 0 ? value : value.slice(0, slash);
}

/** The partition a task id names, or undefined when the id is not one of ours. */
export function partitionOf(id: string, partitions: number): number | undefined {
  const match = ID_PATTERN.exec(id);
  if (!match) return undefined;
  const partition = Number(match[1]);
  return partition < partitions ? partition : undefined;
}
