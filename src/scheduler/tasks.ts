/**
 * Scheduling, reading, cancelling and rescheduling tasks: one script call (one round trip)
 * each, decided inside Redis by the task's status.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';
import { newTaskId, partitionOf } from './keys.js';
import { runScript } from './scripts.js';
import { SchedulerError, reachRedis } from './errors.js';
import { type Task, taskFromBufferHash, taskFromPairs } from './task.js';
import { redisTimeMs } from '../redis.js';

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

export function createTaskStore(redis: Redis, keys: Keys, settings: TaskStoreSettings): TaskStore {
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

  const tooFar = (index: number) =>
    new SchedulerError('TIME_TOO_FAR', `The time is further ahead than the horizon (${settings.horizonMs} ms)${index >= 0 ? ` (task ${index})` : ''}.`, index >= 0 ? { index } : {});

  /** Schedules tasks that all belong to one partition, in one script call. */
  const schedulePartition = async (partition: number, items: { task: NewTask; id: string; index: number }[]) => {
    const keyList = [keys.schedule(partition)];
    const args: (string | number)[] = [settings.horizonMs, keys.wakeChannel, partition, keys.taskPrefix(partition)];
    for (const { task, id } of items) {
      keyList.push(keys.task(partition, id));
      keyList.push(task.idempotencyKey === undefined ? keys.task(partition, id) : keys.idempotency(partition, task.idempotencyKey));
      args.push(id, task.message, task.time, task.idempotencyKey ?? '');
    }
    const reply = (await reachRedis(() => runScript(redis, 'schedule', keyList, args))) as (string | number)[];
    const [code] = reply;
    if (code === 'TIME_TOO_FAR') throw tooFar(items[Number(reply[1]) - 1]!.index);
    if (code === 'IDEMPOTENCY_CONFLICT') {
      const index = items[Number(reply[1]) - 1]!.index;
      throw new SchedulerError(
        'IDEMPOTENCY_CONFLICT',
        `The idempotency key is already used by task "${reply[2]}" with another message or time.`,
        { index, id: String(reply[2]) },
      );
    }
    const createdAt = Number(reply[1]);
    return items.map(({ task, index }, i) => ({
      id: String(reply[2 + 2 * i]),
      created: Number(reply[3 + 2 * i]) === 1,
      task,
      createdAt,
      index,
    }));
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
      tasks.forEach((task, index) => checkNewTask(task, settings, tasks.length > 1 ? index : -1));
      const byPartition = new Map<number, { task: NewTask; id: string; index: number }[]>();
      tasks.forEach((task, index) => {
        const id = newTaskId(keys.partitions, task.idempotencyKey);
        const partition = partitionOf(id, keys.partitions)!;
        const items = byPartition.get(partition) ?? [];
        items.push({ task, id, index: tasks.length > 1 ? index : -1 });
        byPartition.set(partition, items);
      });
      if (byPartition.size > 1) {
        // Each partition's share is one atomic call; checking the horizon first keeps a
        // refused bulk from writing the shares that came before the bad task.
        const limit = (await reachRedis(() => redisTimeMs(redis))) + settings.horizonMs;
        const far = tasks.findIndex((task) => task.time > limit);
        if (far >= 0) throw tooFar(far);
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
      const hash = await reachRedis(() => redis.hgetallBuffer(keys.task(partition, id)));
      return taskFromBufferHash(id, hash);
    },

    async getMany(ids) {
      return Promise.all(ids.map((id) => store.get(id)));
    },

    async cancel(id) {
      const partition = partitionOrThrow(id);
      const reply = (await reachRedis(() =>
        runScript(redis, 'cancel', [keys.schedule(partition), keys.task(partition, id), keys.totals(partition), keys.cancelled(partition)], [id, settings.retentionMs, keys.idempotencyPrefix(partition)]),
      )) as string[];
      const [code, ...pairs] = reply;
      if (code !== 'OK') throw refusal(code!, id, pairs);
      return taskFromPairs(id, pairs)!;
    },

    async reschedule(id, time) {
      if (!Number.isSafeInteger(time)) throw new SchedulerError('BAD_USER_INPUT', 'The time must be a whole number of milliseconds.');
      const partition = partitionOrThrow(id);
      const reply = (await reachRedis(() =>
        runScript(redis, 'reschedule', [keys.schedule(partition), keys.task(partition, id)], [id, time, settings.horizonMs, keys.wakeChannel, partition]),
      )) as string[];
      const [code, ...pairs] = reply;
      if (code !== 'OK') throw refusal(code!, id, pairs);
      return taskFromPairs(id, pairs)!;
    },
  };
  return store;
}
