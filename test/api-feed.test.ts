/**
 * The taskFired feed: events cross processes (API A hears what worker C fired for API B),
 * and a subscriber that comes back with its last cursor gets exactly what it missed, in
 * order, then the live events, none twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, ServiceProcess, connect, deletePrefix, firedSeqs, freePort, testEnv, uniquePrefix, useServices, waitFor } from './helpers.js';
import { collect, graphql, isoIn, waitForFeedSubscriptions, wsClient } from './api-helpers.js';
import { compareSeq, createFeed, decodeCursor, encodeCursor } from '../src/scheduler/feed.js';
import { createKeys, type Keys } from '../src/scheduler/keys.js';
import type { Redis } from 'ioredis';
import { createChannels, type Channels } from '../src/scheduler/pubsub.js';
import { SchedulerError } from '../src/scheduler/errors.js';
import { DelayedTaskDocument, DelayedTasksDocument, TaskFiredDocument, type TaskFiredSubscription } from './gql/graphql.js';

/** A fired event's task, as complete.lua writes it. */
function firedTaskJson(id: string, message: string) {
  const now = Date.now();
  return { id, message, time: now, createdAt: now, firedAt: now, lateByMs: 0, attempts: 1, firedBy: 'test', status: 'FIRED' };
}

/** Appends an event to a fired log and publishes it, as complete.lua of an earlier version did: an entry and a seq per event. */
async function fire(redis: Redis, keys: Keys, partition: number, task: ReturnType<typeof firedTaskJson>): Promise<void> {
  const [last] = await redis.xrevrange(keys.fired(partition), '+', '-', 'COUNT', 1);
  const seq = await redis.xadd(keys.fired(partition), '*', 'e', JSON.stringify(task));
  await redis.publish(keys.firedChannel(partition), JSON.stringify({ partition, prev: last ? last[0] : '0-0', seqs: [seq], tasks: [task] }));
}

/**
 * Events came in the order they fired: each partition's exactly (its log's order), and across
 * partitions by the millisecond they fired in. Within one millisecond, events of different
 * partitions fired concurrently and have no order to keep.
 */
function expectFireOrder(ids: string[], seqs: Map<string, string>): void {
  const lastOfPartition = new Map<string, string>();
  let lastMs = 0n;
  for (const id of ids) {
    const seq = seqs.get(id)!;
    const ms = BigInt(seq.split('-')[0]!);
    expect(ms >= lastMs, `${id} fired at ${ms}, before the event ahead of it (${lastMs})`).toBe(true);
    lastMs = ms;
    const partition = id.split('-')[0]!;
    const previous = lastOfPartition.get(partition);
    if (previous) expect(compareSeq(seq, previous), `${id} out of its partition's order`).toBeGreaterThan(0);
    lastOfPartition.set(partition, seq);
  }
}

