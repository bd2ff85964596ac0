/**
 * Scheduling, reading, cancelling and rescheduling tasks: one script call (one round trip)
 * each, decided inside Redis by the task's status.
 */
import { type RedisClient, noteRedirections } from '../redis.js';
import type { Keys } from './keys.js';
import { newTaskId, partitionOf, partitionOfKey } from './keys.js';
import { type WriteCall, cancelCall, decodeSchedule, decodeTaskWrite, readTasks, rescheduleCall, scheduleCall, sendWrite } from './calls/store.js';
import { SchedulerError, reachRedis } from './errors.js';
import { type WriteReply, createPartitionClocks } from './redis-clock.js';
import { type Task, taskFromPairs } from './task.js';
import { COMMAND_TIMEOUT_MS } from '../redis.js';

function newTaskView(id: string, task: NewTask, createdAt: number): Task {
  return {
    id,
    message: task.message,
    time: task.time,
    status: 'SCHEDULED',
    createdAt,
    firedAt: null,
    lateByMs: null,
    attempts: 0,
    firedBy: null,
    endedAt: null,
    idempotencyKey: task.idempotencyKey ?? null,
  };
}

export interface TaskStoreSettings {
  horizonMs: number;
  retentionMs: number;
  maxMessageBytes: number;
  maxBulk: number;
  /** Replicas that must hold a write before it is answered (WAIT); 0 for none. @default 0 */
  redisWaitReplicas?: number;
  /** How long a write waits for them. */
  redisWaitTimeoutMs?: number;
}

export interface NewTask {
  message: string;
  /** Due time, ms since the epoch. */
  time: number;
  idempotencyKey?: string | undefined;
}

export interface TaskStore {
  /** Stores one task; answers only once Redis has it. */
  schedule(task: NewTask): Promise<Task>;
  /** Stores many tasks; all or none of each partition's share is written (see README). */
  scheduleMany(tasks: NewTask[]): Promise<Task[]>;
  get(id: string): Promise<Task | null>;
  getMany(ids: string[]): Promise<(Task | null)[]>;
  cancel(id: string): Promise<Task>;
  reschedule(id: string, time: number): Promise<Task>;
}

export const MAX_IDEMPOTENCY_KEY_LENGTH = 256;

/** A task of a call, its id, and its place in the call (-1 for a single task). */
interface BulkItem {
  task: NewTask;
  id: string;
  index: number;
}

/** How long a reschedule's record lives: far longer than the call is sent again (COMMAND_TIMEOUT_MS). */
const RESCHEDULE_RECORD_MS = 10 * COMMAND_TIMEOUT_MS;

function checkNewTask(task: NewTask, settings: TaskStoreSettings, index: number): void {
  const where = index >= 0 ? ` (task ${index})` : '';
  if (typeof task.message !== 'string' || task.message.length === 0) {
    throw new SchedulerError('BAD_USER_INPUT', `The message must not be empty${where}.`, { index });
  }
  if (Buffer.byteLength(task.message, 'utf8') > settings.maxMessageBytes) {
    throw new SchedulerError('BAD_USER_INPUT', `The message is longer than ${settings.maxMessageBytes} bytes${where}.`, { index });
  }
  if (!Number.isSafeInteger(task.time)) {
    throw new SchedulerError('BAD_USER_INPUT', `The time must be a whole number of milliseconds${where}.`, { index });
  }
  if (task.idempotencyKey !== undefined && (task.idempotencyKey.length === 0 || task.idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH)) {
    throw new SchedulerError('BAD_USER_INPUT', `The idempotency key must have 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters${where}.`, { index });
  }
}

