/**
 * The shared feed of an API process: every subscriber gets every event exactly once, in each
 * partition's order, whatever pub/sub drops (gaps are found by sequence); a replay that meets
 * a trimmed log fails rather than skip; `ids` watches a few tasks, one that fired before the
 * subscription included. Live results written straight to the sockets are graphql-ws's exact
 * messages, and a client that stops reading neither loses events nor slows the others.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { createFeed } from '../src/scheduler/feed.js';
import { encodeCursor } from '../src/scheduler/feed-cursor.js';
import { createKeys } from '../src/scheduler/keys.js';
import { createChannels } from '../src/scheduler/pubsub.js';
import { compareSeq } from '../src/scheduler/fired-log.js';
import { connect, deletePrefix, firedSeqs, redisNow, sleep, startRedisServer, startService, testEnv, uniquePrefix, useServices, waitFor } from './helpers.js';
import { collect, collectSse, graphql, isoIn, waitForFeedSubscriptions, wsClient, type Collected } from './api-helpers.js';
import { DelayedTaskDocument } from './gql/graphql.js';

const services = useServices(beforeAll, afterAll);

interface Fired {
  taskFired: { cursor: string; task: { id: string; message: string } };
}
const TASK_FIRED = parse('subscription ($after: String, $ids: [ID!]) { taskFired(after: $after, ids: $ids) { cursor task { id message } } }') as TypedDocumentNode<
  Fired,
  { after?: string; ids?: string[] }
>;

describe('20 subscribers while Redis drops the pub/sub connection every 700 ms', () => {
  it('each receives every one of 3,000 events exactly once, in each partition order, and none ends in error', { timeout: 120_000 }, async () => {
    const redisServer = await startRedisServer(['--appendonly', 'no']);
    const prefix = uniquePrefix('feed-drops');
    const running = await startService(testEnv(prefix, { REDIS_URL: redisServer.url, PARTITIONS: '4' }));
    const url = `http://127.0.0.1:${running.service.server!.port}/graphql`;
    const control = new Redis(redisServer.url);
    const clients = Array.from({ length: 20 }, () => wsClient(url));
    try {
      const feeds: Collected<Fired>[] = clients.map((client) => collect(client, TASK_FIRED, {}));
      await waitForFeedSubscriptions(url, 20);
      // 3,000 tasks due over 10 s: 300 a second.
      const start = (await redisNow(control)) + 1000;
      const tasks = [];
      for (let chunk = 0; chunk < 3; chunk++) {
        tasks.push(...(await running.service.store.scheduleMany(Array.from({ length: 1000 }, (_, i) => ({ message: `drop ${chunk * 1000 + i}`, time: start + Math.floor((chunk * 1000 + i) / 0.3) })))));
      }
      let kills = 0;
      for (const until = Date.now() + 11_000; Date.now() < until; kills++) {
        await sleep(700);
        await control.client('KILL', 'TYPE', 'pubsub');
      }
      const ids = new Set(tasks.map((task) => task.id));
      await waitFor(async () => (await firedSeqs(control, createKeys(prefix, 4))).size >= ids.size, 30_000, 'every task to fire');
      await waitFor(() => feeds.every((feed) => feed.events.length >= ids.size || feed.error), 15_000, 'every event at every subscriber');
      await sleep(1500);
      const seqs = await firedSeqs(control, createKeys(prefix, 4));
      for (const feed of feeds) {
        expect(feed.error).toBeUndefined();
        const received = feed.events.map((event) => event.taskFired.task.id);
        expect(received.length).toBe(ids.size);
        expect(new Set(received)).toEqual(ids);
        const last = new Map<string, string>();
        for (const id of received) {
          const previous = last.get(id[0]!);
          if (previous) expect(compareSeq(seqs.get(id)!, previous)).toBeGreaterThan(0);
          last.set(id[0]!, seqs.get(id)!);
        }
      }
      console.log(`pub/sub drops: ${kills} kills, 20 subscribers x ${ids.size} events, 0 missed, 0 twice`);
    } finally {
      for (const client of clients) await client.dispose();
      control.disconnect();
      await running.stop();
      await redisServer.cleanup();
    }
  });
});

describe('a replay racing the log cap', () => {
  it('fails with CURSOR_EXPIRED when the log is trimmed past its position between the check and a page', async () => {
    const prefix = uniquePrefix('feed-trim');
    const keys = createKeys(prefix, 1);
    const redis = await connect();
    const subscriber = await connect();
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) ids.push(await redis.xadd(keys.fired(0), '*', 'e', JSON.stringify({ id: `0-trim${i}`, message: `m${i}`, time: 0, createdAt: 0, firedAt: 0, lateByMs: 0, attempts: 1, firedBy: 'w' })) as string);
    await redis.xtrim(keys.fired(0), 'MAXLEN', 100);
    // The first XRANGE of the replay trims the log first, as a commit's cap would meanwhile.
    const trimming = new Proxy(redis, {
      get(target, name, receiver) {
        if (name !== 'xrange') return Reflect.get(target, name, receiver);
        return async (...args: Parameters<Redis['xrange']>) => {
          await target.xtrim(keys.fired(0), 'MAXLEN', 50);
          return target.xrange(...args);
        };
      },
    });
    const feed = createFeed({ redis: trimming, channels: createChannels(subscriber), subscriber, getTasks: async (list) => list.map(() => null) }, keys, { feedBufferMax: 100 });
    try {
      const [first] = (await redis.xrange(keys.fired(0), '-', '+', 'COUNT', 1)) as [string, string[]][];
      const events = await feed.subscribe(encodeCursor([first![0]]));
      await expect(events.next()).rejects.toMatchObject({ code: 'BAD_USER_INPUT', details: { reason: 'CURSOR_EXPIRED' } });
    } finally {
      await feed.stop();
      await deletePrefix(redis, prefix);
      subscriber.disconnect();
      redis.disconnect();
    }
  });
});

describe('taskFired(ids)', () => {
  it('delivers a watched task that fired before the subscription at once, then only watched tasks, each once', async () => {
    const { service } = await services.serviceFor('feed-ids', { PORT: '0' });
    const url = `http://127.0.0.1:${service.server!.port}/graphql`;
    const early = (await graphql(url, DelayedTaskDocument, { message: 'fired before', time: isoIn(0) })).data!.delayedTask.id;
    await waitFor(async () => (await service.store.get(early))?.status === 'FIRED', 10_000, 'the first task to fire');
    const later = (await graphql(url, DelayedTaskDocument, { message: 'watched', time: isoIn(1500) })).data!.delayedTask.id;
    const other = (await graphql(url, DelayedTaskDocument, { message: 'not watched', time: isoIn(1000) })).data!.delayedTask.id;
    const client = wsClient(url);
    try {
      const feed = collect(client, TASK_FIRED, { ids: [early, later] });
      await feed.waitForCount(2, 15_000);
      await waitFor(async () => (await service.store.get(other))?.status === 'FIRED', 10_000, 'the other task to fire');
      await sleep(500);
      expect(feed.events.map((event) => event.taskFired.task.id)).toEqual([early, later]);
      expect(feed.error).toBeUndefined();

      const tooMany = collect(client, TASK_FIRED, { ids: Array.from({ length: 101 }, (_, i) => `0-${String(i).padStart(16, '0')}`) });
      await waitFor(() => tooMany.error, 5000, 'the refusal');
      expect(JSON.stringify(tooMany.error)).toContain('BAD_USER_INPUT');
    } finally {
      await client.dispose();
    }
  });
});

describe('a silent WebSocket peer', () => {
  it('is closed by the keep-alive and its subscription released', async () => {
    const { service } = await services.serviceFor('feed-silent', { PORT: '0', WS_KEEPALIVE_MS: '500' });
    const url = `http://127.0.0.1:${service.server!.port}/graphql`;
    // A peer that never answers a ping, as one behind a dropped NAT entry looks to the server.
    const socket = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws', { autoPong: false });
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    const acked = new Promise<void>((resolve) => socket.on('message', (data) => JSON.parse(String(data)).type === 'connection_ack' && resolve()));
    await new Promise<void>((resolve) => socket.on('open', () => resolve()));
    socket.send(JSON.stringify({ type: 'connection_init' }));
    await acked;
    socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: 'subscription { taskFired { cursor } }' } }));
    await waitForFeedSubscriptions(url, 1);
    const openedAt = Date.now();
    await closed;
    // Pinged at 500 ms, terminated when the next ping finds no answer: about 1 s.
    expect(Date.now() - openedAt).toBeLessThan(5000);
    await waitForFeedSubscriptions(url, 0);
  });
});

/** A graphql-transport-ws client on a bare `ws` socket: every message it receives, as text. */
async function rawSubscriber(url: string, id: string, query: string) {
  const socket = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws');
  const messages: string[] = [];
  socket.on('message', (data) => {
    const text = String(data);
    if (JSON.parse(text).type === 'connection_ack') socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query } }));
    else messages.push(text);
  });
  await new Promise<void>((resolve) => socket.on('open', () => resolve()));
  socket.send(JSON.stringify({ type: 'connection_init' }));
  return { socket, messages };
}