describe.each(BACKENDS)('the feed on %s', (backend) => {
  const suite = useServices(beforeAll, afterAll, backend);

  describe('taskFired across processes', () => {
    const processes: ServiceProcess[] = [];
    const prefix = uniquePrefix('api-3proc');
    afterAll(async () => {
      await Promise.all(processes.map((child) => child.stop().catch(() => child.kill('SIGKILL'))));
      await deletePrefix(suite.redis, prefix);
    });

    it('a subscriber on API process A receives the task scheduled through API process B and fired by worker C', async () => {
      const [portA, portB] = [await freePort(), await freePort()];
      const apiA = new ServiceProcess(testEnv(prefix, { ROLE: 'api', PORT: String(portA), LOG_LEVEL: 'info' }, backend));
      const apiB = new ServiceProcess(testEnv(prefix, { ROLE: 'api', PORT: String(portB), LOG_LEVEL: 'info' }, backend));
      const worker = new ServiceProcess(testEnv(prefix, { ROLE: 'worker', LOG_LEVEL: 'info' }, backend));
      processes.push(apiA, apiB, worker);
      await Promise.all([apiA.started(60_000), apiB.started(60_000), worker.started(60_000)]);

      const client = wsClient(`http://127.0.0.1:${portA}/graphql`);
      const feed = collect(client, TaskFiredDocument, {});
      try {
        // The subscription is open before the API has registered it with its feed; wait for that.
        await waitForFeedSubscriptions(`http://127.0.0.1:${portA}/graphql`, 1);
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
      const { service } = await suite.serviceFor('api-resume', { PORT: '0' });
      const url = `http://127.0.0.1:${service.server!.port}/graphql`;

      // 1. A first subscriber receives one event and keeps its cursor.
      const first = wsClient(url);
      const before = collect(first, TaskFiredDocument, {});
      await waitForFeedSubscriptions(url, 1);
      await graphql(url, DelayedTaskDocument, { message: 'before', time: isoIn(0) });
      await before.waitForCount(1, 15_000);
      const cursor = before.events[0]!.taskFired.cursor;
      before.stop();
      await first.dispose();
      await waitForFeedSubscriptions(url, 0);

      // 2. 100 tasks fire while nobody listens.
      const missed = await graphql(url, DelayedTasksDocument, {
        tasks: Array.from({ length: 100 }, (_, i) => ({ message: `missed ${i}`, time: isoIn(i) })),
      });
      expect(missed.errors).toBeUndefined();
      const missedIds = missed.data!.delayedTasks.map((task) => task.id);
      await waitFor(async () => (await firedSeqs(suite.redis, service.keys)).size >= 101, 30_000, 'the 100 tasks to fire');

      // 3. Resume with the cursor; live tasks scheduled at once may fire during the replay.
      const second = wsClient(url);
      const after = collect(second, TaskFiredDocument, { after: cursor });
      try {
        await waitForFeedSubscriptions(url, 1);
        const live = await graphql(url, DelayedTasksDocument, { tasks: Array.from({ length: 5 }, (_, i) => ({ message: `live ${i}`, time: isoIn(0) })) });
        const liveIds = live.data!.delayedTasks.map((task) => task.id);
        await after.waitForCount(105, 30_000);

        const received = after.events.map((event) => event.taskFired.task.id);
        const seqs = await firedSeqs(suite.redis, service.keys);
        expect(new Set(received.slice(0, 100))).toEqual(new Set(missedIds));
        expectFireOrder(received, seqs);
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
          const replayed = again.events.map((event: TaskFiredSubscription) => event.taskFired.task.id);
          expect(new Set(replayed)).toEqual(new Set(received.slice(50)));
          expect(replayed).toHaveLength(55);
          expectFireOrder(replayed, seqs);
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

  describe('a live subscription when pub/sub loses a message', () => {
    it('catches up from the fired log within a few seconds', async () => {
      const { service } = await suite.serviceFor('api-catchup', { PORT: '0' });
      const url = `http://127.0.0.1:${service.server!.port}/graphql`;
      const client = wsClient(url);
      const feed = collect(client, TaskFiredDocument, {});
      try {
        await waitForFeedSubscriptions(url, 1);
        // A first event, live, shows the subscription has taken its position in the logs.
        const fired = await graphql(url, DelayedTaskDocument, { message: 'published', time: isoIn(0) });
        await feed.waitForCount(1, 15_000);
        // An event in a log that was never published, as when the subscriber connection was down.
        const task = firedTaskJson('1-lostlostlostlost0', 'never published');
        await suite.redis.xadd(service.keys.fired(1), '*', 'e', JSON.stringify(task));
        await feed.waitForCount(2, 10_000);
        expect(feed.events[1]!.taskFired.task).toMatchObject({ id: task.id, message: 'never published', status: 'FIRED' });
        // Nothing twice.
        await new Promise((resolve) => setTimeout(resolve, 2500));
        expect(feed.events.map((event) => event.taskFired.task.id)).toEqual([fired.data!.delayedTask.id, task.id]);
      } finally {
        feed.stop();
        await client.dispose();
      }
    });
  });
});

describe('the feed, against the race at subscribe', () => {
  /** A feed of its own over 4 partitions, with what it was built on; torn down after `body`. */
  async function withFeed(
    name: string,
    feedBufferMax: number,
    body: (ctx: { redis: Redis; subscriber: Redis; keys: Keys; feed: ReturnType<typeof createFeed> }) => Promise<void>,
    wrapChannels: (channels: Channels, redis: Redis, keys: Keys) => Channels = (channels) => channels,
  ): Promise<void> {
    const prefix = uniquePrefix(name);
    const keys = createKeys(prefix, 4);
    const redis = await connect();
    const subscriber = await connect();
    const channels = wrapChannels(createChannels(subscriber), redis, keys);
    const feed = createFeed({ redis, channels, subscriber, getTasks: async (ids) => ids.map(() => null) }, keys, { feedBufferMax });
    try {
      await body({ redis, subscriber, keys, feed });
    } finally {
      await feed.stop();
      await deletePrefix(redis, prefix);
      await subscriber.quit();
      await redis.quit();
    }
  }

  it('an event published between SUBSCRIBE and the read of the log tails is the start of the feed, not delivered twice or after later ones', async () => {
    const raced = firedTaskJson('2-racedracedraced00', 'in the gap');
    // Fires the event, as complete.lua does, right after Redis confirmed the subscription: its
    // message may reach the subscriber connection only after the tails were read.
    const racing = (channels: Channels, redis: Redis, keys: Keys): Channels => ({
      async listen(channel, handler) {
        const stop = await channels.listen(channel, handler);
        await fire(redis, keys, 2, raced);
        return stop;
      },
    });
    await withFeed(
      'api-feed-race',
      100,
      async ({ redis, keys, feed }) => {
        const events = await feed.subscribe();
        const later = firedTaskJson('2-laterlaterlater00', 'after subscribe');
        await fire(redis, keys, 2, later);
        const first = await events.next();
        expect(first.value!.task.id).toBe(later.id);
        await events.return!();
      },
      racing,
    );
  });

  it('lets a subscriber too slow for its buffer read from the logs, and ends it only when the logs lost its events', async () => {
    await withFeed('api-feed-slow', 20, async ({ redis, subscriber, keys, feed }) => {
      const publishAll = async (ids: string[]) => {
        for (const [i, id] of ids.entries()) await fire(redis, keys, Number(id[0]), firedTaskJson(id, `slow ${i}`));
        // Every message has reached the subscriber connection once a PING there is answered.
        await subscriber.ping();
      };
      // 50 events while the subscriber reads nothing: its buffer holds 20.
      const slow = await feed.subscribe();
      const ids = Array.from({ length: 50 }, (_, i) => `${i % 4}-slowslowslowslow${String(i).padStart(2, '0')}`);
      await publishAll(ids);
      const received: string[] = [];
      for await (const event of slow) {
        received.push(event.task.id);
        if (received.length === 50) break;
      }
      expect(new Set(received)).toEqual(new Set(ids));
      expectFireOrder(received, await firedSeqs(redis, keys));

      // Again, but the log of partition 0 is trimmed meanwhile: the events are gone.
      const slower = await feed.subscribe();
      const more = Array.from({ length: 50 }, (_, i) => `0-trimtrimtrimtrim${String(i).padStart(2, '0')}`);
      await publishAll(more);
      await redis.xtrim(keys.fired(0), 'MAXLEN', 5);
      await expect(
        (async () => {
          for await (const event of slower) void event;
        })(),
      ).rejects.toMatchObject({ code: 'UNAVAILABLE', details: { reason: 'SLOW_SUBSCRIBER' } });
    });
  });

  it('refuses a cursor from another number of partitions or of another shape', async () => {
    expect(() => decodeCursor(encodeCursor(['1-0', '2-0']), 4)).toThrow(/2 partitions/);
    expect(() => decodeCursor('f1.!!!', 4)).toThrow(SchedulerError);
    expect(() => decodeCursor(`f1.${Buffer.from('a,b,c,d').toString('base64url')}`, 4)).toThrow(SchedulerError);
    expect(decodeCursor(encodeCursor(['1-0', '0-0', '5-3', '9-9']), 4)).toEqual(['1-0', '0-0', '5-3', '9-9']);
  });
});
