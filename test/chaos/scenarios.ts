/**
 * The chaos scenarios. Each runs a whole deployment under one fault and checks the history;
 * each has a negative control, a deliberately broken variant that the checker must catch,
 * which proves the checker can fail.
 */
import { print } from 'graphql';
import { Redis } from 'ioredis';
import { slotOf } from '../../src/scheduler/keys.js';
import { Cluster, type ClusterOptions } from './cluster.js';
import { check, type Bounds, type Report } from './checker.js';
import { sleep } from '../helpers.js';
import { wsClient } from '../api-helpers.js';
import { TaskFiredDocument } from '../gql/graphql.js';

export interface Profile {
  /** Tasks per scenario run. */
  tasks: number;
  /** Tasks per second the load sends. */
  rate: number;
  /** Tasks per negative-control run. */
  controlTasks: number;
}

export const PROFILES: Record<'short' | 'soak', Profile> = {
  short: { tasks: 1600, rate: 200, controlTasks: 400 },
  soak: { tasks: 12_500, rate: 500, controlTasks: 1000 },
};

export type Variant = 'real' | 'control';

export interface Outcome {
  scenario: string;
  variant: Variant;
  report: Report;
  /** Figures of the scenario besides the checker's (recovery times, answer times). */
  figures: Record<string, number>;
  /** Scenario-specific broken bounds, on top of the checker's. */
  violations: string[];
  timeline: { at: number; what: string }[];
}

export interface Scenario {
  name: string;
  fault: string;
  /** What the negative control breaks. */
  control: string;
  /** The bounds the negative control must break: breaking some other one would catch it for the wrong reason. */
  catches: string[];
  run(profile: Profile, variant: Variant): Promise<Outcome>;
}

/** How many messages a run sends, and their text. */
const messageFor = (scenario: string, variant: Variant) => (i: number) => `chaos ${scenario} ${variant} ${i}`;

interface RunSpec {
  scenario: string;
  variant: Variant;
  cluster: ClusterOptions;
  tasks: number;
  rate: number;
  bounds?: Bounds;
  /**
   * Runs beside the load; returns extra figures. It calls `ended` at each moment a fault
   * ended (or, for an instant fault, happened): the run then reports recoveryMs.
   */
  fault?: (cluster: Cluster, loadDone: Promise<void>, ended: (at: number) => void) => Promise<Record<string, number>>;
  /** Called for each accepted task (to cancel some, say). */
  onAccepted?: (cluster: Cluster, id: string, message: string) => void;
  poisonMessage?: (message: string) => boolean;
  /** When a poison task is done with, for the check: by default, once it is DEAD. */
  poisonSettled?: (status: string | null, attempts: number) => boolean;
  /** Whether the client retries UNAVAILABLE answers, and with an idempotency key. */
  retry?: 'no' | 'with-key' | 'without-key';
  /** Message of task i, when the scenario needs special ones. */
  messageOf?: (i: number) => string;
  /** Extra figures, read once the run drained. */
  figuresAfter?: (cluster: Cluster) => Promise<Record<string, number>>;
  /** Extra checks; returns violations. */
  verify?: (cluster: Cluster, report: Report) => Promise<string[]>;
  drainMs?: number;
  /** Live taskFired subscribers across the API processes: each must receive every fired task once (missedEvents, duplicateDeliveries). */
  subscribers?: number;
}

