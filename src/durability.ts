/**
 * What "accepted" means, and whether Redis keeps that promise.
 *
 * `memory`: a write is answered once Redis has it in memory; what a crash loses depends on
 * Redis's persistence, which is read and logged at start. `disk`: answered only once the
 * write is on disk. Redis does that when it fsyncs its AOF before it answers
 * (`appendonly yes`, `appendfsync always`): on every version, and with group commit (one fsync
 * for all the writes of an event-loop round). WAITAOF (Redis 7.2) would add nothing under
 * `always` and, under `everysec`, would hold each write until the next once-a-second fsync.
 */
import type { Redis } from 'ioredis';
import { type RedisClient, isCluster } from './redis.js';
import type { Logger } from './log.js';

export type Durability = 'memory' | 'disk';

export interface Persistence {
  aof: boolean;
  /** `appendfsync`, or undefined when Redis refuses CONFIG (as managed services often do). */
  fsync: string | undefined;
  /** RDB snapshots (assumed on when CONFIG is refused). */
  rdb: boolean;
}

export class DurabilityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DurabilityError';
  }
}

/** How Redis persists; on a cluster, the weakest of its masters (each holds its partitions' only first copy). */
export async function readPersistence(redis: RedisClient): Promise<Persistence> {
  if (!isCluster(redis)) return readNode(redis);
  const masters = await Promise.all(redis.nodes('master').map(readNode));
  const weaker = masters.find((node) => node.fsync !== 'always') ?? masters[0]!;
  return { aof: masters.every((node) => node.aof), fsync: masters.every((node) => node.fsync === 'always') ? 'always' : weaker.fsync, rdb: masters.some((node) => node.rdb) };
}

async function readNode(redis: Redis): Promise<Persistence> {
  const aof = /aof_enabled:1/.test(await redis.info('persistence'));
  try {
    const [, fsync] = (await redis.config('GET', 'appendfsync')) as [string, string];
    const [, save] = (await redis.config('GET', 'save')) as [string, string];
    return { aof, fsync, rdb: save.trim() !== '' };
  } catch {
    return { aof, fsync: undefined, rdb: true };
  }
}

/** Why Redis cannot give `durability` now, or undefined when it can. */
export function durabilityShortfall(durability: Durability, persistence: Persistence): string | undefined {
  if (durability === 'memory' || (persistence.aof && persistence.fsync === 'always')) return undefined;
  const now = `now appendonly ${persistence.aof ? 'yes' : 'no'}, appendfsync ${persistence.fsync ?? 'unknown (CONFIG GET refused)'}`;
  return `DURABILITY=disk needs a Redis that writes every change to disk before it answers: set appendonly yes and appendfsync always on Redis (${now}), or set DURABILITY=memory`;
}

/** What a crash can take back of what was accepted, under these settings. */
export function whatACrashLoses(persistence: Persistence): string {
  if (persistence.aof && persistence.fsync === 'always') return 'nothing accepted is lost by a crash of Redis or a power loss (appendfsync always)';
  if (persistence.aof) return `a crash of Redis alone loses at most the last ~2 s if the disk is slow; a power loss the last ~1-2 s (appendfsync ${persistence.fsync ?? 'unknown'})`;
  if (persistence.rdb) return 'a restart of Redis loses everything since its last RDB snapshot: turn on AOF (appendonly yes)';
  return 'Redis persists nothing (appendonly no, save ""): scheduled tasks are lost if Redis restarts. Turn on AOF: appendonly yes';
}

/**
 * At start: refuses a Redis that cannot give the durability asked for, and logs what
 * "accepted" means (a warning when Redis persists nothing).
 */
export async function checkDurability(redis: RedisClient, durability: Durability, log: Logger): Promise<void> {
  const persistence = await readPersistence(redis);
  const shortfall = durabilityShortfall(durability, persistence);
  if (shortfall) throw new DurabilityError(shortfall);
  const loses = whatACrashLoses(persistence);
  if (!persistence.aof && !persistence.rdb) log.warn(loses);
  else log.info({ durability, appendfsync: persistence.fsync }, `accepted means stored in Redis: ${loses}`);
}
