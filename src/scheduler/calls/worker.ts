/**
 * A worker's presence calls, typed: its heartbeat per partition (lua/heartbeat.lua), which
 * claim reads to tell a dead worker from a paused Redis, and the lease on its name
 * (lua/lease.lua).
 */
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from '../../redis.js';
import type { Keys } from '../keys.js';
import { runScript } from '../scripts.js';

/** Records a beat of `worker` in a partition, or with `leaving`, removes it; answers Redis time. */
export function heartbeat(client: RedisClient | ChainableCommander, keys: Keys, partition: number, worker: string, gapMs: number, leaving: boolean): Promise<number> {
  return runScript(client, 'heartbeat', [keys.liveness(partition)], [worker, gapMs, leaving ? 1 : 0]) as Promise<number>;
}

/**
 * Takes or renews the lease on a worker name for `ms` (0 gives it up). Answers '' when this
 * process (its `token`) holds it, or the token of the live process that does.
 */
export function leaseName(redis: RedisClient, keys: Keys, name: string, token: string, ms: number): Promise<string> {
  return runScript(redis, 'lease', [keys.workerLease(name)], [token, ms]) as Promise<string>;
}