async function runScenario(spec: RunSpec): Promise<Outcome> {
  const cluster = new Cluster(spec.cluster);
  let subscribers: ReturnType<typeof openSubscribers> | undefined;
  try {
    await cluster.start();
    cluster.note('started');
    if (spec.subscribers) {
      subscribers = openSubscribers(cluster, spec.subscribers);
      await subscribers.live(`chaos ${spec.scenario}`);
    }
    const message = spec.messageOf ?? messageFor(spec.scenario, spec.variant);
    const loadDone = cluster.load(spec.tasks, spec.rate, message, (accepted) => spec.onAccepted?.(cluster, accepted.id, accepted.message), spec.retry);
    const faultEnds: number[] = [];
    const figures = spec.fault ? await spec.fault(cluster, loadDone, (at) => faultEnds.push(at)) : {};
    await loadDone;
    await cluster.cancelsSettled();
    cluster.note('load done');
    const cancelled = new Set([...cluster.cancels].filter(([, outcome]) => outcome === 'CANCELLED').map(([id]) => id));
    const poison = new Set(cluster.accepted.filter((a) => spec.poisonMessage?.(a.message)).map((a) => a.id));
    const expected = cluster.accepted.filter((a) => !cancelled.has(a.id) && !poison.has(a.id)).map((a) => a.id);
    const drained = await cluster.drain(expected, spec.drainMs ?? 30_000);
    cluster.note(drained ? 'drained' : 'drain timed out');
    if (poison.size > 0) await cluster.waitForTasks([...poison], spec.poisonSettled ?? ((status) => status === 'DEAD'), 30_000);
    if (faultEnds.length > 0) figures.recoveryMs = await recoveryMs(cluster, faultEnds);
    if (spec.figuresAfter) Object.assign(figures, await spec.figuresAfter(cluster));
    const report = check(
      {
        accepted: cluster.accepted,
        cancelled,
        poison,
        prints: cluster.prints(),
        fired: await cluster.firedRecords(),
        statuses: await cluster.statuses(cluster.accepted.map((a) => a.id)),
      },
      spec.bounds,
    );
    if (process.env.CHAOS_DEBUG && report.lostIds.length > 0) await describeLost(cluster, report.lostIds);
    const violations = spec.verify ? await spec.verify(cluster, report) : [];
    if (subscribers) {
      const { missedEvents, duplicateDeliveries, reconnects } = await subscribers.tally();
      Object.assign(figures, { subscribers: spec.subscribers, missedEvents, duplicateDeliveries, reconnects });
      if (missedEvents > 0) violations.push(`missedEvents ${missedEvents} > 0`);
      if (duplicateDeliveries > 0) violations.push(`duplicateDeliveries ${duplicateDeliveries} > 0`);
    }
    return { scenario: spec.scenario, variant: spec.variant, report, figures, violations, timeline: cluster.events };
  } finally {
    subscribers?.stop();
    await cluster.stop();
  }
}

/**
 * CHAOS_DEBUG=1: what Redis holds of each lost task, the lines that named it, and every
 * worker's log, so a loss can be traced.
 */
async function describeLost(cluster: Cluster, ids: string[]): Promise<void> {
  for (const id of ids) process.stderr.write(`LOST ${await cluster.describeTask(id)}\n`);
  const messages = new Map(cluster.accepted.filter((a) => ids.includes(a.id)).map((a) => [a.message, a.id]));
  cluster.allWorkers.forEach((worker, i) => {
    for (const { line, at } of worker.stamped) if (messages.has(line)) process.stderr.write(`LOST ${messages.get(line)} printed by worker process ${i} at ${at}\n`);
    process.stderr.write(`WORKER ${i} LOG\n${worker.stderr.join('')}\n`);
  });
  process.stderr.write(`TIMELINE ${JSON.stringify(cluster.events)}\n`);
}

/** Answers to mutations sent while Redis was down: how many said UNAVAILABLE, and the slowest. */
function outageFigures(cluster: Cluster, from: number, to: number): Record<string, number> {
  const during = cluster.answers.filter((a) => a.at >= from && a.at <= to);
  const unavailable = during.filter((a) => a.code === 'UNAVAILABLE');
  return {
    answersDuringOutage: during.length,
    unavailableAnswers: unavailable.length,
    slowestUnavailableMs: Math.max(0, ...unavailable.map((a) => a.ms)),
  };
}

/** Worst time, after any of the faults ended, until every task already due by then had fired. */
async function recoveryMs(cluster: Cluster, faultEnds: number[]): Promise<number> {
  const fired = new Map((await cluster.firedRecords()).map((r) => [r.id, r.firedAt]));
  let worst = 0;
  for (const faultEnd of faultEnds) {
    for (const task of cluster.accepted) {
      const firedAt = fired.get(task.id);
      if (firedAt !== undefined && task.due <= faultEnd) worst = Math.max(worst, firedAt - faultEnd);
    }
  }
  return worst;
}

