/**
 * The firing path's script calls, typed: which KEYS and ARGV claim, take and complete take
 * (see their .lua headers) and what their replies hold. Every other module calls these and
 * never builds a script's arguments itself.
 *
 * An acquiring call (claim, grab, take) carries a call id and a deadline in Redis time and is
 * sent again under both while its answer is lost (redis-clock.ts): Redis either ran it, and
 * the resend answers what it claimed, or runs it at most once before the deadline.
 */
import type { ChainableCommander } from 'ioredis';
import { type RedisClient, execPerPartition, isCluster } from '../../redis.js';
import type { Keys } from '../keys.js';
import { newCallId, taskIdOfMember } from '../keys.js';
import { runScript } from '../scripts.js';
import type { RedisClock, WriteReply } from '../redis-clock.js';
import type { FiringTimings } from '../timings.js';
import { firedEventList } from '../task.js';

/**
 * Tasks per due entry that reads are sized by: DUE_ENTRY_TASKS's default (`id/g id/g ...`,
 * lua/task-state.lua). An entry costs Redis an XADD, a delivery, an acknowledgement and a
 * trim whatever it holds. Entries of fewer tasks (a trickle, or another setting) are read on
 * until they name the tasks wanted (readUnread in firing.lua).
 */
export const TASKS_PER_ENTRY = 32;

/** The due entries to read for about `tasks` tasks: a count of entries (XREADGROUP COUNT) holds up to TASKS_PER_ENTRY times as many. */
export const entriesFor = (tasks: number) => Math.max(1, Math.ceil(tasks / TASKS_PER_ENTRY));

/** A task a call claimed for this worker to print. */
export interface FiringTask {
  id: string;
  /** The due entry that names it, with other tasks maybe. */
  entry: string;
  /** How many tasks the claim gave to fire from that entry: its commit acknowledges the entry once all of them are in it. */
  entryTasks: number;
  /** The task as its entry names it: the task id and the generation it was promoted at (`id/g`). */
  member: string;
  message: string;
  time: number;
  firedAt: number;
  attempts: number;
  createdAt: number;
}

/** What one acquiring call did in one partition. */
export interface Acquired {
  partition: number;
  tasks: FiringTask[];
  /** Tasks that became DEAD (used up their deliveries). */
  dead: string[];
  /** Tasks skipped without firing: cancelled, rescheduled, gone or already fired. */
  dropped: number;
  /** Tasks handed back (their entry) to another worker that may still be alive. */
  deferred: number;
}

/** Entry id, entry value (`id/generation id/generation ...`) pairs per partition. */
export type Entries = Map<number, [entry: string, task: string][]>;

export interface FiringCallSettings {
  /** Most tasks a promotion puts in one due entry. */
  dueEntryTasks: number;
  maxDeliveries: number;
  retentionMs: number;
  reclaimIdleMs: number;
  firedLogMax: number;
}

export interface PromoteResult {
  moved: number;
  /** Due time of the partition's new head, -1 when its schedule is empty. */
  nextDue: number;
  /** Redis time of the call. */
  now: number;
}

/** What complete.lua did in one partition, or why it did not. */
export type Completed = { error: Error } | { completed: number; already: number };

const decodeCompleted = (reply: unknown): Completed => {
  const [completed, already] = reply as [number, number];
  return { completed, already };
};

/** Values per task in claim.lua's and take.lua's fire list: its member, its message, then its times, attempts and entry. */
const FIRE_TUPLE = 3;

function decodeAcquired(partition: number, [fire, dead, dropped, deferred]: unknown[]): Acquired {
  const flat = fire as string[];
  const tasks: FiringTask[] = [];
  const perEntry = new Map<string, number>();
  for (let i = 0; i < flat.length; i += FIRE_TUPLE) {
    const member = flat[i]!;
    const [time, createdAt, firedAt, attempts, entry] = flat[i + 2]!.split(' ') as [string, string, string, string, string];
    perEntry.set(entry, (perEntry.get(entry) ?? 0) + 1);
    tasks.push({
      id: taskIdOfMember(member),
      entry,
      entryTasks: 0,
      member,
      message: flat[i + 1]!,
      time: Number(time),
      firedAt: Number(firedAt),
      attempts: Number(attempts),
      createdAt: Number(createdAt),
    });
  }
  for (const task of tasks) task.entryTasks = perEntry.get(task.entry)!;
  return { partition, tasks, dead: dead as string[], dropped: dropped as number, deferred: deferred as number };
}

