/**
 * `npm test` needs nothing running. The core suites also run against a Redis Cluster: unless
 * PUNCTUAL_TEST_CLUSTER_NODES names one, the run starts 3 masters on loopback ports
 * (scripts/cluster.ts), shared by every file under unique prefixes, and stops them at
 * the end. The tests share the Redis at PUNCTUAL_TEST_REDIS_URL
 * (default redis://127.0.0.1:6379); when none answers there, the run starts a redis-server of
 * its own (no persistence) on a free port, hands its address to every test file through that
 * variable, and stops it at the end. Without redis-server installed, the run stops at once
 * with one line saying how to get it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisServerMissing, freePort, startPrivateRedis } from '../src/private-redis.js';
import { startCluster } from '../scripts/cluster.js';

const url = process.env.PUNCTUAL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function answers(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

export default async function setup(): Promise<() => Promise<void>> {
  const stopRedis = await sharedRedis();
  let stopCluster = async () => {};
  if (!process.env.PUNCTUAL_TEST_CLUSTER_NODES) {
    try {
      // No replicas: these suites need none (failover has a cluster of its own), and on two
      // cores replication would double the Redis work of every cluster test.
      const cluster = await startCluster({ replicas: 0 });
      process.env.PUNCTUAL_TEST_CLUSTER_NODES = cluster.seeds;
      stopCluster = () => cluster.stop();
    } catch (error) {
      await stopRedis?.();
      throw error;
    }
  }
  return async () => {
    await stopCluster();
    await stopRedis?.();
  };
}

async function sharedRedis(): Promise<(() => Promise<void>) | undefined> {
  if (await answers(url)) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'punctual-test-redis-'));
  try {
    const server = await startPrivateRedis({ port: await freePort(), dir, args: ['--appendonly', 'no', '--save', ''] });
    process.env.PUNCTUAL_TEST_REDIS_URL = server.url;
    process.stdout.write(`No Redis at ${url}: the tests use their own redis-server at ${server.url}\n`);
    return async () => {
      await server.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    if (error instanceof RedisServerMissing) throw oneLine(`npm test needs redis-server on the PATH (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), or a Redis at ${url}.`);
    throw error;
  }
}

/** An error that vitest reports as its message alone: no stack frames, no code excerpt. */
function oneLine(message: string): Error {
  const error = new Error(message);
  error.stack = `Error: ${message}`;
  return error;
}