const BASE: ClusterOptions = { workers: 3, apis: 2 };

/**
 * An UNAVAILABLE answer must come fast. The API test holds one request to 2 s; here 200
 * requests are in flight on a loaded 2-core machine, so the bound is looser. An UNAVAILABLE
 * answer waits out its write's budget (COMMAND_TIMEOUT_MS, 1.2 s) by design, so that the write
 * can never run after it; the rest is the queueing of the requests in flight.
 */
const UNAVAILABLE_BOUND_MS = 4000;

/** MAX_DELIVERIES in the poison scenario. */
const POISON_MAX_DELIVERIES = 3;

export const SCENARIOS: Scenario[] = [
  {
    name: 'baseline',
    fault: 'none; cancels race the firing (one task in ten, every other in the control), each sent within 10 ms of its time',
    control: 'claim fires cancelled tasks, and take claims nothing so a cancel has a window (ignore-cancel)',
    catches: ['cancelledButPrinted'],
    run: (profile, variant) =>
      runScenario({
        scenario: 'baseline',
        variant,
        cluster: { ...BASE, workerFaults: variant === 'control' ? 'ignore-cancel' : undefined },
        tasks: variant === 'real' ? profile.tasks : profile.controlTasks,
        rate: profile.rate,
        onAccepted: (cluster, id, message) => {
          if (Number(message.split(' ').pop()) % (variant === 'real' ? 10 : 2) !== 0) return;
          const due = cluster.accepted.find((a) => a.id === id)!.due;
          void cluster.cancel(id, due - Date.now() + Math.floor(Math.random() * 21) - 10);
        },
      }),
  },
  {
    name: 'worker-kills',
    fault: 'kill -9 a random worker every 2 s mid-batch, restarted at once, half the time under a new name',
    control: 'takeover disabled (RECLAIM_IDLE_MS of a day): what a killed worker held never fires',
    catches: ['lost'],
    run: (profile, variant) => {
      let kills = 0;
      let held = 0;
      return runScenario({
        scenario: 'worker-kills',
        variant,
        cluster: { ...BASE, env: variant === 'control' ? { RECLAIM_IDLE_MS: String(24 * 3600 * 1000) } : {} },
        tasks: variant === 'real' ? profile.tasks : profile.controlTasks,
        rate: profile.rate,
        drainMs: variant === 'real' ? 30_000 : 12_000,
        fault: async (cluster, loadDone, ended) => {
          let doneAt = Infinity;
          void loadDone.then(() => (doneAt = Date.now()));
          await sleep(1500);
          // Until the last tasks sent have come due: there is work in hand to kill.
          while (Date.now() < doneAt + 4000) {
            held += await cluster.killWorker(Math.floor(Math.random() * cluster.workers.length), Math.random() < 0.5 ? 'new-name' : 'same-name');
            ended(Date.now());
            kills += 1;
            await sleep(2000);
          }
          return { kills, heldAtKills: held };
        },
        // A killed worker may have printed part of what it held and not committed it.
        bounds: { duplicatePrints: Number.MAX_SAFE_INTEGER },
        verify: async (_cluster, report) =>
          // At most one duplicate print per task a killed worker held.
          report.duplicatePrints > held ? [`duplicatePrints ${report.duplicatePrints} > ${held} (tasks held by killed workers)`] : [],
      });
    },
  },
  {
    name: 'redis-kills',
    fault: 'kill -9 redis-server twice mid-run, restarted (AOF, fsync always) after 1 s',
    control: 'Redis persistence off',
    catches: ['lost'],
    run: (profile, variant) =>
      runScenario({
        scenario: 'redis-kills',
        variant,
        cluster: { ...BASE, redisArgs: variant === 'control' ? ['--appendonly', 'no'] : [] },
        retry: 'with-key',
        tasks: variant === 'real' ? profile.tasks : profile.controlTasks,
        rate: profile.rate,
        drainMs: variant === 'real' ? 30_000 : 12_000,
        fault: async (cluster, _loadDone, ended) => {
          const figures: Record<string, number> = {};
          await sleep(2000);
          for (const round of [1, 2]) {
            await cluster.killRedis();
            const down = Date.now();
            await sleep(1000);
            await cluster.startRedis();
            const up = Date.now();
            cluster.note('redis restarted');
            Object.assign(figures, Object.fromEntries(Object.entries(outageFigures(cluster, down, up)).map(([k, v]) => [`${k}${round}`, v])));
            ended(up);
            await sleep(2500);
          }
          return figures;
        },
        verify: async (cluster) => {
          const violations: string[] = [];
          for (const answer of cluster.answers) {
            if (answer.code === 'UNAVAILABLE' && answer.ms > UNAVAILABLE_BOUND_MS) violations.push(`unavailableMs ${answer.ms} > ${UNAVAILABLE_BOUND_MS}`);
            if (answer.code && answer.code !== 'UNAVAILABLE') violations.push(`answerCode ${answer.code} (a mutation during the outage)`);
          }
          return violations.slice(0, 5);
        },
      }),
  },
  {
    name: 'redis-pause',
    fault: 'redis-server stopped (SIGSTOP) for 10 s, then continued; clients retry UNAVAILABLE with their idempotency key',
    control: 'a schedule that runs past its deadline (no-write-deadline), with clients retrying without the key: a request answered UNAVAILABLE that reached Redis late is stored, and stored again by the retry',
    catches: ['duplicatePrints'],
    run: (profile, variant) =>
      runScenario({
        scenario: 'redis-pause',
        variant,
        cluster: { ...BASE, apiFaults: variant === 'control' ? 'no-write-deadline' : undefined },
        retry: variant === 'real' ? 'with-key' : 'without-key',
        tasks: variant === 'real' ? profile.tasks : profile.controlTasks,
        rate: profile.rate,
        drainMs: 40_000,
        fault: async (cluster, _loadDone, ended) => {
          await sleep(variant === 'real' ? 2500 : 1000);
          cluster.redis.process.kill('SIGSTOP');
          const paused = Date.now();
          cluster.note('redis paused');
          await sleep(10_000);
          cluster.redis.process.kill('SIGCONT');
          const resumed = Date.now();
          cluster.note('redis resumed');
          ended(resumed);
          return outageFigures(cluster, paused, resumed);
        },
        verify: async (cluster) =>
          cluster.answers
            .filter((a) => a.code && a.code !== 'UNAVAILABLE')
            .slice(0, 5)
            .map((a) => `answerCode ${a.code}`),
      }),
  },
  {
    name: 'worker-network',
    fault: "one worker's Redis connection through a proxy, each fault well within the reclaim idle time (10 s here): the answer to a commit held past its timeout once a second for 5 s (commands run, time out, and are sent again), then reset, blackholed 3 s, replies held 0-1.5 s for 4 s",
    control: 'a complete step that is not idempotent (timed-out completes are retried)',
    catches: ['duplicateEvents'],
    run: (profile, variant) =>
      runScenario({
        scenario: 'worker-network',
        variant,
        // The worker's silence is each fault plus its reconnection (with backoff, slow on a
        // loaded machine: a 3 s blackhole was seen to silence it past 5 s), so the reclaim
        // idle time is 10 s: no other worker may take over, and print again, what the cut-off
        // worker printed, and the run shows a worker rides out a transient fault with no
        // duplicate. A silence longer than that is a dead worker to the others (README,
        // guarantees), as in worker-kills.
        cluster: {
          ...BASE,
          env: { RECLAIM_IDLE_MS: '10000' },
          proxyWorker0: true,
          workerFaults: variant === 'control' ? 'non-idempotent-complete' : undefined,
        },
        // The control needs tasks coming due while the latency lasts, as many as the real run.
        tasks: profile.tasks,
        rate: profile.rate,
        drainMs: 40_000,
        fault: async (cluster, _loadDone, ended) => {
          const proxy = cluster.proxy!;
          await sleep(1500);
          // First, while the load runs at full rate: the commit's channel name marks a complete
          // call, and its answer is held past the command timeout once a second, so the commit
          // is sent again after it ran.
          proxy.setMode({ kind: 'late-after', pattern: `${cluster.prefix}:taskFired`, ms: 1600, everyMs: 1000 });
          cluster.note('proxy holds the answers to a commit once a second');
          await sleep(5000);
          proxy.setMode({ kind: 'pass' });
          proxy.resetAll();
          cluster.note('proxy reset');
          await sleep(500);
          proxy.setMode({ kind: 'blackhole' });
          cluster.note('proxy blackhole');
          await sleep(3000);
          proxy.setMode({ kind: 'latency', ms: 0, jitterMs: 1500 });
          cluster.note('proxy latency 0-1500 ms');
          await sleep(4000);
          proxy.setMode({ kind: 'pass' });
          cluster.note('proxy pass');
          ended(Date.now());
          return {};
        },
        // The most deliveries any task took, against MAX_DELIVERIES (5): a claim sent again
        // because its answer was lost is the same delivery, so lost answers spend none.
        figuresAfter: async (cluster) => ({
          maxAttempts: Math.max(0, ...(await cluster.firedRecords()).map((r) => r.attempts)),
          commitsHeld: cluster.proxy!.lateAfterTriggers,
        }),
      }),
  },
  {
    name: 'api-network',
    fault: "one API's Redis connection through a proxy under steady load of tasks due at once: for 2 s every schedule's connection cut right after it went through (it runs, its answer is lost, ioredis sends it again), reset every 150 ms for 2 s, blackholed 2 s, answers held past the command timeout for 2 s; clients retry UNAVAILABLE with their idempotency key",
    control: 'a schedule that stores again a task that is already there (overwrite-schedule)',
    catches: ['duplicatePrints'],
    run: (profile, variant) =>
      runScenario({
        scenario: 'api-network',
        variant,
        // Due at once: a write that ran twice would find its task fired, and fire it again.
        cluster: { ...BASE, proxyApi0: true, apiFaults: variant === 'control' ? 'overwrite-schedule' : undefined, dueAfterMs: 0, dueSpanMs: 300 },
        retry: 'with-key',
        tasks: variant === 'real' ? profile.tasks : profile.controlTasks,
        rate: profile.rate,
        drainMs: 40_000,
        fault: async (cluster, _loadDone, ended) => {
          const proxy = cluster.proxy!;
          let resets = 0;
          await sleep(1000);
          proxy.setMode({ kind: 'cut-after', pattern: `chaos api-network ${variant}` });
          cluster.note('proxy cuts each schedule after it went through');
          await sleep(2000);
          proxy.setMode({ kind: 'pass' });
          cluster.note(`proxy resets every 150 ms (cuts ${proxy.cuts})`);
          for (const until = Date.now() + 2000; Date.now() < until; resets++) {
            proxy.resetAll();
            await sleep(150);
          }
          proxy.setMode({ kind: 'blackhole' });
          cluster.note('proxy blackhole');
          await sleep(2000);
          proxy.setMode({ kind: 'late-after', pattern: `chaos api-network ${variant}`, ms: 1600, everyMs: 300 });
          cluster.note('proxy holds answers past the timeout');
          await sleep(2000);
          proxy.setMode({ kind: 'pass' });
          cluster.note('proxy pass');
          ended(Date.now());
          return { resets, cuts: proxy.cuts, unavailableAnswers: cluster.answers.filter((a) => a.code === 'UNAVAILABLE').length };
        },
        verify: async (cluster) => [
          ...(cluster.proxy!.cuts === 0 ? ['cuts 0: no schedule was sent again after a lost answer'] : []),
          ...cluster.answers
            .filter((a) => a.code && a.code !== 'UNAVAILABLE' && !a.code.startsWith('TRANSPORT'))
            .slice(0, 5)
            .map((a) => `answerCode ${a.code}`),
        ],
      }),
  },
  {
    name: 'clock-skew',
    fault: 'workers with clocks an hour behind, an hour ahead, and right',
    control: "promotion by the worker's clock (worker-clock)",
    catches: ['early'],
    run: (profile, variant) =>
      runScenario({
        scenario: 'clock-skew',
        variant,
        cluster: {
          ...BASE,
          workerEnv: (i) => ({ CLOCK_OFFSET_MS: String([-3_600_000, 3_600_000, 0][i] ?? 0) }),
          workerFaults: variant === 'control' ? 'worker-clock' : undefined,
        },
        tasks: variant === 'real' ? profile.tasks : profile.controlTasks,
        rate: profile.rate,
      }),
  },
  {
    name: 'poison',
    fault: `a task whose print always fails (the write errors); MAX_DELIVERIES ${POISON_MAX_DELIVERIES}`,
    control: 'MAX_DELIVERIES 1000: the poison task never becomes DEAD',
    catches: ['poisonNotDead'],
    run: (profile, variant) => {
      const message = messageFor('poison', variant);
      return runScenario({
        scenario: 'poison',
        variant,
        cluster: { ...BASE, workerFaults: 'poison', env: { MAX_DELIVERIES: variant === 'control' ? '1000' : String(POISON_MAX_DELIVERIES) } },
        tasks: variant === 'real' ? profile.tasks : profile.controlTasks,
        rate: profile.rate,
        drainMs: 40_000,
        messageOf: (i) => (i === 7 ? `${message(i)} POISON` : message(i)),
        poisonMessage: (text) => text.includes('POISON'),
        // The control's poison task is checked once delivered past the real bound, when the
        // real run's would be DEAD: waiting longer for a DEAD that cannot come proves nothing.
        poisonSettled: (status, attempts) => status === 'DEAD' || (variant === 'control' && attempts > POISON_MAX_DELIVERIES),
      });
    },
  },
  {
    name: 'master-failover',
    fault:
      "Redis Cluster (3 masters, 3 replicas, node timeout 1 s), REDIS_WAIT_REPLICAS=1: kill -9 of partition 0's master under steady load, its replica promoted, the old master restarted as a replica once it took over; 20 subscribers on two API processes; clients retry UNAVAILABLE with their idempotency key",
    control: 'no REDIS_WAIT_REPLICAS, and the replica cut off for 1.5 s before the kill (frozen, its replication link killed): writes answered in that time exist on the dead master only',
    catches: ['lost'],
    run: (profile, variant) =>
      runScenario({
        scenario: 'master-failover',
        variant,
        cluster: { workers: 2, apis: 2, redisCluster: true, env: variant === 'real' ? { REDIS_WAIT_REPLICAS: '1' } : {} },
        retry: 'with-key',
        subscribers: variant === 'real' ? 20 : undefined,
        // 1,000 tasks at the short profile's rate: 5 s of load, the kill at 3 s.
        tasks: variant === 'real' ? Math.round(profile.tasks * 0.625) : profile.controlTasks,
        rate: profile.rate,
        // The control loses tasks by design: waiting long for them proves nothing.
        drainMs: variant === 'real' ? 40_000 : 6000,
        fault: async (cluster, _loadDone, ended) => {
          const nodes = cluster.nodes!;
          const slot = slotOf(cluster.keys.schedule(0));
          const victim = await nodes.masterOf(slot);
          await sleep(variant === 'real' ? 3000 : 500);
          if (variant === 'control') {
            const [replica] = await nodes.replicasOf(slot);
            replica!.process.kill('SIGSTOP');
            const direct = new Redis(victim.url, { lazyConnect: true });
            await direct.connect();
            await direct.client('KILL', 'TYPE', 'replica');
            direct.disconnect();
            cluster.note('replica frozen and cut off');
            await sleep(1500);
            await nodes.kill(victim);
            replica!.process.kill('SIGCONT');
          } else await nodes.kill(victim);
          const killed = Date.now();
          cluster.note('master killed');
          await nodes.healthy(30_000);
          const promotedMs = Date.now() - killed;
          cluster.note('replica promoted');
          ended(Date.now());
          await nodes.restart(victim);
          await nodes.healthy(30_000);
          cluster.note('old master back as a replica');
          return { promotedMs, ...outageFigures(cluster, killed, killed + promotedMs) };
        },
      }),
  },
];

