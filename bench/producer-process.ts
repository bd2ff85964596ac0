/**
 * A producer process of either system (or of Punctual's GraphQL API). It runs the jobs the
 * runner sends and answers each with its timing; the tasks' messages carry their sequence
 * number and due time (see taskMessage).
 *
 * argv: producer kind, target (Redis URL or GraphQL endpoint). IPC: `run` {job} → `done`.
 */
import { exitWithRunner, toRunner, type Message } from './children.js';
import { connectProducer, taskMessage, type ProducerKind } from './systems.js';
import type { NewTask } from '../src/scheduler/tasks.js';

export type ProducerJob =
  /**
   * `count` tasks in bulk calls of `chunk`, one call at a time, all due at `due` (or `dueInMs`
   * from each call), numbered from `firstSeq` (0; W5's probe is -1).
   */
  | { kind: 'bulk'; count: number; chunk: number; due?: number; dueInMs?: number; messageBytes?: number; firstSeq?: number }
  /** `count` single calls, `inFlight` at a time, each due `dueInMs` after its call. */
  | { kind: 'single'; count: number; inFlight: number; dueInMs: number }
  /** Single calls at `rate` per second for `seconds`, each due a random 1..5 s (min..max) later. */
  | { kind: 'steady'; rate: number; seconds: number; minDelayMs: number; maxDelayMs: number };

export interface ProducerResult extends Message {
  type: 'done';
  /** Tasks scheduled. */
  count: number;
  startedAt: number;
  endedAt: number;
  error?: string;
}

const TICK_MS = 2;

const [kind, target] = process.argv.slice(2) as [ProducerKind, string];
exitWithRunner();
const producer = await connectProducer(kind, target);

async function bulk(job: Extract<ProducerJob, { kind: 'bulk' }>): Promise<number> {
  for (let first = 0; first < job.count; first += job.chunk) {
    const tasks: NewTask[] = [];
    const dueFromNow = Date.now() + (job.dueInMs ?? 0);
    for (let seq = first; seq < Math.min(first + job.chunk, job.count); seq++) {
      const due = job.due ?? dueFromNow;
      tasks.push({ message: taskMessage(seq + (job.firstSeq ?? 0), due, job.messageBytes), time: due });
    }
    await producer.scheduleBulk(tasks);
  }
  return job.count;
}

async function single(job: Extract<ProducerJob, { kind: 'single' }>): Promise<number> {
  let nextSeq = 0;
  const lane = async () => {
    for (let seq = nextSeq++; seq < job.count; seq = nextSeq++) {
      const due = Date.now() + job.dueInMs;
      await producer.scheduleOne({ message: taskMessage(seq, due), time: due });
    }
  };
  await Promise.all(Array.from({ length: job.inFlight }, lane));
  return job.count;
}

/** Paced by the clock, not by replies: a slow reply does not slow the arrival rate. */
async function steady(job: Extract<ProducerJob, { kind: 'steady' }>): Promise<number> {
  const total = Math.round(job.rate * job.seconds);
  const started = Date.now();
  const calls: Promise<void>[] = [];
  let sent = 0;
  while (sent < total) {
    const owed = Math.min(total, Math.floor(((Date.now() - started) * job.rate) / 1000));
    for (; sent < owed; sent++) {
      const due = Date.now() + job.minDelayMs + Math.floor(Math.random() * (job.maxDelayMs - job.minDelayMs + 1));
      calls.push(producer.scheduleOne({ message: taskMessage(sent, due), time: due }));
    }
    await new Promise((resolve) => setTimeout(resolve, TICK_MS));
  }
  await Promise.all(calls);
  return total;
}

const run = (job: ProducerJob) => (job.kind === 'bulk' ? bulk(job) : job.kind === 'single' ? single(job) : steady(job));

process.on('message', (message: Message) => {
  if (message.type === 'quit') {
    void producer.close().finally(() => process.exit(0));
    return;
  }
  if (message.type !== 'run') return;
  const startedAt = Date.now();
  run(message.job as ProducerJob).then(
    (count) => toRunner({ type: 'done', count, startedAt, endedAt: Date.now() } satisfies ProducerResult),
    (error: unknown) => toRunner({ type: 'done', count: 0, startedAt, endedAt: Date.now(), error: String(error) } satisfies ProducerResult),
  );
});
toRunner({ type: 'ready' });
