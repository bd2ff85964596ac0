/**
 * A cluster master killed (kill -9) under steady load: its replica is promoted, and the same
 * worker and API processes carry on without a restart. With REDIS_WAIT_REPLICAS=1 every
 * accepted task fires once, none early, each taskFired event reaches the subscriber once, and
 * the feed resumes without a gap.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type LocalCluster } from '../scripts/cluster.js';
import { ServiceProcess, connectBackend, freePort, sleep, uniquePrefix, waitFor } from './helpers.js';
import { collect, graphql, waitForFeedSubscriptions, wsClient } from './api-helpers.js';
import { DelayedTaskDocument, TaskFiredDocument } from './gql/graphql.js';
import { createKeys, slotOf } from '../src/scheduler/keys.js';
import type { RedisClient } from '../src/redis.js';

const PARTITIONS = 6;

let cluster: LocalCluster;
let redis: RedisClient;
const processes: ServiceProcess[] = [];

beforeAll(async () => {
  cluster = await startCluster({ nodeTimeoutMs: 1000 });
  redis = await connectBackend('cluster', cluster.seeds);
});

afterAll(async () => {
  await Promise.all(processes.map((child) => child.stop().catch(() => child.kill('SIGKILL'))));
  redis?.disconnect();
  await cluster?.stop();
});

describe('a cluster master killed under load', () => {
  it('promotes its replica; workers, API and feed carry on: nothing lost, early or twice', async () => {
    const prefix = uniquePrefix('failover');
    const keys = createKeys(prefix, PARTITIONS, true);
    const env = (role: string, port = '0') => ({
      REDIS_CLUSTER_NODES: cluster.seeds,
      KEY_PREFIX: prefix,
      PARTITIONS: String(PARTITIONS),
      REDIS_WAIT_REPLICAS: '1',
      ROLE: role,
      PORT: port,
      LOG_LEVEL: 'info',
      RECLAIM_IDLE_MS: '2000',
      SWEEP_MS: '500',
      READ_BLOCK_MS: '500',
      PRIVATE_REDIS: 'off',
    });
    const apiPort = await freePort();
    const api = new ServiceProcess(env('api', String(apiPort)));
    const workers = [new ServiceProcess(env('worker')), new ServiceProcess(env('worker'))];
    processes.push(api, ...workers);
    await Promise.all([api, ...workers].map((child) => child.started(60_000)));
    expect(api.logs().some((record) => /partitions on each of 3 masters/.test(record.msg))).toBe(true);

    const url = `http://127.0.0.1:${apiPort}/graphql`;
    const client = wsClient(url);
    const feed = collect(client, TaskFiredDocument, {});
    await waitForFeedSubscriptions(url, 1);

    // Steady load: 40 tasks a second for 8 s, each due 0.5-1.5 s after it is sent; a careful
    // client retries UNAVAILABLE with its idempotency key.
    const accepted = new Map<string, { message: string; time: number }>();
    let unavailable = 0;
    const send = async (i: number) => {
      const message = `failover ${i}`;
      const time = new Date(Date.now() + 500 + Math.floor(Math.random() * 1000)).toISOString();
      for (let attempt = 0; attempt < 100; attempt++) {
        const result = await graphql(url, DelayedTaskDocument, { message, time, idempotencyKey: message }).catch(() => undefined);
        const id = result?.data?.delayedTask.id;
        if (id) return accepted.set(id, { message, time: Date.parse(time) });
        unavailable += 1;
        await sleep(200);
      }
      throw new Error(`task ${i} was never accepted`);
    };
    const victim = await cluster.masterOf(slotOf(keys.schedule(0)));
    let killedAt = 0;
    let promotedAfterMs = 0;
    // The fault, beside the load: kill -9 at 3 s; once the replica took over, the old master
    // comes back (as its replica: until then WAIT 1 on that shard cannot be met).
    const fault = (async () => {
      await sleep(3000);
      await cluster.kill(victim);
      killedAt = Date.now();
      await cluster.healthy(30_000);
      promotedAfterMs = Date.now() - killedAt;
      await cluster.restart(victim);
      await cluster.healthy(30_000);
    })();
    const sending: Promise<unknown>[] = [];
    const startedAt = Date.now();
    for (let i = 0; i < 320; i++) {
      sending.push(send(i));
      await sleep(25);
    }
    await Promise.all([...sending, fault]);
    const promoted = await cluster.masterOf(slotOf(keys.schedule(0)));
    expect(promoted.port).not.toBe(victim.port);

    // Every accepted task printed once, FIRED, and its event on the feed once.
    await waitFor(() => feed.events.length >= accepted.size, 60_000, `all ${accepted.size} events on the feed (${feed.events.length} so far)`);
    await sleep(1000);
    const prints = workers.flatMap((worker) => worker.lines);
    const events = feed.events.map((event) => event.taskFired.task);
    const eventCounts = new Map<string, number>();
    for (const task of events) eventCounts.set(task.id, (eventCounts.get(task.id) ?? 0) + 1);
    const lost = [...accepted.keys()].filter((id) => !eventCounts.has(id));
    const duplicateEvents = [...eventCounts.values()].filter((n) => n > 1).length;
    const early = events.filter((task) => Date.parse(task.firedAt!) < Date.parse(task.time)).length;
    const printedMessages = new Set(prints);
    const notPrinted = [...accepted.values()].filter(({ message }) => !printedMessages.has(message)).length;
    const statuses = await Promise.all([...accepted.keys()].map((id) => redis.hget(keys.task(Number(id.split('-')[0]), id), 's')));
    // The stall the failover caused: the latest any task fired, against the kill.
    const worstLateMs = Math.max(...events.map((task) => task.lateByMs ?? 0));
    console.log(
      `failover: replica promoted ${promotedAfterMs} ms after the kill; ${accepted.size} accepted (${unavailable} UNAVAILABLE answers retried), lost ${lost.length}, early ${early}, duplicate events ${duplicateEvents}, duplicate prints ${prints.length - printedMessages.size}, not printed ${notPrinted}, worst lateness ${worstLateMs} ms (killed at ${killedAt - startedAt} ms into the load)`,
    );
    expect(lost).toEqual([]);
    expect(early).toBe(0);
    expect(duplicateEvents).toBe(0);
    expect(notPrinted).toBe(0);
    expect(statuses.every((status) => status === 'FIRED')).toBe(true);
    expect(feed.error).toBeUndefined();
    // The same processes throughout.
    for (const child of [api, ...workers]) expect(child.child.exitCode).toBeNull();
    feed.stop();
    await client.dispose();
  });
});
