/**
 * Liveness and readiness.
 *
 * Alive: the process answers HTTP at all (an orchestrator restarts it otherwise). It does not
 * depend on Redis, or a Redis outage would restart every process for nothing.
 *
 * Ready: this process can do its work now. Redis answers; every Lua script is in Redis'
 * script cache (a Redis that restarted has none: the missing ones are loaded again here,
 * rather than reporting not-ready until some request happens to run each one); and, when the
 * process runs a worker, its fire loop has begun a round recently. A loop stuck longer than
 * one blocking read plus the reclaim idle time holds entries other workers will take over
 * anyway: that worker is stalled. A worker whose writes Redis refuses (out of memory,
 * read-only) claims nothing until one is accepted: not ready, naming the cause.
 */
import type { RedisClient } from './redis.js';
import type { Worker } from './scheduler/worker.js';
import { loadScripts, missingScripts } from './scheduler/scripts.js';
import { durabilityShortfall, readPersistence, type Durability } from './durability.js';

export interface HealthSources {
  redis: RedisClient;
  /** The worker of this process, when its role runs one. */
  worker?: Worker | undefined;
  readBlockMs: number;
  reclaimIdleMs: number;
  /** With `disk`, ready only while Redis still fsyncs every write (its settings can change under a running service). */
  durability: Durability;
}

export type CheckResult = { ok: true; detail?: string } | { ok: false; detail: string };

export interface Readiness {
  ready: boolean;
  checks: { redis: CheckResult; scripts?: CheckResult; durability?: CheckResult; fireLoop?: CheckResult; writes?: CheckResult };
}

export interface Health {
  ready(): Promise<Readiness>;
}

/** Longest a readiness check waits for Redis: a probe must answer even when Redis hangs. */
const REDIS_CHECK_TIMEOUT_MS = 1000;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const failed = (error: unknown): CheckResult => ({ ok: false, detail: error instanceof Error ? error.message : String(error) });

export function createHealth(sources: HealthSources): Health {
  const { redis, worker } = sources;
  const stallMs = sources.readBlockMs + sources.reclaimIdleMs;

  const checkScripts = async (): Promise<CheckResult> => {
    try {
      const missing = await withTimeout(missingScripts(redis), REDIS_CHECK_TIMEOUT_MS, 'SCRIPT EXISTS');
      if (missing.length === 0) return { ok: true };
      await withTimeout(loadScripts(redis), REDIS_CHECK_TIMEOUT_MS, 'SCRIPT LOAD');
      return { ok: true, detail: `loaded again: ${missing.join(', ')}` };
    } catch (error) {
      return failed(error);
    }
  };

  const checkDurability = async (): Promise<CheckResult> => {
    try {
      const shortfall = durabilityShortfall(sources.durability, await withTimeout(readPersistence(redis), REDIS_CHECK_TIMEOUT_MS, 'CONFIG GET'));
      return shortfall ? { ok: false, detail: shortfall } : { ok: true };
    } catch (error) {
      return failed(error);
    }
  };

  const checkFireLoop = (): CheckResult => {
    const lastLoopAt = worker!.firer.lastLoopAt;
    if (lastLoopAt === 0) return { ok: false, detail: 'the fire loop has not started' };
    const age = Date.now() - lastLoopAt;
    return age <= stallMs ? { ok: true } : { ok: false, detail: `the fire loop last began a round ${age} ms ago (limit ${stallMs} ms)` };
  };

  return {
    async ready() {
      const checks: Readiness['checks'] = { redis: { ok: true } };
      // A command on a connection that is not up would connect it behind the service's back
      // (lazyConnect) or wait in the offline queue: its status answers without a round trip.
      if (redis.status !== 'ready') checks.redis = { ok: false, detail: `connection ${redis.status}` };
      else {
        try {
          await withTimeout(redis.ping(), REDIS_CHECK_TIMEOUT_MS, 'PING');
          checks.scripts = await checkScripts();
          if (sources.durability === 'disk') checks.durability = await checkDurability();
        } catch (error) {
          checks.redis = failed(error);
        }
      }
      if (worker) {
        checks.fireLoop = checkFireLoop();
        const refusal = worker.firer.refusal;
        checks.writes = refusal ? { ok: false, detail: refusal } : { ok: true };
      }
      return { ready: Object.values(checks).every((check) => check.ok), checks };
    },
  };
}