describe('live results written straight to the sockets', () => {
  it('are graphql-ws messages byte for byte, the same events as over graphql-ws and SSE', async () => {
    const { service } = await services.serviceFor('feed-bytes', { PORT: '0' });
    const url = `http://127.0.0.1:${service.server!.port}/graphql`;
    const query = 'subscription { taskFired { cursor task { id message } } }';
    // An id that JSON must escape, as a client may choose any string.
    const raw = await rawSubscriber(url, 'live "1"\\', query);
    const client = wsClient(url);
    try {
      const overWs = collect(client, TASK_FIRED, {});
      const overSse = await collectSse(url, TASK_FIRED, {});
      await waitForFeedSubscriptions(url, 3);
      const messages = ['plain', 'quote " and backslash \\', 'line\nbreak', 'unicode é ✓ 🎉'];
      await service.store.scheduleMany(messages.map((message) => ({ message, time: Date.now() })));
      await waitFor(() => raw.messages.length >= messages.length && overWs.events.length >= messages.length && overSse.events.length >= messages.length, 15_000, 'every event on every transport');
      const payloads = raw.messages.map((text) => {
        const message = JSON.parse(text) as { id: string; type: string; payload: { data: Fired } };
        // graphql-ws writes JSON.stringify({ id, type, payload }): the same keys, in that order.
        expect(text).toBe(JSON.stringify({ id: 'live "1"\\', type: 'next', payload: message.payload }));
        return message.payload.data;
      });
      expect(payloads.map((data) => data.taskFired.task.message).sort()).toEqual([...messages].sort());
      expect(overWs.events).toEqual(payloads);
      expect(overSse.events).toEqual(payloads);
      overSse.stop();
    } finally {
      raw.socket.terminate();
      await client.dispose();
    }
  });

  it('let a client that stops reading fall back to its buffer and the logs, without slowing the others', { timeout: 120_000 }, async () => {
    const { service } = await services.serviceFor('feed-stalled', { PORT: '0', FEED_BUFFER_MAX: '100' });
    const url = `http://127.0.0.1:${service.server!.port}/graphql`;
    const stalled = await rawSubscriber(url, '1', 'subscription { taskFired { task { id message } } }');
    const client = wsClient(url);
    try {
      const reading = collect(client, TASK_FIRED, {});
      await waitForFeedSubscriptions(url, 2);
      // 400 events of 32 KB: far more than the socket buffers of both ends hold, so the stalled
      // client's events back up into the API (its socket's limit, then its feed buffer of 100).
      stalled.socket.pause();
      const big = 'x'.repeat(32 * 1024);
      const tasks = [];
      // In calls of 20 (640 KB each): one call of 12.8 MB can outlast the command timeout on a loaded machine.
      for (let first = 0; first < 400; first += 20) {
        tasks.push(...(await service.store.scheduleMany(Array.from({ length: 20 }, (_, i) => ({ message: `${first + i} ${big}`, time: Date.now() })))));
      }
      await reading.waitForCount(400, 60_000);
      expect(stalled.messages.length).toBeLessThan(400);
      stalled.socket.resume();
      await waitFor(() => stalled.messages.length >= 400, 60_000, 'the stalled client to catch up');
      await sleep(500);
      const received = stalled.messages.map((text) => (JSON.parse(text) as { type: string; payload: { data: Fired } }).payload.data.taskFired.task.id);
      expect(received).toHaveLength(400);
      expect(new Set(received)).toEqual(new Set(tasks.map((task) => task.id)));
      // In each partition, in the order the reading client got them (the order of the logs).
      const order = new Map(reading.events.map((event, i) => [event.taskFired.task.id, i]));
      for (const partition of ['0', '1', '2', '3']) {
        const mine = received.filter((id) => id.startsWith(`${partition}-`)).map((id) => order.get(id)!);
        expect(mine).toEqual([...mine].sort((a, b) => a - b));
      }
    } finally {
      stalled.socket.terminate();
      await client.dispose();
    }
  });
});
