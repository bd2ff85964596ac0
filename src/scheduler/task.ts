/** The task as the core stores it, and its conversion from a Redis hash. */

export const TASK_STATUSES = ['SCHEDULED', 'DUE', 'FIRING', 'FIRED', 'CANCELLED', 'DEAD'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export interface Task {
  id: string;
  message: string;
  /** Due time, ms since the epoch (UTC). */
  time: number;
  status: TaskStatus;
  createdAt: number;
  /** When a worker last started printing it (Redis time). */
  firedAt: number | null;
  /** firedAt - time. */
  lateByMs: number | null;
  /** Deliveries to a worker so far; above 1 means it was printed more than once or retried. */
  attempts: number;
  /** Consumer name of the worker that fired it. */
  firedBy: string | null;
  /** When it was cancelled or became DEAD. */
  endedAt: number | null;
  idempotencyKey: string | null;
}

const optionalNumber = (value: string | undefined) => (value === undefined ? null : Number(value));

/** Builds a task from HGETALL's field map (short field names keep memory per task low). */
export function taskFromHash(id: string, hash: Record<string, string>): Task | null {
  if (hash.s === undefined || hash.m === undefined || hash.t === undefined) return null;
  return {
    id,
    message: hash.m,
    time: Number(hash.t),
    status: hash.s as TaskStatus,
    createdAt: Number(hash.c),
    firedAt: optionalNumber(hash.f),
    lateByMs: optionalNumber(hash.l),
    attempts: Number(hash.a ?? 0),
    firedBy: hash.w ?? null,
    endedAt: optionalNumber(hash.x),
    idempotencyKey: hash.k ?? null,
  };
}

/** Builds a task from what lua/task-state.lua's readTask replies: field, value pairs (message joined, status derived). */
export function taskFromPairs(id: string, pairs: string[]): Task | null {
  const hash: Record<string, string> = {};
  for (let i = 0; i + 1 < pairs.length; i += 2) hash[pairs[i]!] = pairs[i + 1]!;
  return taskFromHash(id, hash);
}

/** A fired event, as complete.lua writes it to the fired log and publishes it on the taskFired channel. */
export interface FiredEvent {
  partition: number;
  /**
   * Its place in the partition's fired log, shaped as a stream id (`ms-k`). A log entry holds
   * a batch of n events and its id is the last one's seq; the others count down from it in the
   * same millisecond (`ms-(k-n+1)` ... `ms-k`).
   */
  seq: string;
  task: Task;
}

/** A fired event's task as JSON, as the worker sends it to complete.lua. */
export interface FiredTaskJson {
  id: string;
  message: string;
  time: number;
  createdAt: number;
  firedAt: number;
  attempts: number;
  firedBy: string;
}

function firedTask(raw: FiredTaskJson): Task {
  return {
    id: raw.id,
    message: raw.message,
    time: raw.time,
    status: 'FIRED',
    createdAt: raw.createdAt,
    firedAt: raw.firedAt,
    lateByMs: raw.firedAt - raw.time,
    attempts: raw.attempts,
    firedBy: raw.firedBy,
    endedAt: null,
    idempotencyKey: null,
  };
}

/**
 * The events of a batch whose last event has seq `last`, in order: the i-th of n tasks has
 * seq `ms-(k-n+1+i)`. A fired log entry (its id is `last`) and a published batch (its `last`)
 * both name their events this way.
 */
export function batchEvents(partition: number, last: string, tasks: FiredTaskJson[]): FiredEvent[] {
  const { ms, first } = firstOfBatch(last, tasks.length);
  return tasks.map((task, i) => ({ partition, seq: `${ms}-${first + BigInt(i)}`, task: firedTask(task) }));
}

/** The first of n events whose last has seq `last`: its millisecond and the sequence part n-1 below. */
export function firstOfBatch(last: string, n: number): { ms: string; first: bigint } {
  const dash = last.indexOf('-');
  return { ms: last.slice(0, dash), first: BigInt(last.slice(dash + 1)) - BigInt(n - 1) };
}

/** complete.lua's ARGV[9]: a batch's events (JSON each) as the one JSON array it publishes. */
export function firedEventList(events: string[]): string {
  return `[${events.join(',')}]`;
}

/** One message of the taskFired channel: a completed batch of one partition. */
export interface FiredBatch {
  partition: number;
  /** The fired log's last entry id before this batch ('0-0' for none): a reader that is not there missed something. Unknown from a worker older than this field. */
  prev: string | undefined;
  /** The batch's events, in fired log order. */
  events: FiredEvent[];
}

/**
 * Parses a message of the taskFired channel. Its events' seqs come from `last`, the batch's
 * log entry id; a worker of an earlier version names each one in `seqs` instead.
 */
export function parseFiredBatch(message: string): FiredBatch {
  const raw = JSON.parse(message) as { partition: number; prev?: string; last?: string; seqs?: string[]; tasks: FiredTaskJson[] };
  const { partition, prev, last, seqs, tasks } = raw;
  if (last !== undefined) return { partition, prev, events: batchEvents(partition, last, tasks) };
  return { partition, prev, events: tasks.map((task, i) => ({ partition, seq: seqs![i]!, task: firedTask(task) })) };
}

/** The events of a message of the taskFired channel, in fired log order. */
export function parseFiredMessage(message: string): FiredEvent[] {
  return parseFiredBatch(message).events;
}
