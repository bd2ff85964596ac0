/**
 * The benchmark's own redis-server: on a free port of 127.0.0.1, data in a temporary
 * directory, the same settings for both systems, and helpers to flush it and read what it
 * spent (memory, CPU, per-command statistics).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startPrivateRedis } from '../src/private-redis.js';
import { killWithRunner } from './children.js';

/**
 * No persistence, for both systems: BullMQ's published figures use Redis defaults, and an
 * RDB snapshot forking mid-run would disturb whichever system it hit. Production Punctual
 * runs with AOF on (see DESIGN.md); BENCHMARKS.md says so.
 */
export const REDIS_SETTINGS = ['--appendonly', 'no', '--save', ''];

export interface CommandStat {
  command: string;
  calls: number;
  usec: number;
}

export interface BenchRedis {
  readonly url: string;
  readonly port: number;
  readonly version: string;
  flush(): Promise<void>;
  usedMemory(): Promise<number>;
  /** Seconds of CPU (user + system) the server has used since it started. */
  cpuSeconds(): Promise<number>;
  resetCommandStats(): Promise<void>;
  /** Per command since the last reset, the costliest first (commands run by scripts included). */
  commandStats(): Promise<CommandStat[]>;
  stop(): Promise<void>;
}

function infoField(info: string, field: string): string {
  const match = new RegExp(`^${field}:(.*)$`, 'm').exec(info);
  if (!match) throw new Error(`INFO has no ${field}`);
  return match[1]!.trim();
}

export async function startBenchRedis(extraArgs: string[] = []): Promise<BenchRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'punctual-bench-'));
  const port = await freePort();
  const server = await startPrivateRedis({ port, dir, args: [...REDIS_SETTINGS, ...extraArgs] });
  killWithRunner(server.process);
  const control = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  control.on('error', () => {});
  await control.connect();
  const version = infoField(await control.info('server'), 'redis_version');
  return {
    url: server.url,
    port,
    version,
    async flush() {
      await control.flushall();
    },
    async usedMemory() {
      return Number(infoField(await control.info('memory'), 'used_memory'));
    },
    async cpuSeconds() {
      const info = await control.info('cpu');
      return Number(infoField(info, 'used_cpu_user')) + Number(infoField(info, 'used_cpu_sys'));
    },
    async resetCommandStats() {
      await control.config('RESETSTAT');
    },
    async commandStats() {
      const info = await control.info('commandstats');
      const stats: CommandStat[] = [];
      for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
        stats.push({ command: match[1]!, calls: Number(match[2]), usec: Number(match[3]) });
      }
      return stats.sort((a, b) => b.usec - a.usec);
    },
    async stop() {
      control.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
