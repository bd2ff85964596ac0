/**
 * Firing recovery: a live worker never prints a task twice, whatever its connections do.
 * Each test reproduces one failure window of issue 12 and fails on the code before its fix.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import { LineCollector, SHARED_REDIS_URL, countFiredEvents, redisNow, sleep, useServices, waitFor } from './helpers.js';
import { startProxy } from './chaos/proxy.js';
import { createTaskStore } from '../src/scheduler/tasks.js';
import { defineScripts } from '../src/scheduler/scripts.js';

const suite = useServices(beforeAll, afterAll);

/** ioredis' own AbortError class (from its dependency redis-errors, which has no types). */
const { AbortError } = createRequire(import.meta.url)('redis-errors') as { AbortError: new (message: string) => Error };

/**
 * Makes the next pipeline of two or more commits (complete.lua) on a connection end as one
 * cut mid-pipeline does: the first commit runs and is answered, the others fail with
 * ioredis' AbortError and never reach Redis. Other pipelines, and later ones, run as usual.
 */
function abortNextCommitPipelineHalfWay(redis: Redis) {
  const pipeline = redis.pipeline.bind(redis);
  const state = { aborted: 0 };
  redis.pipeline = ((...args: Parameters<Redis['pipeline']>) => {
    const real = pipeline(...args);
    const commits: unknown[][] = [];
    return new Proxy(real, {
      get(target, property) {
        if (property === 'punctual_complete') {
          return (...commandArgs: unknown[]) => {
            commits.push(commandArgs);
            return target;
          };
        }
        if (property === 'exec' && commits.length > 0) {
          return async () => {
            const run = (commandArgs: unknown[]) => (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>).punctual_complete!(...commandArgs);
            if (commits.length >= 2 && state.aborted === 0) {
              state.aborted += 1;
              const first = await run(commits[0]!);
              return [[null, first], ...commits.slice(1).map(() => [new AbortError('Command aborted due to connection close'), null])];
            }
            return Promise.all(commits.map((commandArgs) => run(commandArgs).then((reply) => [null, reply], (error: unknown) => [error, null])));
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }) as Redis['pipeline'];
  return state;
}

/** Each message printed exactly once: the lines, sorted, are the messages, sorted. */
function expectPrintedOnce(out: LineCollector, messages: string[]) {
  const counts = new Map<string, number>();
  for (const { line } of out.lines) counts.set(line, (counts.get(line) ?? 0) + 1);
  expect([...counts].filter(([, n]) => n !== 1)).toEqual([]);
  expect([...counts.keys()].sort()).toEqual([...messages].sort());
}

describe('a blocking read answered late', () => {
  it('its entries, fired meanwhile by the sweep for idle entries, are not claimed and printed again', async () => {
    // Only the worker's blocking connection answers late (2.5 s, longer than the 1 s after
    // which the sweep fires an idle entry of its own), as one TCP connection of a host does
    // while it retransmits. The first 20 tasks print at once (the promoter's take); the next
    // 20 go to the blocking read (it blocks 10 s, so it waits in Redis when they come due),
    // whose answer comes late. Every later print waits until no
    // late answer is on its way (and a moment for the worker to take it): the read answered
    // late then meets its entries in the hands of the sweep, which is the window.
    const proxy = await startProxy(6379);
    proxy.setMode({ kind: 'late-pipe', pattern: ':blocking', ms: 2500 });
    let writes = 0;
    const out = new (class extends LineCollector {
      override _write(chunk: Buffer, encoding: BufferEncoding, done: (error?: Error | null) => void): void {
        if (writes++ === 0) return super._write(chunk, encoding, done);
        waitFor(() => proxy.lateHeld === 0, 30_000, 'no late answer on its way', 10)
          .then(() => sleep(300))
          .then(() => super._write(chunk, encoding, done), done);
      }
    })();
    try {
      const running = await suite.serviceFor(
        'late-read',
        { REDIS_URL: `redis://127.0.0.1:${proxy.port}`, RECLAIM_IDLE_MS: '2000', PARTITIONS: '1', FIRE_BATCH: '20', READ_BLOCK_MS: '10000' },
        out,
      );
      defineScripts(suite.redis);
      const store = createTaskStore(suite.redis, running.service.keys, running.config);
      const due = (await redisNow(suite.redis)) + 500;
      const tasks = await store.scheduleMany(Array.from({ length: 40 }, (_, i) => ({ message: `late read ${i}`, time: due })));
      await waitFor(async () => (await store.getMany(tasks.map((task) => task.id))).every((task) => task?.status === 'FIRED'), 60_000, 'every task FIRED');
      // Stopping waits for the read in hand, answered late or not, to be claimed and printed.
      await running.stop();
      expect(proxy.lateChunks).toBeGreaterThan(0);
      expectPrintedOnce(out, tasks.map((task) => task.message));
      const stored = await store.getMany(tasks.map((task) => task.id));
      expect(stored.filter((task) => task!.attempts !== 1).map((task) => [task!.id, task!.attempts])).toEqual([]);
    } finally {
      await proxy.close();
    }
  });
});

describe('a commit cut short', () => {
  it('a multi-partition commit whose connection closed after its first partition is sent again, and nothing prints twice', async () => {
    const running = await suite.serviceFor('commit-abort', { PARTITIONS: '2', FIRE_BATCH: '50', RECLAIM_IDLE_MS: '2000' });
    const { store } = running.service;
    const fake = abortNextCommitPipelineHalfWay(running.service.redis);
    const events = await countFiredEvents(SHARED_REDIS_URL, running.config.keyPrefix);
    try {
      // Bulks take the partitions in turn: 500 due in each. Beyond what the promoter's takes
      // claim (50 at a time) they wait in the streams, where the fire loop reads and claims
      // both partitions at once, and commits them in one pipeline.
      const due = (await redisNow(suite.redis)) + 300;
      const tasks = [
        ...(await store.scheduleMany(Array.from({ length: 500 }, (_, i) => ({ message: `cut commit a${i}`, time: due })))),
        ...(await store.scheduleMany(Array.from({ length: 500 }, (_, i) => ({ message: `cut commit b${i}`, time: due })))),
      ];
      expect(new Set(tasks.map((task) => task.id.split('-')[0])).size).toBe(2);
      const fired = await waitFor(async () => {
        const all = await store.getMany(tasks.map((task) => task.id));
        return all.every((task) => task?.status === 'FIRED') ? all : null;
      }, 30_000, 'every task FIRED');
      expect(fake.aborted).toBe(1);
      expectPrintedOnce(running.out, tasks.map((task) => task.message));
      expect(fired.filter((task) => task!.attempts !== 1)).toEqual([]);
      await waitFor(() => events.counts.size >= tasks.length, 10_000, 'every event');
      expect([...events.counts.values()].filter((n) => n !== 1)).toEqual([]);
    } finally {
      await events.close();
    }
  });
});
