/**
 * Firing what a call claimed: print it, then commit it. The tasks print in one write; when
 * that write fails, each is tried alone, so a message that cannot print (a poison message)
 * fails only itself: the others are committed, and it spends a delivery of its own (DEAD once
 * it has used them all) and stays FIRING, pending, for the sweep to claim again.
 */
import type { Logger } from '../../log.js';
import type { Printer } from '../print.js';
import type { Acquired, Entries, FiringCalls, FiringTask } from '../calls/firing.js';
import type { Committer } from './committer.js';
import type { Lease } from './holdings.js';

export interface FirerStats {
  /** Tasks printed (a redelivered task counts again). */
  printed: number;
  /** Tasks whose completion this worker committed. */
  fired: number;
  dead: number;
  /** Tasks skipped at claim: cancelled, rescheduled or already fired. */
  dropped: number;
  /** Tasks taken over from another worker (or swept). */
  reclaimed: number;
  /** Tasks printed on a second or later delivery. */
  redelivered: number;
  /** Takeovers put off because the worker firing the task may still be alive. */
  deferred: number;
}

export interface BatchFirer {
  /**
   * Prints the claimed tasks the lease holds and sends their commit. Resolves once printed,
   * with the commit under way; the lease is released when the commit is done (or given up).
   */
  fire(acquired: Acquired[], lease: Lease): Promise<{ committed: Promise<void> }>;
}

export function createBatchFirer(printer: Printer, calls: FiringCalls, committer: Committer, stats: FirerStats, log: Logger, onCommitted: (tasks: FiringTask[]) => void): BatchFirer {
  const count = (acquired: Acquired[]) => {
    for (const { dead, dropped, deferred } of acquired) {
      stats.dropped += dropped;
      stats.deferred += deferred;
      if (dead.length === 0) continue;
      stats.dead += dead.length;
      log.error({ tasks: dead }, 'tasks became DEAD after the maximum deliveries');
    }
  };

  /** Prints the tasks: in one write, or one by one when that fails. Answers those that failed alone. */
  const print = async (tasks: FiringTask[]): Promise<FiringTask[]> => {
    try {
      await printer.print(tasks.map((task) => task.message));
      return [];
    } catch (error) {
      if (tasks.length === 1) {
        log.warn({ err: error, task: tasks[0]!.id }, 'a task failed to print; it spends a delivery and is tried again');
        return tasks;
      }
      const failed: FiringTask[] = [];
      for (const task of tasks) failed.push(...(await print([task])));
      return failed;
    }
  };

  /**
   * A failed print costs its task a delivery; should Redis not take that now, the next claim is
   * the same delivery, tried again. Answers the tasks that became DEAD.
   */
  const spend = async (failed: Map<number, FiringTask[]>): Promise<Set<string>> => {
    // An entry names only its failed tasks; it is partial when others of it printed and are being committed.
    const whole: Entries = new Map();
    const partial: Entries = new Map();
    for (const [p, tasks] of failed) {
      const members = new Map<string, string[]>();
      for (const task of tasks) members.set(task.entry, [...(members.get(task.entry) ?? []), task.member]);
      for (const [entry, list] of members) {
        const into = list.length === tasks.find((task) => task.entry === entry)!.entryTasks ? whole : partial;
        into.set(p, [...(into.get(p) ?? []), [entry, list.join(' ')]]);
      }
    }
    try {
      const spent = await calls.spend(whole, partial);
      count(spent);
      return new Set(spent.flatMap(({ dead }) => dead));
    } catch (error) {
      log.warn({ err: error }, 'could not count a failed print as a delivery');
      return new Set();
    }
  };

  /**
   * The printed tasks to commit: an entry is done once its tasks that printed are committed and
   * its tasks that failed became DEAD; one with a failed task still to fire stays pending.
   */
  const toCommit = (tasks: FiringTask[], failed: Set<FiringTask>, dead: Set<string>) => {
    const ended = new Map<string, number>();
    for (const task of failed) if (dead.has(task.id)) ended.set(task.entry, (ended.get(task.entry) ?? 0) + 1);
    return tasks.flatMap((task) => (failed.has(task) ? [] : [ended.has(task.entry) ? { ...task, entryTasks: task.entryTasks - ended.get(task.entry)! } : task]));
  };

  /** The tasks of each partition that pass `keep`. */
  const byPartition = (held: (readonly [number, FiringTask[]])[], keep: (task: FiringTask) => boolean) =>
    new Map(held.map(([p, tasks]) => [p, tasks.filter(keep)] as const).filter(([, tasks]) => tasks.length > 0));

  return {
    async fire(acquired, lease) {
      count(acquired);
      const held = acquired.map(({ partition, tasks }) => [partition, lease.whole ? tasks : tasks.filter((task) => lease.has(partition, task.entry))] as const);
      const failed = new Set(await print(held.flatMap(([, tasks]) => tasks)));
      const dead = failed.size > 0 ? await spend(byPartition(held, (task) => failed.has(task))) : new Set<string>();
      const printed = failed.size > 0 ? held.flatMap(([, tasks]) => tasks.filter((task) => !failed.has(task))) : held.flatMap(([, tasks]) => tasks);
      if (printed.length === 0) {
        lease.release();
        return { committed: Promise.resolve() };
      }
      stats.printed += printed.length;
      for (const task of printed) if (task.attempts > 1) stats.redelivered += 1;
      const batch = failed.size > 0 ? new Map(held.map(([p, tasks]) => [p, toCommit(tasks, failed, dead)] as const).filter(([, tasks]) => tasks.length > 0)) : new Map(held);
      const committed = committer.commit(batch).then(
        (done) => {
          if (!done) return;
          stats.fired += printed.length;
          onCommitted(printed);
        },
        () => {},
      );
      return { committed: committed.finally(() => lease.release()) };
    },
  };
}
