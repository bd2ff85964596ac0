/**
 * Firing recovery: a live worker never prints a task twice, whatever its connections do.
 * Each test reproduces one failure window: a commit cut short, Redis refusing writes, a read
 * answered late, two processes under one worker name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import {
  LOG_LEVEL,
  LineCollector,
  SHARED_REDIS_URL,
  connect,
  countFiredEvents,
  deletePrefix,
  firedLogCounts,
  redisNow,
  sleep,
  startRedisServer,
  testEnv,
  uniquePrefix,
  useServices,
  waitFor,
  type LogRecord,
} from './helpers.js';
import { loadConfig } from '../src/config.js';
import { createService } from '../src/service.js';
import { startProxy } from './chaos/proxy.js';
import { createTaskStore } from '../src/scheduler/tasks.js';
import { defineScripts } from '../src/scheduler/scripts.js';
import { WorkerNameTaken } from '../src/scheduler/worker.js';
import { createLogger } from '../src/log.js';

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
        if (writes++ === 0) {
          super._write(chunk, encoding, done);
          return;
        }
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
    const fake = abortNextCommitPipelineHalfWay(running.service.redis as Redis);
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

describe('Redis refusing writes', () => {
  it('out of memory after a print: the print is not repeated, claiming stops, /readyz says why, and all fire once when memory is back', async () => {
    // A Redis of this test's own, since it is made to refuse writes (maxmemory 1, noeviction).
    const server = await startRedisServer(['--maxmemory-policy', 'noeviction']);
    const admin = await connect(server.url);
    const logs: LogRecord[] = [];
    const log = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogRecord);
          done();
        },
      }),
    );
    // The first print turns Redis' memory limit on before it completes: its commit is refused.
    let printing = 0;
    const out = new (class extends LineCollector {
      override _write(chunk: Buffer, encoding: BufferEncoding, done: (error?: Error | null) => void): void {
        if (printing++ > 0) {
          super._write(chunk, encoding, done);
          return;
        }
        admin.config('SET', 'maxmemory', '1').then(() => super._write(chunk, encoding, done), done);
      }
    })();
    const config = loadConfig(testEnv(uniquePrefix('oom'), { REDIS_URL: server.url, PARTITIONS: '2', FIRE_BATCH: '100' }));
    const service = createService(config, { log, out });
    const events = await countFiredEvents(server.url, config.keyPrefix);
    try {
      await service.start();
      const readyz = async () => {
        const response = await fetch(`http://127.0.0.1:${service.server!.port}/readyz`);
        return { status: response.status, body: (await response.json()) as { checks: { writes?: { ok: boolean; detail?: string } } } };
      };
      expect((await readyz()).status).toBe(200);
      const due = (await redisNow(admin)) + 300;
      // The second half comes due 1.5 s after the first, once the first print has filled the
      // memory: all due at once, a loaded machine could claim every task before that print.
      const firstHalf = await service.store.scheduleMany(Array.from({ length: 150 }, (_, i) => ({ message: `full a${i}`, time: due })));
      const tasks = [...firstHalf, ...(await service.store.scheduleMany(Array.from({ length: 150 }, (_, i) => ({ message: `full b${i}`, time: due + 1500 }))))];

      const refused = await waitFor(async () => {
        const answer = await readyz();
        return answer.status === 503 && answer.body.checks.writes?.ok === false ? answer : null;
      }, 15_000, '/readyz to report the refused writes');
      expect(refused.body.checks.writes!.detail).toMatch(/OOM command not allowed/);
      // Memory stays full while three rounds of the sweep for idle entries (every 1 s) pass:
      // the printed batch's entries stay pending, idle, unprinted again.
      const group = service.keys.group;
      const idle = async () => {
        let longest = 0;
        for (let p = 0; p < config.partitions; p++) {
          const pending = (await admin.xpending(service.keys.due(p), group, '-', '+', 1000)) as [string, string, number, number][];
          for (const [, , idleMs] of pending) longest = Math.max(longest, idleMs);
        }
        return longest;
      };
      await waitFor(async () => (await idle()) >= 3 * 1000, 15_000, 'printed entries idle through three sweeps');
      const printedWhileFull = out.lines.length;
      expect(printedWhileFull).toBeGreaterThan(0);
      expect(printedWhileFull).toBeLessThanOrEqual(firstHalf.length);
      expectPrintedOnce(out, out.lines.map((l) => l.line));

      await admin.config('SET', 'maxmemory', '0');
      const fired = await waitFor(async () => {
        const all = await service.store.getMany(tasks.map((task) => task.id));
        return all.every((task) => task?.status === 'FIRED') ? all : null;
      }, 20_000, 'every task FIRED');
      expectPrintedOnce(out, tasks.map((task) => task.message));
      expect(fired.filter((task) => task!.attempts !== 1)).toEqual([]);
      await waitFor(() => events.counts.size >= tasks.length, 10_000, 'every event');
      expect([...events.counts.values()].filter((n) => n !== 1)).toEqual([]);
      await waitFor(async () => (await readyz()).status === 200, 10_000, '/readyz ready again');
      // Said once, as an error; and once that it is over.
      expect(logs.filter((record) => record.level >= LOG_LEVEL.error).map((record) => record.msg)).toEqual([
        expect.stringMatching(/^Redis refuses writes \(OOM\)/),
      ]);
      expect(logs.filter((record) => /accepts writes again/.test(record.msg))).toHaveLength(1);
    } finally {
      await events.close();
      await admin.config('SET', 'maxmemory', '0').catch(() => {});
      await service.stop();
      admin.disconnect();
      await server.cleanup();
    }
  });
});

describe('worker names', () => {
  it('a second live process with the same WORKER_NAME is refused at start, naming the holder; a crashed holder is waited out', async () => {
    const prefix = uniquePrefix('names');
    const services: ReturnType<typeof createService>[] = [];
    /** A worker-only service on the shared prefix, named `same` unless told otherwise. */
    const start = async (overrides: Record<string, string> = {}, out = new LineCollector()) => {
      const config = loadConfig(testEnv(prefix, { ROLE: 'worker', WORKER_NAME: 'same', ...overrides }));
      const service = createService(config, { log: createLogger('silent'), out });
      services.push(service);
      await service.start();
      return service;
    };
    try {
      const out = new LineCollector();
      const first = await start({}, out);
      const refused = await start().then(
        () => null,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(WorkerNameTaken);
      const holder = await suite.redis.get(first.keys.workerLease('same'));
      expect(holder).toMatch(new RegExp(`:${process.pid}:`));
      expect((refused as Error).message).toContain(holder!);
      expect((refused as Error).message).toContain('WORKER_NAME "same"');

      // The first fires on, alone under its name.
      const [task] = await first.store.scheduleMany([{ message: 'one worker', time: (await redisNow(suite.redis)) + 100 }]);
      await waitFor(async () => (await first.store.get(task!.id))?.status === 'FIRED', 10_000, 'the task FIRED');
      expect(out.lines.map((l) => l.line)).toEqual(['one worker']);

      // A holder that died without giving the name up (its lease left to lapse) is waited out.
      await suite.redis.set(first.keys.workerLease('crashed'), 'ghost:1:00', 'PX', 800);
      const after = await start({ WORKER_NAME: 'crashed' });
      expect(await suite.redis.get(after.keys.workerLease('crashed'))).toMatch(new RegExp(`:${process.pid}:`));

      // A worker that stopped gave its name up: the next takes it at once.
      await first.stop();
      expect(await suite.redis.exists(first.keys.workerLease('same'))).toBe(0);
      await start();
    } finally {
      for (const service of services) await service.stop().catch(() => {});
      await deletePrefix(suite.redis, prefix);
    }
  });
});