/**
 * Live taskFired subscribers spread over the API processes. A subscription that ends (its
 * server went away) resumes on the next API process with its last cursor; `tally` counts, per
 * subscriber, the fired tasks it never received and the ones it received more than once.
 */
function openSubscribers(cluster: Cluster, count: number) {
  const subscribers: { received: Map<string, number>; cursor: string | undefined; reconnects: number }[] = [];
  const clients: { dispose(): void }[] = [];
  const probes = new Set<string>();
  let stopping = false;
  const subscribe = (index: number, apiIndex: number) => {
    const state = subscribers[index]!;
    const api = cluster.apis[apiIndex]!;
    const client = wsClient(`http://127.0.0.1:${api.port}/graphql`);
    clients.push(client);
    const after = state.cursor;
    let ended = false;
    const resubscribe = () => {
      if (stopping || ended) return;
      ended = true;
      state.reconnects += 1;
      client.dispose();
      setTimeout(() => subscribe(index, (apiIndex + 1) % cluster.apis.length), 100);
    };
    client.subscribe(
      { query: print(TaskFiredDocument), variables: after ? { after } : {} },
      {
        next: (result) => {
          const event = (result.data as { taskFired?: { cursor: string; task: { id: string } } } | null)?.taskFired;
          if (!event) return;
          state.cursor = event.cursor;
          state.received.set(event.task.id, (state.received.get(event.task.id) ?? 0) + 1);
        },
        // A server going away ends the subscription with an error or a complete;
        // either way the subscriber goes to the other API process and resumes there.
        error: () => resubscribe(),
        complete: () => resubscribe(),
      },
    );
  };
  for (let i = 0; i < count; i++) {
    subscribers.push({ received: new Map(), cursor: undefined, reconnects: 0 });
    subscribe(i, i % cluster.apis.length);
  }
  return {
    /** Every subscription is live once every subscriber has seen one probe task fire; what fires after it, every subscriber must see. */
    async live(name: string): Promise<void> {
      for (let round = 0; ; round++) {
        const probe = await cluster.schedule(`${name} probe ${round}`, Date.now());
        if (probe.id) probes.add(probe.id);
        const deadline = Date.now() + 2000;
        while (subscribers.some((s) => !s.received.has(probe.id!)) && Date.now() < deadline) await sleep(50);
        if (subscribers.every((s) => s.received.has(probe.id!))) return;
        if (round === 15) throw new Error('the subscriptions did not all become live');
      }
    },
    /** Waits (10 s at most) for the live feed to deliver every fired task, then counts what each subscriber missed or got twice. */
    async tally(): Promise<{ missedEvents: number; duplicateDeliveries: number; reconnects: number }> {
      const fired = new Set((await cluster.firedRecords()).map((r) => r.id).filter((id) => !probes.has(id)));
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && subscribers.some((s) => [...fired].some((id) => !s.received.has(id)))) await sleep(200);
      let missedEvents = 0;
      let duplicateDeliveries = 0;
      for (const s of subscribers) {
        for (const id of fired) if (!s.received.has(id)) missedEvents += 1;
        for (const count of s.received.values()) duplicateDeliveries += count - 1;
      }
      return { missedEvents, duplicateDeliveries, reconnects: subscribers.reduce((n, s) => n + s.reconnects, 0) };
    },
    stop(): void {
      stopping = true;
      for (const client of clients) client.dispose();
    },
  };
}

