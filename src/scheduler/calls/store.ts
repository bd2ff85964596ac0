/**
 * The task store's script calls, typed: which KEYS and ARGV schedule, cancel, reschedule and
 * read take (see their .lua headers) and what their replies hold. A write is built here
 * without its deadline: tasks.ts sends it under one (redis-clock.ts), which goes first in ARGV.
 */
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from '../../redis.js';
import type { Keys } from '../keys.js';
import { newCallId } from '../keys.js';
import { runScript } from '../scripts.js';
import type { WriteReply } from '../redis-clock.js';
import { type Task, taskFromPairs } from '../task.js';

/** A write script's call, all but its deadline. */
export interface WriteCall {
  name: 'schedule' | 'cancel' | 'reschedule';
  keys: string[];
  args: (string | number)[];
}

/** Calls a write on a connection, or queues it on a pipeline, under a deadline in Redis time. */
export function sendWrite(client: RedisClient | ChainableCommander, call: WriteCall, deadline: number): Promise<WriteReply> {
  return runScript(client, call.name, call.keys, [deadline, ...call.args]) as Promise<WriteReply>;
}

/** A task to store, its id chosen by the caller (so the call sent again finds it). */
export interface ScheduleItem {
  id: string;
  message: string;
  time: number;
  idempotencyKey?: string | undefined;
}

export interface ScheduleSettings {
  horizonMs: number;
}

/** Stores tasks of one partition (lua/schedule.lua); with 'check', only checks them. */
export function scheduleCall(keys: Keys, partition: number, items: ScheduleItem[], settings: ScheduleSettings, mode: 'write' | 'check'): WriteCall {
  const keyList = [keys.schedule(partition)];
  const args: (string | number)[] = [settings.horizonMs, keys.wakeChannel(partition), partition, keys.taskPrefix(partition), mode];
  for (const { id, message, time, idempotencyKey } of items) {
    keyList.push(keys.task(partition, id));
    keyList.push(idempotencyKey === undefined ? keys.task(partition, id) : keys.idempotency(partition, idempotencyKey));
    args.push(id, message, time, idempotencyKey ?? '');
  }
  return { name: 'schedule', keys: keyList, args };
}

/** What schedule.lua answered; `at` is the position (0-based) of the task it refused. */
export type ScheduleOutcome =
  | { code: 'OK'; now: number; stored: { id: string; created: boolean }[] }
  | { code: 'TIME_TOO_FAR'; at: number }
  | { code: 'IDEMPOTENCY_CONFLICT'; at: number; holder: string };

export function decodeSchedule([code, now, ...rest]: WriteReply): ScheduleOutcome {
  if (code === 'TIME_TOO_FAR') return { code, at: Number(rest[0]) - 1 };
  if (code === 'IDEMPOTENCY_CONFLICT') return { code, at: Number(rest[0]) - 1, holder: String(rest[1]) };
  const stored: { id: string; created: boolean }[] = [];
  for (let i = 0; i < rest.length; i += 2) stored.push({ id: String(rest[i]), created: Number(rest[i + 1]) === 1 });
  return { code: 'OK', now: Number(now), stored };
}

/** Cancels a task (lua/cancel.lua). */
export function cancelCall(keys: Keys, partition: number, id: string, retentionMs: number): WriteCall {
  return {
    name: 'cancel',
    keys: [keys.schedule(partition), keys.task(partition, id), keys.totals(partition), keys.cancelled(partition), keys.firing(partition)],
    args: [id, retentionMs, keys.idempotencyPrefix(partition)],
  };
}

/** Moves a task to another time (lua/reschedule.lua); the call's record lives `recordMs`. */
export function rescheduleCall(keys: Keys, partition: number, id: string, time: number, settings: ScheduleSettings, recordMs: number): WriteCall {
  return {
    name: 'reschedule',
    keys: [keys.schedule(partition), keys.task(partition, id), keys.firing(partition), keys.call(partition, newCallId())],
    args: [id, time, settings.horizonMs, keys.wakeChannel(partition), partition, recordMs],
  };
}

/** What cancel.lua or reschedule.lua answered: a code, and the task as it is now (field, value pairs). */
export function decodeTaskWrite([code, , ...pairs]: WriteReply): { code: string; pairs: string[] } {
  return { code, pairs: pairs.map(String) };
}

/** Tasks of one partition as readers see them, in one call (lua/read.lua); null for a task that is gone. */
export async function readTasks(redis: RedisClient, keys: Keys, partition: number, ids: string[]): Promise<(Task | null)[]> {
  if (ids.length === 0) return [];
  const replies = (await runScript(redis, 'read', [keys.schedule(partition), keys.firing(partition)], [keys.taskPrefix(partition), ...ids])) as unknown[][];
  return replies.map((pairs, i) => taskFromPairs(ids[i]!, pairs.map(String)));
}
