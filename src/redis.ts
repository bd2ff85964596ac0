/**
 * Redis connections. Each process keeps separate connections for commands, blocking stream
 * reads and pub/sub, so a blocking read never delays a command. Nothing connects until a
 * factory is called.
 */
import { Redis, type RedisOptions } from 'ioredis';

export type ConnectionPurpose = 'commands' | 'blocking' | 'subscriber';

/** How long a command may wait (queued while reconnecting, or in flight) before it fails. */
export const COMMAND_TIMEOUT_MS = 1200;

export function createRedis(url: string, purpose: ConnectionPurpose, name = 'punctual'): Redis {
  const options: RedisOptions = {
    connectionName: `${name}:${purpose}`,
    // Reconnect forever, quickly at first: workers must resume by themselves after a Redis restart.
    retryStrategy: (times) => Math.min(50 * times, 1000),
    maxRetriesPerRequest: purpose === 'commands' ? 1 : null,
    // No auto-pipelining: it holds each batch until the one before is answered, so one
    // command stuck on a paused Redis would make every later one wait its whole timeout.
    enableAutoPipelining: false,
    lazyConnect: true,
  };
  // A blocking XREADGROUP legitimately waits; every other command fails fast, never hangs.
  if (purpose !== 'blocking') options.commandTimeout = COMMAND_TIMEOUT_MS;
  const redis = new Redis(url, options);
  // ioredis emits 'error' on every failed reconnect; callers log state changes themselves.
  redis.on('error', () => {});
  return redis;
}

/** Redis TIME in whole milliseconds. */
export async function redisTimeMs(redis: Redis): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}