/** Scenario 8: subscribers across two API processes, one API restarted; resume by cursor. */
SCENARIOS.push({
  name: 'subscribers',
  fault: "100 subscribers across two API processes; Redis drops every pub/sub connection every 700 ms for 5 s, and about a quarter of the batches' messages are never published (lost with the connection up); one API process restarted mid-run; each subscriber resumes with its last cursor",
  control: 'a published batch that does not name the log entry before it (no-gap-check): the feed can only track a high-water mark',
  catches: ['missedEvents'],
  run: async (profile, variant) => {
    const workerFaults = variant === 'control' ? 'no-gap-check,drop-some-publishes' : 'drop-some-publishes';
    const cluster = new Cluster({ workers: 2, apis: 2, workerFaults });
    let subscribers: ReturnType<typeof openSubscribers> | undefined;
    try {
      await cluster.start();
      subscribers = openSubscribers(cluster, 100);
      await subscribers.live('chaos subscribers');
      const tasks = variant === 'real' ? profile.tasks : profile.controlTasks;
      const loadDone = cluster.load(tasks, profile.rate, messageFor('subscribers', variant));
      await sleep(1500);
      const control = await cluster.connect();
      let pubsubKills = 0;
      for (const until = Date.now() + 5000; Date.now() < until; pubsubKills++) {
        await control.client('KILL', 'TYPE', 'pubsub').catch(() => 0);
        await sleep(700);
      }
      control.disconnect();
      cluster.note(`pub/sub connections dropped ${pubsubKills} times`);
      const api = cluster.apis[1]!;
      await api.process.stop();
      cluster.note('api 1 stopped');
      await sleep(1000);
      cluster.restartApi(1);
      await api.process.started();
      cluster.note('api 1 restarted');
      await loadDone;
      const expected = cluster.accepted.map((a) => a.id);
      await cluster.drain(expected, 30_000);
      const { missedEvents, duplicateDeliveries, reconnects } = await subscribers.tally();
      const report = check({
        accepted: cluster.accepted,
        cancelled: new Set(),
        poison: new Set(),
        prints: cluster.prints(),
        fired: await cluster.firedRecords(),
        statuses: new Map(),
      });
      const violations: string[] = [];
      if (missedEvents > 0) violations.push(`missedEvents ${missedEvents} > 0`);
      if (duplicateDeliveries > 0) violations.push(`duplicateDeliveries ${duplicateDeliveries} > 0`);
      if (reconnects === 0) violations.push('reconnects 0: the fault did not happen');
      return {
        scenario: 'subscribers',
        variant,
        report,
        figures: { subscribers: 100, reconnects, pubsubKills, missedEvents, duplicateDeliveries },
        violations,
        timeline: cluster.events,
      };
    } finally {
      subscribers?.stop();
      await cluster.stop();
    }
  },
});

