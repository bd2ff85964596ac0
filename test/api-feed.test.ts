/**
 * The taskFired feed: events cross processes (API A hears what worker C fired for API B),
 * and a subscriber that comes back with its last cursor gets exactly what it missed, in
 * order, then the live events, none twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceProcess, deletePrefix, freePort, testEnv, uniquePrefix, useServices, waitFor } from './helpers.js';
import { collect, graphql, isoIn, waitForSubscribers, wsClient } from './api-helpers.js';
import { DelayedTaskDocument, DelayedTasksDocument, TaskFiredDocument, type TaskFiredSubscription } from './gql/graphql.js';

const services = useServices(beforeAll, afterAll);

describe('taskFired across processes', () => {
  const processes: ServiceProcess[] = [];
  const prefix = uniquePrefix('api-3proc');
  afterAll(async () => {
    await Promise.all(processes.map((child) => child.stop().catch(() => child.kill('SIGKILL'))));
    await deletePrefix(services.redis, prefix);
  });

  it('a subscriber on API process A receives the task scheduled through API process B and fired by worker C', async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const apiA = new ServiceProcess(testEnv(prefix, { ROLE: 'api', PORT: String(portA), LOG_LEVEL: 'info' }));
    const apiB = new ServiceProcess(testEnv(prefix, { ROLE: 'api', PORT: String(portB), LOG_LEVEL: 'info' }));
    const worker = new ServiceProcess(testEnv(prefix, { ROLE: 'worker', LOG_LEVEL: 'info' }));
    processes.push(apiA, apiB, worker);
    await Promise.all([apiA.started(60_000), apiB.started(60_000), worker.started(60_000)]);

    const client = wsClient(`http://127.0.0.1:${portA}/graphql`);
    const feed = collect(client, TaskFiredDocument, {});
    try {
      // The subscription is open before Redis confirms SUBSCRIBE; wait for the confirmation.
      await waitForSubscribers(services.redis, `${prefix}:taskFired`, 1);
      const message = `across-processes ${prefix}`;
      const scheduled = await graphql(`http://127.0.0.1:${portB}/graphql`, DelayedTaskDocument, { message, time: isoIn(300) });
      expect(scheduled.errors).toBeUndefined();
      const id = scheduled.data!.delayedTask.id;

      await waitFor(() => feed.events.some((event) => event.taskFired.task.id === id), 20_000, 'the event on process A');
      const event = feed.events.find((e) => e.taskFired.task.id === id)!.taskFired;
      expect(event.task).toMatchObject({ id, message, status: 'FIRED', attempts: 1 });
      expect(event.task.lateByMs).toBeGreaterThanOrEqual(0);
      expect(Date.parse(event.task.firedAt!)).toBeGreaterThanOrEqual(Date.parse(event.task.time));
      expect(event.cursor).toMatch(/^f1\./);
      // The worker process printed it; the API processes print nothing.
      await waitFor(() => worker.lines.includes(message), 5000, 'the print on worker C');
      expect(apiA.lines).toEqual([]);
      expect(apiB.lines).toEqual([]);
    } finally {
      feed.stop();
      await client.dispose();
    }
  });
});

describe('resuming taskFired with after', () => {
  it('replays exactly the 100 events missed while disconnected, in order, then live ones, none twice', async () => {
    const { service, config } = await services.serviceFor('api-resume', { PORT: '0' });
    const url = `http://127.0.0.1:${service.server!.port}/graphql`;
    const channel = `${config.keyPrefix}:taskFired`;

    // 1. A first subscriber receives one event and keeps its cursor.
    const first = wsClient(url);
    const before = collect(first, TaskFiredDocument, {});
    await waitForSubscribers(services.redis, channel, 1);
    await graphql(url, DelayedTaskDocument, { message: 'before', time: isoIn(0) });
    await before.waitForCount(1, 15_000);
    const cursor = before.events[0]!.taskFired.cursor;
    before.stop();
    await first.dispose();
    await waitFor(async () => Number(((await services.redis.pubsub('NUMSUB', channel)) as [string, number])[1]) === 0, 10_000, 'the subscriber to leave');

    // 2. 100 tasks fire while nobody listens.
    const missed = await graphql(url, DelayedTasksDocument, {
      tasks: Array.from({ length: 100 }, (_, i) => ({ message: `missed ${i}`, time: isoIn(i) })),
    });
    expect(missed.errors).toBeUndefined();
    const missedIds = new Set(missed.data!.delayedTasks.map((task) => task.id));
    // The order they fired in is the order of their fired-log entries, across partitions.
    const firedOrder = await waitFor(
      async () => {
        const entries: [string, string][] = [];
        for (let p = 0; p < config.partitions; p++) {
          for (const [seq, fields] of await services.redis.xrange(`{${config.keyPrefix}:${p}}:fired`, '-', '+')) {
            const { id } = JSON.parse(fields[1]!) as { id: string };
            if (missedIds.has(id)) entries.push([seq, id]);
          }
        }
        if (entries.length < 100) return undefined;
        const key = (seq: string) => seq.split('-').map((part) => part.padStart(20, '0')).join('-');
        return entries.sort((a, b) => (key(a[0]) < key(b[0]) ? -1 : 1)).map(([, id]) => id);
      },
      30_000,
      'the 100 tasks to fire',
    );

    // 3. Resume with the cursor; live tasks scheduled at once may fire during the replay.
    const second = wsClient(url);
    const after = collect(second, TaskFiredDocument, { after: cursor });
    try {
      await waitForSubscribers(services.redis, channel, 1);
      const live = await graphql(url, DelayedTasksDocument, { tasks: Array.from({ length: 5 }, (_, i) => ({ message: `live ${i}`, time: isoIn(0) })) });
      const liveIds = live.data!.delayedTasks.map((task) => task.id);
      await after.waitForCount(105, 30_000);

      const received = after.events.map((event) => event.taskFired.task.id);
      expect(received.slice(0, 100)).toEqual(firedOrder);
      expect(new Set(received.slice(100))).toEqual(new Set(liveIds));
      expect(new Set(received).size).toBe(received.length);
      expect(received).not.toContain(before.events[0]!.taskFired.task.id);
      // Nothing else arrives: no repeat comes late.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(after.events).toHaveLength(105);
      expect(after.error).toBeUndefined();

      // 4. The cursor of the last replayed event resumes right after it, too.
      const middle = after.events[49]!.taskFired.cursor;
      const third = wsClient(url);
      const again = collect(third, TaskFiredDocument, { after: middle });
      try {
        await again.waitForCount(55, 20_000);
        expect(again.events.map((event: TaskFiredSubscription) => event.taskFired.task.id)).toEqual(received.slice(50));
      } finally {
        again.stop();
        await third.dispose();
      }
    } finally {
      after.stop();
      await second.dispose();
    }
  });
});
