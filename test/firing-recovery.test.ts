/**
 * Firing recovery: a live worker never prints a task twice, whatever its connections do.
 * Each test reproduces one failure window of issue 12 and fails on the code before its fix.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LineCollector, redisNow, sleep, useServices, waitFor } from './helpers.js';
import { startProxy } from './chaos/proxy.js';
import { createTaskStore } from '../src/scheduler/tasks.js';
import { defineScripts } from '../src/scheduler/scripts.js';

const suite = useServices(beforeAll, afterAll);

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