/** Moves what is due in a partition to its due stream, `chunk` tasks per entry at most (promote.lua). */
export async function promote(redis: RedisClient, keys: Keys, p: number, limit: number, chunk: number): Promise<PromoteResult> {
  const [moved, nextDue, now] = (await runScript(redis, 'promote', [keys.schedule(p), keys.due(p)], [limit, chunk])) as [number, number, number];
  return { moved, nextDue, now };
}

export function createFiringCalls(redis: RedisClient, clockOf: (partition: number) => RedisClock, keys: Keys, worker: string, settings: FiringCallSettings, timings: FiringTimings) {
  /** Every call id of this process starts with it (see ARGV[11] in firing.lua). */
  const processPrefix = `${newCallId()}.`;
  const workerJson = JSON.stringify(worker);
  const callIdOf = () => `${processPrefix}${newCallId()}`;
  const acquireKeys = (p: number, callId: string) => [keys.due(p), keys.liveness(p), keys.totals(p), keys.dead(p), keys.call(p, callId), keys.firing(p)];
  const acquireArgs = (p: number, deadline: number, callId: string, sameProcess = processPrefix) => [
    deadline,
    keys.group,
    keys.taskPrefix(p),
    worker,
    settings.maxDeliveries,
    settings.retentionMs,
    keys.idempotencyPrefix(p),
    settings.reclaimIdleMs,
    callId,
    timings.callRecordMs,
    sameProcess,
  ];

  /**
   * One claim per partition under one call id, in one round trip; resent until answered. On a
   * cluster the partitions' masters have clocks of their own: one call per partition, each
   * dated by its master's clock, all sent at once.
   */
  const claimEach = async (partitions: number[], tail: (p: number) => (string | number)[], callId: string, sameProcess?: string): Promise<Acquired[]> => {
    const queue = (client: RedisClient | ChainableCommander, p: number, deadline: number) =>
      runScript(client, 'claim', acquireKeys(p, callId), [...acquireArgs(p, deadline, callId, sameProcess), ...tail(p)]);
    if (partitions.length === 1 || isCluster(redis)) {
      const replies = await Promise.all(partitions.map((p) => clockOf(p).write(timings.acquireBudgetMs, (deadline) => queue(redis, p, deadline))));
      return partitions.flatMap((p, i) => (replies[i]![0] === 'OK' ? [decodeAcquired(p, replies[i]!.slice(2))] : []));
    }
    const reply = await clockOf(partitions[0]!).write(timings.acquireBudgetMs, async (deadline) => {
      const pipeline = redis.pipeline();
      for (const p of partitions) queue(pipeline, p, deadline);
      const replies = (await pipeline.exec()) ?? [];
      const answers = partitions.map((_, i) => {
        const [error, answer] = replies[i] ?? [new Error('no reply')];
        if (error) throw error;
        return answer as WriteReply;
      });
      // The call as a whole is OK when any partition was in time; an expired one claimed nothing.
      const inTime = answers.some(([code]) => code === 'OK');
      return [inTime ? 'OK' : 'EXPIRED', Math.max(...answers.map(([, now]) => Number(now))), answers];
    });
    const answers = reply[2] as unknown as WriteReply[];
    return partitions.flatMap((p, i) => (answers[i]![0] === 'OK' ? [decodeAcquired(p, answers[i]!.slice(2))] : []));
  };

  return {
    /** Claims entries read from the due streams (claim.lua). */
    claim: (entries: Entries, callId = callIdOf()) => claimEach([...entries.keys()], (p) => entries.get(p)!.flat(), callId),

    /** Reads and claims unread entries of each partition until they hold about `tasks` tasks (claim.lua given `unread`). */
    grab: (partitions: number[], tasks: number, callId = callIdOf()) => claimEach(partitions, () => ['unread', entriesFor(tasks), tasks], callId),

    /**
     * Spends a delivery of tasks whose print failed (a claim that counts one whatever call
     * claimed them before): one that used up its deliveries becomes DEAD; the others stay
     * FIRING, pending, for the sweep. `whole` names entries whose every task the claim gave to
     * fire failed: one whose tasks all became DEAD is dropped. `partial` names entries of which
     * other tasks printed and are being committed (claim.lua given `part`): they stay pending.
     */
    async spend(whole: Entries, partial: Entries): Promise<Acquired[]> {
      const spent = await Promise.all([
        whole.size > 0 ? claimEach([...whole.keys()], (p) => whole.get(p)!.flat(), callIdOf(), '') : [],
        partial.size > 0 ? claimEach([...partial.keys()], (p) => ['part', ...partial.get(p)!.flat()], callIdOf(), '') : [],
      ]);
      return spent.flat();
    },

    /** Promotes a partition and claims what came due, about `fireLimit` tasks (take.lua); past the budget, rejects with UNAVAILABLE. */
    async take(p: number, promoteLimit: number, fireLimit: number): Promise<{ result: PromoteResult; acquired: Acquired }> {
      const callId = callIdOf();
      const reply = await clockOf(p).write(timings.acquireBudgetMs, (deadline) =>
        runScript(redis, 'take', [...acquireKeys(p, callId), keys.schedule(p)], [...acquireArgs(p, deadline, callId), promoteLimit, entriesFor(fireLimit), settings.dueEntryTasks, fireLimit]),
      );
      const [, now, moved, nextDue, ...claim] = reply as unknown[];
      return { result: { moved: moved as number, nextDue: nextDue as number, now: now as number }, acquired: decodeAcquired(p, claim) };
    },

    /**
     * Commits printed tasks, one complete.lua per partition in one round trip; what each
     * partition's call did. An entry is acknowledged when every task its claim gave to fire is
     * in the commit; one whose failed task is left out stays pending.
     */
    async complete(batch: Map<number, FiringTask[]>): Promise<Map<number, Completed>> {
      const order = [...batch.keys()];
      const queue = (client: RedisClient | ChainableCommander, p: number) => {
        const tasks = batch.get(p)!;
        const events = tasks.map((task) => eventJson(task, workerJson));
        const args: (string | number)[] = [
          keys.group,
          keys.taskPrefix(p),
          keys.firedChannel(p),
          settings.firedLogMax,
          settings.retentionMs,
          keys.idempotencyPrefix(p),
          p,
          worker,
          firedEventList(events),
        ];
        const done = doneEntries(tasks);
        args.push(done.length, ...done);
        pushRuns(args, tasks, events);
        return runScript(client, 'complete', [keys.due(p), keys.fired(p), keys.totals(p), keys.firing(p)], args);
      };
      // One partition (the usual case when tasks trickle in) needs no pipeline, which costs more client CPU than the call.
      if (order.length === 1) {
        const p = order[0]!;
        return new Map([[p, await queue(redis, p).then(decodeCompleted, (error: Error) => ({ error }))]]);
      }
      const replies = await execPerPartition(redis, order, queue).catch((error: Error) => order.map(() => [error, null] as [Error, null]));
      return new Map(
        order.map((p, i) => {
          const [error, reply] = replies?.[i] ?? [new Error('no reply'), null];
          return [p, error ? { error } : decodeCompleted(reply)];
        }),
      );
    },
  };
}

