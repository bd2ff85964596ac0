/**
 * Firing: read a batch of due entries (one blocking XREADGROUP over every partition), claim
 * it (one script call per partition, pipelined), print it (one write), complete it (one
 * script call per partition, pipelined). The next batch is read and claimed while one
 * prints, and a batch commits while the next prints: Redis works on one while this process
 * works on the other. While a backlog lasts (the last step found entries), the next batch
 * is read and claimed in one call per partition (claim.lua given `unread`), sent as soon as
 * a batch arrives, so Redis claims it while this process prints. When the promoter's timer
 * finds this worker without a batch in hand, it promotes and claims in one call (`take`),
 * and the tasks print at once. Recovery fires this worker's own abandoned entries, and
 * takes over entries another worker left unacknowledged longer than the reclaim idle time
 * (XAUTOCLAIM).
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';
import { runScript } from './scripts.js';
import type { Printer } from './print.js';
import { isConnectionFailure } from './errors.js';
import type { Logger } from '../log.js';
import { COMMAND_TIMEOUT_MS } from '../redis.js';
import { randomBytes } from 'node:crypto';
import type { Take } from './promoter.js';
import { firedEventList } from './task.js';

export interface FirerSettings {
  fireBatch: number;
  readBlockMs: number;
  reclaimIdleMs: number;
  maxDeliveries: number;
  retentionMs: number;
  firedLogMax: number;
}

export interface FirerStats {
  /** Tasks printed (a redelivered task counts again). */
  printed: number;
  /** Tasks whose completion this worker committed. */
  fired: number;
  dead: number;
  /** Entries dropped at claim: cancelled, rescheduled or already fired. */
  dropped: number;
  /** Entries taken over from another worker. */
  reclaimed: number;
  /** Tasks printed on a second or later delivery. */
  redelivered: number;
  /** Takeovers put off because the worker firing the task may still be alive. */
  deferred: number;
}

export interface FiredTask {
  id: string;
  message: string;
  time: number;
  createdAt: number;
  firedAt: number;
  attempts: number;
}

export interface Firer {
  start(): Promise<void>;
  /** Stops reading, finishes and commits the batch in hand, then leaves the group if nothing is pending. */
  stop(): Promise<void>;
  readonly stats: FirerStats;
  /** Local clock (ms) when the fire loop last began a round; 0 before start. Readiness uses it to spot a stalled loop. */
  readonly lastLoopAt: number;
  /** Called after each committed batch; the metrics use it. */
  onFired?: (tasks: FiredTask[]) => void;
  /** The promoter's way to promote a partition and fire it in one call when this worker is idle (see take.lua). */
  take: Take;
}

/** Fields per task in claim.lua's (and take.lua's) fire list: task id, entry id, message, due, fired-at, attempts, created-at. */
const FIRE_TUPLE = 7;