/** Every broken bound of an outcome: the checker's, then the scenario's. */
export const violationsOf = (outcome: Outcome) => [...outcome.report.violations, ...outcome.violations];

/** The bounds an outcome broke, by name: a violation starts with its bound's name (`lost 3 > 0`). */
export const brokenBounds = (outcome: Outcome) => [...new Set(violationsOf(outcome).map((v) => v.split(' ')[0]!))];

/** A scenario's outcome passes when neither the checker nor the scenario found a broken bound. */
export const passed = (outcome: Outcome) => violationsOf(outcome).length === 0;

/** The bounds a scenario's negative control must break. */
export const catchesOf = (scenario: string) => SCENARIOS.find((s) => s.name === scenario)?.catches ?? [];

/**
 * Whether an outcome is what its variant must show, and why: a fault run breaks no bound;
 * a negative control breaks every bound its scenario names (others it may break besides).
 */
export function verdict(outcome: Outcome): { ok: boolean; text: string } {
  const broken = violationsOf(outcome).join('; ');
  if (outcome.variant === 'real') return passed(outcome) ? { ok: true, text: 'pass' } : { ok: false, text: `FAIL: ${broken}` };
  const missing = catchesOf(outcome.scenario).filter((bound) => !brokenBounds(outcome).includes(bound));
  if (missing.length === 0) return { ok: true, text: `caught: ${broken}` };
  return { ok: false, text: passed(outcome) ? 'NOT DETECTED' : `caught for the wrong reason (not ${missing.join(', ')}): ${broken}` };
}