export function createTaskStore(redis: RedisClient, keys: Keys, settings: TaskStoreSettings): TaskStore {
  const clockOf = createPartitionClocks(redis, keys);
  const replicas = settings.redisWaitReplicas ?? 0;
  /**
   * Runs a write script whose first argument is its deadline (see redis-clock.ts). With
   * REDIS_WAIT_REPLICAS, WAIT follows it in the same round trip, on the same master (a
   * pipeline stays on its keys' node): the write is answered only once that many replicas
   * have it, so a failover cannot take back what was answered.
   */
  const write = (partition: number, call: WriteCall) =>
    clockOf(partition).write(COMMAND_TIMEOUT_MS, async (deadline) => {
      if (replicas === 0) return sendWrite(redis, call, deadline);
      const pipeline = redis.pipeline();
      void sendWrite(pipeline, call, deadline);
      pipeline.wait(replicas, settings.redisWaitTimeoutMs ?? 500);
      const replies = noteRedirections(redis, ((await pipeline.exec()) ?? []) as [Error | null, unknown][]);
      const [[error, reply], [waitError, acknowledged]] = replies as [[Error | null, unknown], [Error | null, unknown]];
      if (error) throw error;
      if (waitError) throw waitError;
      if ((reply as WriteReply)[0] === 'OK' && Number(acknowledged) < replicas) {
        throw new SchedulerError(
          'UNAVAILABLE',
          `The task store's master has the write but only ${acknowledged} of the ${replicas} replicas REDIS_WAIT_REPLICAS asks for confirmed it in time; a failover could lose it. Retry with the same idempotency key.`,
        );
      }
      return reply;
    });

  const partitionOrThrow = (id: string): number => {
    const partition = partitionOf(id, keys.partitions);
    if (partition === undefined) throw new SchedulerError('NOT_FOUND', `No task has the id "${id}".`, { id });
    return partition;
  };

  const refusal = (code: string, id: string, pairs: string[]): SchedulerError => {
    const status = taskFromPairs(id, pairs)?.status;
    if (code === 'NOT_FOUND') return new SchedulerError('NOT_FOUND', `No task has the id "${id}".`, { id });
    if (code === 'TIME_TOO_FAR') return tooFar(-1);
    return new SchedulerError('TOO_LATE', `Task "${id}" is ${status} and can no longer be changed.`, { id, status });
  };

  /** The task a cancel or reschedule left, or the refusal it answered. */
  const answered = (id: string, reply: WriteReply): Task => {
    const { code, pairs } = decodeTaskWrite(reply);
    if (code !== 'OK') throw refusal(code, id, pairs);
    return taskFromPairs(id, pairs)!;
  };

  const tooFar = (index: number) =>
    new SchedulerError('TIME_TOO_FAR', `The time is further ahead than the horizon (${settings.horizonMs} ms)${index >= 0 ? ` (task ${index})` : ''}.`, index >= 0 ? { index } : {});

  /** Schedules (or, with 'check', only checks) tasks that all belong to one partition, in one script call. */
  const schedulePartition = async (partition: number, items: BulkItem[], mode: 'write' | 'check' = 'write') => {
    const call = scheduleCall(keys, partition, items.map(({ task, id }) => ({ id, ...task })), settings, mode);
    const outcome = decodeSchedule(await write(partition, call));
    if (outcome.code === 'TIME_TOO_FAR') throw tooFar(items[outcome.at]!.index);
    if (outcome.code === 'IDEMPOTENCY_CONFLICT') {
      throw new SchedulerError('IDEMPOTENCY_CONFLICT', `The idempotency key is already used by task "${outcome.holder}" with another message or time.`, {
        index: items[outcome.at]!.index,
        id: outcome.holder,
      });
    }
    if (mode === 'check') return [];
    return items.map(({ task, index }, i) => ({ ...outcome.stored[i]!, task, createdAt: outcome.now, index }));
  };

  // Tasks without an idempotency key go where a bulk's keyed tasks go, or else to the next
  // partition in turn: a bulk then is one atomic call unless its keys span partitions.
  let nextPartition = Math.floor(Math.random() * keys.partitions);
  const groupByPartition = (tasks: NewTask[]): Map<number, BulkItem[]> => {
    const keyed = tasks.find((task) => task.idempotencyKey !== undefined)?.idempotencyKey;
    if (keyed === undefined) nextPartition = (nextPartition + 1) % keys.partitions;
    const unkeyedPartition = keyed === undefined ? nextPartition : partitionOfKey(keyed, keys.partitions);
    const byPartition = new Map<number, BulkItem[]>();
    tasks.forEach((task, index) => {
      const partition = task.idempotencyKey === undefined ? unkeyedPartition : partitionOfKey(task.idempotencyKey, keys.partitions);
      const items = byPartition.get(partition) ?? [];
      items.push({ task, id: newTaskId(partition), index: tasks.length > 1 ? index : -1 });
      byPartition.set(partition, items);
    });
    return byPartition;
  };

  const store: TaskStore = {
    async schedule(task) {
      const [created] = await store.scheduleMany([task]);
      return created!;
    },

    async scheduleMany(tasks) {
      if (tasks.length > settings.maxBulk) {
        throw new SchedulerError('BAD_USER_INPUT', `At most ${settings.maxBulk} tasks can be scheduled in one call.`);
      }
      for (const [index, task] of tasks.entries()) checkNewTask(task, settings, tasks.length > 1 ? index : -1);
      const byPartition = groupByPartition(tasks);
      if (byPartition.size > 1) {
        // Each partition's share is one atomic call: every share is checked before any is
        // written, so a refused bulk writes nothing.
        await Promise.all([...byPartition].map(([partition, items]) => schedulePartition(partition, items, 'check')));
      }
      const outcomes = (await Promise.all([...byPartition].map(([partition, items]) => schedulePartition(partition, items)))).flat();
      outcomes.sort((a, b) => a.index - b.index);
      // A task an idempotency key already named is read back as it is now.
      return Promise.all(
        outcomes.map(async ({ id, created, task, createdAt }) => {
          if (created) return newTaskView(id, task, createdAt);
          const existing = await store.get(id);
          if (!existing) throw new SchedulerError('NOT_FOUND', `Task "${id}" has ended and expired.`, { id });
          return existing;
        }),
      );
    },

    async get(id) {
      const partition = partitionOf(id, keys.partitions);
      if (partition === undefined) return null;
      const [task] = await reachRedis(() => readTasks(redis, keys, partition, [id]));
      return task ?? null;
    },

    async getMany(ids) {
      return Promise.all(ids.map((id) => store.get(id)));
    },

    async cancel(id) {
      const partition = partitionOrThrow(id);
      return answered(id, await write(partition, cancelCall(keys, partition, id, settings.retentionMs)));
    },

    async reschedule(id, time) {
      if (!Number.isSafeInteger(time)) throw new SchedulerError('BAD_USER_INPUT', 'The time must be a whole number of milliseconds.');
      const partition = partitionOrThrow(id);
      return answered(id, await write(partition, rescheduleCall(keys, partition, id, time, settings, RESCHEDULE_RECORD_MS)));
    },
  };
  return store;
}
