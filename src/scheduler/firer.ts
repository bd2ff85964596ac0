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
import { isConnectionFailure, refusalOf } from './errors.js';
import type { Logger } from '../log.js';
import { COMMAND_TIMEOUT_MS } from '../redis.js';
import { randomBytes } from 'node:crypto';
import type { Take } from './promoter.js';
import { firedEventList } from './task.js';
import { createHoldings, type Lease } from './holdings.js';

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
  /** Why Redis refuses this worker's writes (OOM, READONLY, ...), while it does; readiness reports it. */
  readonly refusal: string | undefined;
}

/** Fields per task in claim.lua's (and take.lua's) fire list: task id, entry id, message, due, fired-at, attempts, created-at. */
const FIRE_TUPLE = 7;

/** Entry id and task id, per partition. */
type Batch = Map<number, [string, string][]>;
/** Entry id, task id, attempt claimed and event JSON, per partition: what complete.lua takes. */
type Completions = Map<number, [string, string, number, string][]>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long the commits of printed batches still retry once the worker is stopping: a stop must end. */
const STOP_COMMIT_GRACE_MS = 5000;

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
  let stoppingSince = 0;
  let loop: Promise<void> | undefined;
  let reclaimTimer: NodeJS.Timeout | undefined;
  let reclaiming: Promise<void> | undefined;
  let blockingClientId: number | undefined;
  let failing = false;
  let lastLoopAt = 0;
  /** Entries some step of this worker is firing right now; each step holds its own (see holdings.ts). */
  const holdings = createHoldings();
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

  /**
   * Set while Redis refuses this worker's writes for a reason a resend cannot fix soon (full
   * memory, read-only). Meanwhile the worker claims nothing more: the fire loop only probes
   * with a grab (refused whole, it does nothing), takes and the sweeps stand aside, and the
   * commits of printed batches are sent again each second. The first write accepted ends it.
   */
  let refusal: { code: string; since: number; message: string } | undefined;

  const noteRefusal = (code: string, error: unknown) => {
    if (refusal) return;
    refusal = { code, since: Date.now(), message: error instanceof Error ? error.message : String(error) };
    log.error(
      { err: error, refusal: code, held: holdings.size },
      `Redis refuses writes (${code}): claiming stops until it accepts one; printed tasks wait for their commit, which is sent again each second`,
    );
  };

  const noteAccepted = () => {
    if (!refusal) return;
    log.info({ refusal: refusal.code, forMs: Date.now() - refusal.since }, 'Redis accepts writes again; firing resumed');
    refusal = undefined;
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
      const reply = await runScript(redis, script, keysOf(p), [...argsOf(p), ...batch.get(p)!.flat()]);
      noteAccepted();
      return [[p, reply] as const];
    }
    const pipeline = redis.pipeline();
    for (const p of order) runScript(pipeline, script, keysOf(p), [...argsOf(p), ...batch.get(p)!.flat()]);
    const replies = (await pipeline.exec()) ?? [];
    const results = order.map((p, i) => {
      const [error, reply] = replies[i] ?? [new Error('no reply')];
      if (error) throw error;
      return [p, reply] as const;
    });
    noteAccepted();
    return results;
  };

  /**
   * Retries an idempotent step while Redis is unreachable or its answer was lost, as long as
   * `keepTrying` says. Claim and complete both are: a repeated claim by the same worker under
   * the same call id re-claims, a repeated complete only acknowledges. Giving up leaves the
   * entries pending, for a reclaim. A step Redis refused (a declared script, refused whole)
   * did nothing: it is sent again each second for as long as the worker runs.
   */
  const retrying = async <T>(step: () => Promise<T>, keepTrying: () => boolean): Promise<T> => {
    for (;;) {
      try {
        return await step();
      } catch (error) {
        const refused = refusalOf(error);
        if (refused && whileRunning()) {
          noteRefusal(refused, error);
          await sleep(1000);
          continue;
        }
        if (!isConnectionFailure(error) || !keepTrying()) throw error;
        reportFailure(error, 'a Redis call');
        await sleep(200);
      }
    }
  };

  const within = (ms: number) => {
    const deadline = Date.now() + ms;
    return () => Date.now() <= deadline;
  };

  /**
   * A printed batch's commit is sent again until Redis has it, for as long as the worker runs
   * (and a grace once it stops): given up, its entries would be fired again, and printed again.
   * Its entries stay held meanwhile, and the fire loop waits for it before a further batch.
   */
  const whileRunning = () => !stopping || Date.now() - stoppingSince <= STOP_COMMIT_GRACE_MS;

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
      whileRunning,
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
  /**
   * What every call id of this process starts with. A task FIRING for this worker under one
   * of them was never printed (what this process prints stays held until committed), so any
   * claim of this process takes it as the same delivery: a read answered late, or the sweep,
   * may meet entries a call whose answer was lost had claimed.
   */
  const ownCalls = `${callNonce}-`;
  let calls = 0;
  const newCallId = () => `${ownCalls}${++calls}`;

  /**
   * Prints what a claim returned, then sends the commit. Resolves once printed, with the
   * commit under way: its promise resolves when Redis has it (or the retries gave up; it
   * never rejects). The caller's hold on the entries is released (`release`) only then,
   * whatever happens: an entry left pending is fired again by refireOwn.
   */
  const printAndCommit = async (claimed: Claimed, entryIds: Iterable<string>, release: () => void): Promise<{ committed: Promise<void> }> => {
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
  /** `callPrefix` '' counts a delivery for every task FIRING under another call (its print failed here). */
  const claimArgs = (callId: string, callPrefix = ownCalls) => (p: number) => [
    keys.group,
    keys.taskPrefix(p),
    name,
    settings.maxDeliveries,
    settings.retentionMs,
    keys.idempotencyPrefix(p),
    settings.reclaimIdleMs,
    callId,
    callPrefix,
  ];

  /** A batch of the fire loop, claimed: its entries held, and counted in hand until printClaimed is done with it. */
  interface ClaimedBatch {
    claimed: Claimed;
    lease: Lease;
  }

  /** Claims entries this worker holds; `spend` counts a delivery for each (their print failed here). */
  const claimBatch = (batch: Batch, callId = newCallId(), spend = false): Promise<Claimed> =>
    retrying(() => perPartition(batch, 'claim', claimKeys, claimArgs(callId, spend ? '' : ownCalls)), within(settings.reclaimIdleMs));

  /** The part of a batch a lease holds, per partition; empty partitions left out. */
  const heldPart = (batch: Batch, lease: Lease): Batch => {
    const part: Batch = new Map();
    for (const [p, list] of batch) {
      const held = list.filter(([entry]) => lease.entries.has(entry));
      if (held.length > 0) part.set(p, held);
    }
    return part;
  };

  /**
   * Holds and claims a batch the blocking read returned. Entries another step of this worker
   * holds are left to it: a read answered late may return entries that the sweep for idle
   * entries found pending meanwhile and is firing. Null when nothing was left.
   */
  const claimRead = async (batch: Batch): Promise<ClaimedBatch | null> => {
    const lease = holdings.hold([...batch.values()].flat().map(([entry]) => entry));
    if (lease.entries.size === 0) return null;
    batchesInHand += 1;
    try {
      return { claimed: await claimBatch(heldPart(batch, lease)), lease };
    } catch (error) {
      lease.release();
      batchesInHand -= 1;
      throw error;
    }
  };

  /**
   * Holds what a grab or a take claimed. Should another step of this worker hold one of its
   * entries already, that step prints it: it is dropped from this claim's fire list.
   */
  const holdClaimed = (claimed: Claimed): ClaimedBatch => {
    const entryIds: string[] = [];
    for (const [, reply] of claimed) {
      const fireList = (reply as [(string | number)[]])[0];
      for (let i = 1; i < fireList.length; i += FIRE_TUPLE) entryIds.push(String(fireList[i]));
    }
    const lease = holdings.hold(entryIds);
    if (lease.entries.size === entryIds.length) return { claimed, lease };
    const mine = claimed.map(([p, reply]) => {
      const [fireList, ...rest] = reply as [(string | number)[], ...unknown[]];
      const kept: (string | number)[] = [];
      for (let i = 0; i < fireList.length; i += FIRE_TUPLE) {
        if (lease.entries.has(String(fireList[i + 1]))) kept.push(...fireList.slice(i, i + FIRE_TUPLE));
      }
      return [p, [kept, ...rest]] as const;
    });
    return { claimed: mine, lease };
  };

  const printClaimed = async ({ claimed, lease }: ClaimedBatch) => {
    try {
      return await printAndCommit(claimed, lease.entries, lease.release);
    } finally {
      batchesInHand -= 1;
    }
  };

  /**
   * Claims and prints entries the caller holds, and waits for the commit; the caller releases
   * them after. Rejects when the claim or the print fails.
   */
  const fireHeld = async (batch: Batch, callId?: string, spend = false): Promise<void> => {
    const { committed } = await printAndCommit(await claimBatch(batch, callId, spend), [...batch.values()].flat().map(([entry]) => entry), () => {});
    await committed;
  };

  /**
   * Promotes a partition and fires what came due in the same call (take.lua), unless this
   * worker has a batch from the streams in hand, is stopping, or takes are suspended. Resolves with the
   * promotion's result once Redis answered, the print under way; undefined when busy, for a
   * plain promote.
   */
  const take: Take = async (partition, promoteLimit, claimUntil) => {
    if (batchesInHand > 0 || stopping || failing || refusal || Date.now() < takesSuspendedUntil) return undefined;
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
        ownCalls,
      ],
    ).catch(async (error: unknown) => {
      // Refused whole, it claimed nothing.
      const refused = refusalOf(error);
      if (refused) {
        noteRefusal(refused, error);
        throw error;
      }
      takesSuspendedUntil = Date.now() + settings.reclaimIdleMs;
      await fireLostTake(partition, callId, calledAt).catch((failure: unknown) => reportFailure(failure, 'firing what a lost take claimed'));
      throw error;
    })) as [number, number, number, ...unknown[]];
    noteAccepted();
    const [moved, nextDue, now, ...claim] = reply;
    const { claimed, lease } = holdClaimed([[partition, claim]]);
    const printed = printAndCommit(claimed, lease.entries, lease.release).then(
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
    const record = await retrying(() => redis.get(keys.lastTake(partition, name)), within(settings.reclaimIdleMs));
    const [id, ...flat] = (record ?? '').split(' ');
    if (id !== callId || flat.length === 0) return;
    const entries: [string, string][] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) entries.push([flat[i]!, flat[i + 1]!]);
    const lease = holdings.hold(entries.map(([entry]) => entry));
    try {
      const lost = entries.filter(([entry]) => lease.entries.has(entry));
      log.info({ partition, entries: lost.length }, 'firing what a take whose answer was lost had claimed');
      // Under the take's call id: the same delivery, not another.
      if (lost.length > 0) await fireHeld(new Map([[partition, lost]]), callId);
    } finally {
      lease.release();
    }
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
    let found = 0;
    for (const [, reply] of claimed) {
      const [fireList, deadList, dropped, deferred] = reply as [(string | number)[], string[], number, number];
      found += fireList.length / FIRE_TUPLE + deadList.length + dropped + deferred;
    }
    if (found === 0) return null;
    batchesInHand += 1;
    return holdClaimed(claimed);
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
      // While Redis refuses writes, a grab is the probe: refused whole, it does nothing, while
      // a blocking read would still take entries for a claim that Redis refuses.
      let batch = backlog || refusal ? await grabBatch() : null;
      if (!batch) {
        const read = await readBatch();
        batch = read && read.size > 0 ? await claimRead(read) : null;
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
        const refused = refusalOf(error);
        if (refused) noteRefusal(refused, error);
        else reportFailure(error, 'firing');
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
      await fireHeld(new Map([[p, [entry]]]), undefined, true).catch((error: unknown) => reportFailure(error, 'firing a reclaimed task'));
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
    const abandoned = pending.filter(([entry]) => !holdings.has(entry));
    if (abandoned.length === 0) return;
    const entries = entriesOf((await redis.xclaim(keys.due(p), keys.group, name, 0, ...abandoned.map(([entry]) => entry))) as [string, string[] | null][]);
    log.info({ partition: p, entries: entries.length }, 'firing entries this worker had left unfinished');
    // Of those another process claimed (handed back by a takeover), entries delivered once
    // fire as one batch; entries already fired again once, one at a time.
    const retried = new Set(abandoned.filter(([, , , deliveries]) => deliveries > 1).map(([entry]) => entry));
    await fireLeftovers(p, entries, (entry) => !retried.has(entry));
  };

  /**
   * Fires entries left unfinished. Those never claimed, or claimed by a call of this process
   * whose answer was lost, fire as one batch (no new delivery for the latter). Of those
   * another process claimed, `together` says which join that batch; the rest, and those whose
   * print failed here, fire one at a time, so a poison message fails only itself.
   */
  const fireLeftovers = async (p: number, found: [string, string][], together: (entry: string) => boolean) => {
    // Held at once, before any await: a lost take's recovery or a read answered late may be
    // after the same entries, and two steps of this worker firing one entry would print it twice.
    const lease = holdings.hold(found.map(([entry]) => entry));
    const entries = found.filter(([entry]) => lease.entries.has(entry));
    try {
      const { ours, foreign } = await byClaimer(p, entries.filter(([entry]) => !printFailed.has(entry)));
      const alone = [...entries.filter(([entry]) => printFailed.has(entry)), ...foreign.filter(([entry]) => !together(entry))];
      // Forgotten before they fire again: a print that fails again marks its entries again.
      for (const [entry] of entries) printFailed.delete(entry);
      const batch = [...ours, ...foreign.filter(([entry]) => together(entry))];
      if (batch.length > 0) await fireHeld(new Map([[p, batch]]));
      await fireOneByOne(p, alone);
    } finally {
      lease.release();
    }
  };

  /**
   * Splits entries by who last claimed their task. `ours`: nobody (a read's entries, never
   * claimed) or a call of this process whose answer was lost (never printed; claim.lua takes
   * it as the same delivery): no poison among them, they fire as one batch. `foreign`: an
   * earlier process of this name or another worker, which may have died printing them.
   */
  const byClaimer = async (p: number, list: [string, string][]) => {
    const ours: [string, string][] = [];
    const foreign: [string, string][] = [];
    if (list.length === 0) return { ours, foreign };
    const pipeline = redis.pipeline();
    for (const [, id] of list) pipeline.hget(keys.task(p, id), 'ci');
    const replies = (await pipeline.exec()) ?? [];
    list.forEach((entry, i) => {
      const [error, ci] = replies[i] ?? [new Error('no reply')];
      // Not knowing the claimer, a poison message could hold up its batch: try again later.
      if (error) throw error;
      (typeof ci !== 'string' || ci.startsWith(ownCalls) ? ours : foreign).push(entry);
    });
    return { ours, foreign };
  };

  /** Forgets failed prints of entries this worker no longer holds (another worker took them over). */
  const forgetOldPrintFailures = () => {
    const before = Date.now() - Math.max(60_000, 10 * settings.reclaimIdleMs);
    for (const [entry, failedAt] of printFailed) if (failedAt < before) printFailed.delete(entry);
  };

  const reclaim = async () => {
    forgetOldPrintFailures();
    // Nothing is claimed while Redis refuses writes; what is pending waits for the next round.
    for (let p = 0; p < keys.partitions && !stopping && !refusal; p++) {
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
    get refusal() {
      if (!refusal) return undefined;
      return `Redis has refused this worker's writes for ${Math.round((Date.now() - refusal.since) / 1000)} s (${refusal.message}); it claims nothing until a write is accepted`;
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
      stoppingSince = Date.now();
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