export type FiringCalls = ReturnType<typeof createFiringCalls>;

/** The entries a commit of `tasks` finishes: those with every task their claim gave to fire among them. */
export function doneEntries(tasks: FiringTask[]): string[] {
  const left = new Map<string, number>();
  for (const task of tasks) left.set(task.entry, (left.get(task.entry) ?? task.entryTasks) - 1);
  return [...left].flatMap(([entry, missing]) => (missing === 0 ? [entry] : []));
}

/**
 * Appends complete.lua's task runs to `args`: per run of tasks claimed with the same attempt
 * and fired-at time, its count, attempt and fired-at, then each task's id and event length.
 */
function pushRuns(args: (string | number)[], tasks: FiringTask[], events: string[]): void {
  let countAt = -1;
  for (const [i, task] of tasks.entries()) {
    const previous = tasks[i - 1];
    if (!previous || previous.attempts !== task.attempts || previous.firedAt !== task.firedAt) {
      countAt = args.length;
      args.push(0, task.attempts, task.firedAt);
    }
    (args[countAt] as number)++;
    args.push(task.id, Buffer.byteLength(events[i]!));
  }
}

/**
 * The event complete.lua logs and publishes, built from what the claim returned. Written out
 * rather than JSON.stringify'd as an object, since this runs for every task a worker fires: a
 * task id needs no escaping (keys.ts), and `workerJson` is the worker's name as JSON, made once.
 */
export function eventJson(task: FiringTask, workerJson: string): string {
  return `{"id":"${task.id}","message":${JSON.stringify(task.message)},"time":${task.time},"createdAt":${task.createdAt},"firedAt":${task.firedAt},"attempts":${task.attempts},"firedBy":${workerJson}}`;
}