describe('connections reset over and over', () => {
  it('a live worker whose connections are reset every 300 ms prints 6,000 tasks due over 10 s once each, attempts 1, each event once', async () => {
    // Every connection of the worker (commands, blocking read, pub/sub) goes through a proxy
    // that resets them all every 300 ms; the tasks are scheduled past it.
    const proxy = await startProxy(6379);
    const out = new LineCollector();
    let resets = 0;
    const resetting = setInterval(() => {
      proxy.resetAll();
      resets += 1;
    }, 300);
    try {
      const running = await suite.serviceFor('resets', { REDIS_URL: `redis://127.0.0.1:${proxy.port}`, ROLE: 'worker' }, out);
      defineScripts(suite.redis);
      const store = createTaskStore(suite.redis, running.service.keys, running.config);
      const events = await countFiredEvents(SHARED_REDIS_URL, running.config.keyPrefix);
      try {
        const start = (await redisNow(suite.redis)) + 1000;
        const tasks: Awaited<ReturnType<typeof store.scheduleMany>> = [];
        for (let chunk = 0; chunk < 60; chunk++) {
          const inputs = Array.from({ length: 100 }, (_, i) => ({ message: `reset ${chunk * 100 + i}`, time: start + Math.floor(Math.random() * 10_000) }));
          tasks.push(...(await store.scheduleMany(inputs)));
        }
        const fired = await waitFor(async () => {
          const all = await store.getMany(tasks.map((task) => task.id));
          return all.every((task) => task?.status === 'FIRED') ? all : null;
        }, 90_000, 'every task FIRED', 500);
        clearInterval(resetting);
        // About one every 300 ms while the tasks came due, a busy event loop allowing.
        expect(resets).toBeGreaterThan(10);
        expectPrintedOnce(out, tasks.map((task) => task.message));
        expect(fired.filter((task) => task!.attempts !== 1).map((task) => [task!.id, task!.attempts])).toEqual([]);
        for (const [i, task] of fired.entries()) expect(task!.firedAt).toBeGreaterThanOrEqual(tasks[i]!.time);
        await waitFor(() => events.counts.size >= tasks.length, 10_000, 'every event');
        expect([...events.counts.values()].filter((n) => n !== 1)).toEqual([]);
        const logged = await firedLogCounts(suite.redis, running.config.keyPrefix, running.config.partitions);
        expect(logged.size).toBe(tasks.length);
        expect([...logged.values()].filter((n) => n !== 1)).toEqual([]);
      } finally {
        await events.close();
      }
    } finally {
      clearInterval(resetting);
      await proxy.close();
    }
  }, 150_000);
});