/** Entry id and task id, per partition. */
type Batch = Map<number, [string, string][]>;
/** Entry id, task id, attempt claimed and event JSON, per partition: what complete.lua takes. */
type Completions = Map<number, [string, string, number, string][]>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function createFirer(
  redis: Redis,
  blocking: Redis,
  keys: Keys,
  name: string,
  printer: Printer,
  settings: FirerSettings,
  log: Logger,
): Firer {
  let stopping = false;
  let loop: Promise<void> | undefined;
  let reclaimTimer: NodeJS.Timeout | undefined;
  let reclaiming: Promise<void> | undefined;
  let blockingClientId: number | undefined;
  let failing = false;
  let lastLoopAt = 0;
  /** Entries some step of this worker is firing right now. */
  const inFlight = new Set<string>();
  /**
   * Entries whose print failed here, and when: refireOwn fires them one at a time, so a
   * poison message spends only its own deliveries, whatever its batch-mates' counts say.
   */
  const printFailed = new Map<string, number>();
  const dueKeys = Array.from({ length: keys.partitions }, (_, p) => keys.due(p));
  const stats: FirerStats = { printed: 0, fired: 0, dead: 0, dropped: 0, reclaimed: 0, redelivered: 0, deferred: 0 };

  const ensureGroups = async () => {
    for (const key of dueKeys) {
      await redis.xgroup('CREATE', key, keys.group, '0', 'MKSTREAM').catch((error: Error) => {
        if (!/BUSYGROUP/.test(error.message)) throw error;
      });
    }
  };

  const reportFailure = (error: unknown, what: string) => {
    if (/NOGROUP/.test(String(error))) return;
    if (!failing) {
      failing = true;
      log.warn({ err: error }, `${what} failed; retrying`);
    }
  };

  /** Runs one script per partition in a single round trip; any failure fails the whole. */
  const perPartition = async (
    batch: Map<number, (string | number)[][]>,
    script: 'claim' | 'complete',
    keysOf: (p: number) => string[],
    argsOf: (p: number) => (string | number)[],
  ) => {
    const order = [...batch.keys()];
    // One partition (the usual case when tasks trickle in) needs no pipeline, which costs
    // more client CPU than the call itself.
    if (order.length === 1) {
      const p = order[0]!;
      return [[p, await runScript(redis, script, keysOf(p), [...argsOf(p), ...batch.get(p)!.flat()])] as const];
    }
    const pipeline = redis.pipeline();
    for (const p of order) runScript(pipeline, script, keysOf(p), [...argsOf(p), ...batch.get(p)!.flat()]);
    const replies = (await pipeline.exec()) ?? [];
    return order.map((p, i) => {
      const [error, reply] = replies[i] ?? [new Error('no reply')];
      if (error) throw error;
      return [p, reply] as const;
    });
  };

  /**
   * Retries an idempotent step while Redis is unreachable, for up to budgetMs. Claim and
   * complete both are: a repeated claim by the same worker re-claims, a repeated complete
   * only acknowledges. Giving up leaves the entries pending, for a reclaim.
   */
  const retrying = async <T>(step: () => Promise<T>, budgetMs: number): Promise<T> => {
    const deadline = Date.now() + budgetMs;
    for (;;) {
      try {
        return await step();
      } catch (error) {
        if (!isConnectionFailure(error) || Date.now() > deadline) throw error;
        reportFailure(error, 'a Redis call');
        await sleep(200);
      }
    }
  };

  /** The batch is printed and only this commits it, so it is retried long after a claim would be. */
  const complete = (batch: Completions) =>
    retrying(
      () =>
        perPartition(
          batch,
          'complete',
          (p) => [keys.due(p), keys.fired(p), keys.totals(p)],
          (p) => [
            keys.group,
            keys.taskPrefix(p),
            keys.firedChannel,
            settings.firedLogMax,
            settings.retentionMs,
            keys.idempotencyPrefix(p),
            p,
            name,
            firedEventList(batch.get(p)!.map(([, , , event]) => event)),
          ],
        ),
      Math.max(30_000, 5 * settings.reclaimIdleMs),
    );

  /** The event complete.lua logs and publishes, built from the claim's reply (see complete.lua). */
  const eventJson = (task: FiredTask) =>
    JSON.stringify({
      id: task.id,
      message: task.message,
      time: task.time,
      createdAt: task.createdAt,
      firedAt: task.firedAt,
      lateByMs: task.firedAt - task.time,
      attempts: task.attempts,
      firedBy: name,
      status: 'FIRED',
    });

  /** The claim replies of one step, per partition: [fire, dead, dropped, deferred] as claim.lua replies. */
  type Claimed = (readonly [number, unknown])[];

  /** Commits sent and not yet answered; stop waits for them. */
  const commits = new Set<Promise<void>>();
  /**
   * Batches read from the streams and not yet printed. While there is one, this worker is
   * busy with a backlog: `take` then leaves what comes due to the streams, where any idle
   * worker reads it. Takes themselves may overlap (one per partition at most).
   */
  let batchesInHand = 0;
  /**
   * A take whose answer is lost (a timeout) may still have claimed entries, which then wait
   * for fireLostTake or refireOwn. So after a failed take, and while Redis calls fail,
   * promotion goes the plain way, which delays nothing when its answer is lost.
   */
  let takesSuspendedUntil = 0;
  /**
   * Claim and take call ids: unique to this process, so a restarted worker of the same name
   * never mistakes an old record for its own. A call sent again after its answer was lost
   * keeps its id, and claims again what it claimed without counting a delivery.
   */
  const callNonce = randomBytes(4).toString('hex');
  let calls = 0;
  const newCallId = () => `${callNonce}-${++calls}`;

  /**
   * Prints what a claim returned, then sends the commit. Resolves once printed, with the
   * commit under way: its promise resolves when Redis has it (or the retries gave up; it
   * never rejects). The entries stay marked in flight until then, and are released whatever
   * happens: an entry left pending is fired again by refireOwn.
   */
  const printAndCommit = async (claimed: Claimed, entryIds: Iterable<string>): Promise<{ committed: Promise<void> }> => {
    const release = () => {
      for (const entry of entryIds) inFlight.delete(entry);
    };
    const toPrint: FiredTask[] = [];
    const completions: Completions = new Map();
    try {
      for (const [p, reply] of claimed) {
        const [fireList, deadList, dropped, deferred] = reply as [(string | number)[], string[], number, number];
        stats.dropped += dropped;
        stats.deferred += deferred;
        if (deadList.length > 0) {
          stats.dead += deadList.length;
          log.error({ tasks: deadList, maxDeliveries: settings.maxDeliveries }, 'tasks became DEAD after the maximum deliveries');
        }
        const entries: [string, string, number, string][] = [];
        for (let i = 0; i < fireList.length; i += FIRE_TUPLE) {
          const [id, entry, message, time, firedAt, attempts, createdAt] = fireList.slice(i, i + FIRE_TUPLE) as [string, string, string, number, number, number, number];
          const task: FiredTask = { id, message, time, createdAt, firedAt, attempts };
          toPrint.push(task);
          entries.push([entry, id, attempts, eventJson(task)]);
        }
        if (entries.length > 0) completions.set(p, entries);
      }
      if (toPrint.length > 0) await printer.print(toPrint.map((task) => task.message));
    } catch (error) {
      const failedAt = Date.now();
      for (const entry of entryIds) printFailed.set(entry, failedAt);
      release();
      throw error;
    }
    if (toPrint.length === 0) {
      release();
      return { committed: Promise.resolve() };
    }
    stats.printed += toPrint.length;
    for (const task of toPrint) if (task.attempts > 1) stats.redelivered += 1;
    const committed = complete(completions)
      .then((completed) => {
        for (const [, reply] of completed) stats.fired += (reply as [number, number])[0];
        firer.onFired?.(toPrint);
      })
      .catch((error: unknown) => reportFailure(error, 'committing a printed batch'))
      .finally(() => {
        release();
        commits.delete(committed);
      });
    commits.add(committed);
    return { committed };
  };

  const claimKeys = (p: number) => [keys.due(p), keys.liveness(p), keys.totals(p), keys.dead(p)];
  const claimArgs = (callId: string) => (p: number) => [
    keys.group,
    keys.taskPrefix(p),
    name,
    settings.maxDeliveries,
    settings.retentionMs,
    keys.idempotencyPrefix(p),
    settings.reclaimIdleMs,
    callId,
  ];

  interface ClaimedBatch {
    claimed: Claimed;
    entryIds: string[];
  }

  /** Claims a batch read from the streams. Its entries stay in flight, and it counts as in hand until printClaimed is done with it. */
  const claimBatch = async (batch: Batch, callId = newCallId()): Promise<ClaimedBatch> => {
    const entryIds = [...batch.values()].flat().map(([entry]) => entry);
    for (const entry of entryIds) inFlight.add(entry);
    batchesInHand += 1;
    try {
      const claimed = await retrying(() => perPartition(batch, 'claim', claimKeys, claimArgs(callId)), settings.reclaimIdleMs);
      return { claimed, entryIds };
    } catch (error) {
      for (const entry of entryIds) inFlight.delete(entry);
      batchesInHand -= 1;
      throw error;
    }
  };

  const printClaimed = async ({ claimed, entryIds }: ClaimedBatch) => {
    try {
      return await printAndCommit(claimed, entryIds);
    } finally {
      batchesInHand -= 1;
    }
  };

  /** Claims and prints a batch; see printAndCommit for what it resolves with. */
  const fire = async (batch: Batch, callId?: string): Promise<{ committed: Promise<void> }> => printClaimed(await claimBatch(batch, callId));

  /**
   * Promotes a partition and fires what came due in the same call (take.lua), unless this
   * worker has a batch from the streams in hand, is stopping, or takes are suspended. Resolves with the
   * promotion's result once Redis answered, the print under way; undefined when busy, for a
   * plain promote.
   */
  const take: Take = async (partition, promoteLimit, claimUntil) => {
    if (batchesInHand > 0 || stopping || failing || Date.now() < takesSuspendedUntil) return undefined;
    const calledAt = Date.now();
    const callId = newCallId();
    const reply = (await runScript(
      redis,
      'take',
      [keys.schedule(partition), keys.due(partition), keys.liveness(partition), keys.lastTake(partition, name), keys.totals(partition), keys.dead(partition)],
      [
        promoteLimit,
        keys.taskPrefix(partition),
        keys.group,
        name,
        settings.maxDeliveries,
        settings.retentionMs,
        keys.idempotencyPrefix(partition),
        settings.reclaimIdleMs,
        settings.fireBatch,
        Math.round(claimUntil),
        callId,
        Math.max(10_000, 2 * settings.reclaimIdleMs),
      ],
    ).catch(async (error: unknown) => {
      takesSuspendedUntil = Date.now() + settings.reclaimIdleMs;
      await fireLostTake(partition, callId, calledAt).catch((failure: unknown) => reportFailure(failure, 'firing what a lost take claimed'));
      throw error;
    })) as [number, number, number, ...unknown[]];
    const [moved, nextDue, now, ...claim] = reply;
    const fireList = claim[0] as (string | number)[];
    const entryIds: string[] = [];
    for (let i = 1; i < fireList.length; i += FIRE_TUPLE) entryIds.push(String(fireList[i]));
    for (const entry of entryIds) inFlight.add(entry);
    const printed = printAndCommit([[partition, claim]], entryIds).then(
      () => {},
      (error: unknown) => reportFailure(error, 'firing what a promotion took'),
    );
    return { result: { moved, nextDue, now }, printed };
  };

  /**
   * A take whose answer was lost may have claimed entries for this worker. Once its claim
   * deadline has passed (in Redis, nothing more can claim in its name), its last-take key
   * says what it claimed, if anything: fire those now rather than wait for refireOwn. No
   * other take in the partition can be in flight meanwhile: promotion of a partition is
   * serial, and this runs inside the failed one.
   */
  const fireLostTake = async (partition: number, callId: string, calledAt: number) => {
    // The deadline is half the command timeout after the call, by Redis time; a margin covers the offset's error.
    await sleep(calledAt + COMMAND_TIMEOUT_MS / 2 + 100 - Date.now());
    const record = await retrying(() => redis.get(keys.lastTake(partition, name)), settings.reclaimIdleMs);
    const [id, ...flat] = (record ?? '').split(' ');
    if (id !== callId || flat.length === 0) return;
    const entries: [string, string][] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) entries.push([flat[i]!, flat[i + 1]!]);
    const lost = entries.filter(([entry]) => !inFlight.has(entry));
    log.info({ partition, entries: lost.length }, 'firing what a take whose answer was lost had claimed');
    // Under the take's call id: the same delivery, not another.
    if (lost.length > 0) await fire(new Map([[partition, lost]]), callId);
  };

  const readBatch = async (): Promise<Batch | null> => {
    const reply = (await blocking.xreadgroup(
      'GROUP',
      keys.group,
      name,
      'COUNT',
      settings.fireBatch,
      'BLOCK',
      settings.readBlockMs,
      'STREAMS',
      ...dueKeys,
      ...dueKeys.map(() => '>'),
    )) as [string, [string, string[]][]][] | null;
    if (!reply) return null;
    const batch: Batch = new Map();
    for (const [key, entries] of reply) {
      const p = dueKeys.indexOf(key);
      const list = entries.filter(([, fields]) => fields).map(([entry, fields]) => [entry, fields[1]!] as [string, string]);
      if (list.length > 0) batch.set(p, list);
    }
    return batch;
  };

  /**
   * Reads and claims the next batch in one call per partition (claim.lua given `unread`),
   * for a backlog; null when no partition had an unread entry. Not retried: one whose answer
   * is lost leaves what it claimed pending, unprinted, for refireOwn.
   */
  const grabBatch = async (): Promise<ClaimedBatch | null> => {
    const count = Math.ceil(settings.fireBatch / keys.partitions);
    const unread = new Map(dueKeys.map((_, p) => [p, [['unread', count]]]));
    const claimed = await perPartition(unread, 'claim', claimKeys, claimArgs(newCallId()));
    const entryIds: string[] = [];
    let found = 0;
    for (const [, reply] of claimed) {
      const [fireList, deadList, dropped, deferred] = reply as [(string | number)[], string[], number, number];
      for (let i = 1; i < fireList.length; i += FIRE_TUPLE) entryIds.push(String(fireList[i]));
      found += fireList.length / FIRE_TUPLE + deadList.length + dropped + deferred;
    }
    if (found === 0) return null;
    for (const entry of entryIds) inFlight.add(entry);
    batchesInHand += 1;
    return { claimed, entryIds };
  };

  /** Whether the last step found entries: then the next grabs, since more are likely waiting. */
  let backlog = false;

  /**
   * The next batch, claimed: grabbed while there is a backlog, else from the blocking read
   * and then claimed; null when the read found nothing. Never rejects: the loop takes the
   * error in turn.
   */
  const readAndClaim = async (): Promise<{ batch: ClaimedBatch | null } | { error: unknown }> => {
    try {
      let batch = backlog ? await grabBatch() : null;
      if (!batch) {
        const read = await readBatch();
        batch = read && read.size > 0 ? await claimBatch(read) : null;
      }
      backlog = batch !== null;
      return { batch };
    } catch (error) {
      backlog = false;
      return { error };
    }
  };

  /**
   * The fire loop. The next batch is read and claimed while the one in hand prints, and
   * commits while the next prints: Redis works on one batch while this process works on
   * another, instead of each waiting for the other.
   */
  const run = async () => {
    /** The last batch's commit; at most one more is sent before it is answered. */
    let committing: Promise<void> = Promise.resolve();
    let next = readAndClaim();
    for (;;) {
      lastLoopAt = Date.now();
      const outcome = await next;
      const batch = 'batch' in outcome ? outcome.batch : null;
      // Entries read are pending for this worker: fire them even when stopping.
      if (stopping && !batch) break;
      if ('error' in outcome) {
        const { error } = outcome;
        if (stopping && /Connection is closed/.test(String(error))) break;
        reportFailure(error, 'firing');
        if (/NOGROUP/.test(String(error))) await ensureGroups().catch(() => {});
        await sleep(isConnectionFailure(error) ? 200 : 1000);
      } else if (failing) {
        failing = false;
        log.info('firing resumed');
      }
      next = stopping ? Promise.resolve({ batch: null }) : readAndClaim();
      if (!batch) continue;
      try {
        const { committed } = await printClaimed(batch);
        await committing;
        committing = committed;
      } catch (error) {
        // The print failed: the entries stay pending, and refireOwn fires them one by one.
        reportFailure(error, 'printing');
        await sleep(1000);
      }
    }
    await committing;
  };

  /** One at a time: a task that made its batch fail (a poison message) must not take its batch-mates down with it again. */
  const fireOneByOne = async (p: number, list: [string, string][]) => {
    for (const entry of list) {
      if (stopping) break;
      await fire(new Map([[p, [entry]]])).then(
        ({ committed }) => committed,
        (error: unknown) => reportFailure(error, 'firing a reclaimed task'),
      );
    }
  };

  const entriesOf = (entries: [string, string[] | null][]) =>
    entries.filter(([, fields]) => fields).map(([entry, fields]) => [entry, fields![1]!] as [string, string]);

  /**
   * This worker's own entries that no step of it is working on: a batch it gave up on
   * (Redis unreachable for longer than a claim may wait), or one another worker handed
   * back because this one is alive. Only this worker fires them, so nobody prints twice.
   */
  const refireOwn = async (p: number) => {
    const pending = (await redis.xpending(keys.due(p), keys.group, 'IDLE', Math.floor(settings.reclaimIdleMs / 2), '-', '+', settings.fireBatch, name)) as [
      string,
      string,
      number,
      number,
    ][];
    const abandoned = pending.filter(([entry]) => !inFlight.has(entry));
    if (abandoned.length === 0) return;
    const entries = entriesOf((await redis.xclaim(keys.due(p), keys.group, name, 0, ...abandoned.map(([entry]) => entry))) as [string, string[] | null][]);
    log.info({ partition: p, entries: entries.length }, 'firing entries this worker had left unfinished');
    // Entries delivered once (a step whose answer was lost: many, after a Redis outage) fire
    // as one batch; entries already fired again once, one at a time.
    const retried = new Set(abandoned.filter(([, , , deliveries]) => deliveries > 1).map(([entry]) => entry));
    await fireLeftovers(p, entries, (entry) => !retried.has(entry));
  };

  /**
   * Fires entries left unfinished. Those a call of this process claimed and never printed
   * (its answer was lost) fire as a batch per call, under its id: no new delivery. Of the
   * others, those `together` says fire as one batch; the rest, a print that failed among
   * them, one at a time, so a poison message fails only itself.
   */
  const fireLeftovers = async (p: number, found: [string, string][], together: (entry: string) => boolean) => {
    // Held at once, before any await: a lost take's recovery may be after the same entries,
    // and two steps of this worker firing one entry would print it twice.
    const entries = found.filter(([entry]) => !inFlight.has(entry));
    const held = new Set(entries.map(([entry]) => entry));
    for (const entry of held) inFlight.add(entry);
    /** Hands entries to a firing step, which releases them when it is done. */
    const handOver = (list: [string, string][]) => {
      for (const [entry] of list) held.delete(entry);
      return list;
    };
    try {
      const groups = await byOwnCall(p, entries.filter(([entry]) => !printFailed.has(entry)));
      const alone = entries.filter(([entry]) => printFailed.has(entry));
      // Forgotten before they fire again: a print that fails again marks its entries again.
      for (const [entry] of entries) printFailed.delete(entry);
      for (const [callId, list] of groups) {
        const batch = callId ? list : list.filter(([entry]) => together(entry));
        if (!callId) alone.push(...list.filter(([entry]) => !together(entry)));
        if (batch.length > 0) await fire(new Map([[p, handOver(batch)]]), callId).then(({ committed }) => committed);
      }
      await fireOneByOne(p, handOver(alone));
    } finally {
      for (const entry of held) inFlight.delete(entry);
    }
  };

  /**
   * Groups entries by the call of this process that claimed them, if one did: that call's
   * answer was lost, so they never printed, and fired again under its id they count no new
   * delivery. The others (claimed by no call, or by an earlier process of this name, which
   * may have died printing them) go under a new id and count one.
   */
  const byOwnCall = async (p: number, list: [string, string][]): Promise<Map<string | undefined, [string, string][]>> => {
    const groups = new Map<string | undefined, [string, string][]>();
    if (list.length === 0) return groups;
    const pipeline = redis.pipeline();
    for (const [, id] of list) pipeline.hget(keys.task(p, id), 'ci');
    const replies = (await pipeline.exec()) ?? [];
    list.forEach((entry, i) => {
      const [error, ci] = replies[i] ?? [new Error('no reply')];
      // Not knowing the call, the entry would spend a delivery: better to try again later.
      if (error) throw error;
      const callId = typeof ci === 'string' && ci.startsWith(`${callNonce}-`) ? ci : undefined;
      const group = groups.get(callId);
      if (group) group.push(entry);
      else groups.set(callId, [entry]);
    });
    return groups;
  };

  /** Forgets failed prints of entries this worker no longer holds (another worker took them over). */
  const forgetOldPrintFailures = () => {
    const before = Date.now() - Math.max(60_000, 10 * settings.reclaimIdleMs);
    for (const [entry, failedAt] of printFailed) if (failedAt < before) printFailed.delete(entry);
  };

  const reclaim = async () => {
    forgetOldPrintFailures();
    for (let p = 0; p < keys.partitions && !stopping; p++) {
      await refireOwn(p);
      let cursor = '0-0';
      // Bounded per round so one worker does not stall on a huge backlog of abandoned entries.
      for (let round = 0; round < 10 && !stopping; round++) {
        const [next, entries] = (await redis.xautoclaim(keys.due(p), keys.group, name, settings.reclaimIdleMs, cursor, 'COUNT', settings.fireBatch)) as [
          string,
          [string, string[] | null][],
        ];
        const list = entriesOf(entries);
        if (list.length > 0) {
          stats.reclaimed += list.length;
          log.info({ partition: p, entries: list.length }, 'reclaimed entries left unacknowledged past the reclaim idle time');
          // Idle this long, this worker's own entries come here too.
          await fireLeftovers(p, list, () => false);
        }
        cursor = next;
        if (cursor === '0-0') break;
      }
    }
  };

  const scheduleReclaim = () => {
    reclaimTimer = setTimeout(
      () => {
        reclaiming = reclaim()
          .catch((error) => reportFailure(error, 'reclaim'))
          .finally(() => {
            reclaiming = undefined;
            if (!stopping) scheduleReclaim();
          });
      },
      Math.max(Math.floor(settings.reclaimIdleMs / 2), 100),
    );
  };

  const rememberClientId = () => {
    blocking.client('ID').then(
      (id) => (blockingClientId = Number(id)),
      () => (blockingClientId = undefined),
    );
  };

  const firer: Firer = {
    stats,
    take,
    get lastLoopAt() {
      return lastLoopAt;
    },
    async start() {
      stopping = false;
      await ensureGroups();
      blocking.on('ready', rememberClientId);
      if (blocking.status === 'ready') rememberClientId();
      else await blocking.connect().catch(() => {});
      loop = run();
      scheduleReclaim();
    },
    async stop() {
      stopping = true;
      clearTimeout(reclaimTimer);
      // Wake the blocking read without losing what it may deliver: CLIENT UNBLOCK makes it
      // return empty; were the connection cut instead, a delivered batch would wait for a reclaim.
      if (blockingClientId !== undefined) await redis.client('UNBLOCK', blockingClientId).catch(() => {});
      const finished = await Promise.race([loop?.then(() => true), sleep(settings.readBlockMs + 5000).then(() => false)]);
      if (!finished) log.warn('the fire loop did not finish in time; its batch will be reclaimed');
      await reclaiming;
      await Promise.all(commits);
      blocking.off('ready', rememberClientId);
      // Leave the group only with nothing pending: deleting a consumer drops its pending entries.
      try {
        for (const key of dueKeys) {
          const summary = (await redis.xpending(key, keys.group, '-', '+', 1, name)) as unknown[];
          if (summary.length === 0) await redis.xgroup('DELCONSUMER', key, keys.group, name);
        }
      } catch (error) {
        log.warn({ err: error }, 'could not leave the consumer group; the entry stays until Redis forgets it');
      }
    },
  };
  return firer;
}
