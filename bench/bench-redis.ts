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

/** When the AOF is written to disk: `always` before Redis answers, `everysec` once a second. */
export type AofFsync = 'always' | 'everysec';

/** How a row or a log line names the setting: `, AOF always`; nothing with the AOF off. */
export function aofLabel(aof: AofFsync | null | undefined): string {
  return aof ? `, AOF ${aof}` : '';
}

/**
 * The only place that chooses redis-server's persistence, the same for both systems.
 *
 * Without `aof`: no persistence. BullMQ's published figures use Redis defaults, and an RDB
 * snapshot forking mid-run would disturb whichever system it hit. Production Punctual runs
 * with AOF on (see DESIGN.md); BENCHMARKS.md says so, and measures that too:
 *
 * With `aof`: the AOF on, fsynced as given (`always` is what DURABILITY=disk means on Redis
 * 7.0, `everysec` what the private Redis and docker-compose run). No RDB, and no automatic
 * AOF rewrite, whose fork would land mid-run on whichever system crossed the size line;
 * `flush` rewrites the emptied AOF between measurements instead, so each starts from the same
 * small file.
 */
export function redisSettings(aof?: AofFsync): string[] {
  if (!aof) return ['--appendonly', 'no', '--save', ''];
  return ['--appendonly', 'yes', '--appendfsync', aof, '--auto-aof-rewrite-percentage', '0', '--save', ''];
}

export interface CommandStat {
  command: string;
  calls: number;
  usec: number;
}

export interface BenchRedis {
  readonly url: string;
  readonly port: number;
  readonly version: string;
  /** The AOF's fsync setting; undefined when the AOF is off. */
  readonly aof: AofFsync | undefined;
  /** Every redis-server argument that differs from Redis's defaults (port and paths aside). */
  readonly settings: string[];
  /** Deletes every key; with the AOF on, also rewrites it (now nearly empty) and waits for that. */
  flush(): Promise<void>;
  usedMemory(): Promise<number>;
  /** Seconds of CPU (user + system) the server has used since it started. */
  cpuSeconds(): Promise<number>;
  /** Commands run since the server started, by every client (commands run by scripts included). */
  commandsProcessed(): Promise<number>;
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh redis-server with its data in a new temporary directory, removed on stop. */
export async function startBenchRedis(aof: AofFsync | undefined, extraArgs: string[] = []): Promise<BenchRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'punctual-bench-'));
  const port = await freePort();
  const settings = [...redisSettings(aof), ...extraArgs];
  const server = await startPrivateRedis({ port, dir, args: settings });
  killWithRunner(server.process);
  const control = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  control.on('error', () => {});
  await control.connect();
  const version = infoField(await control.info('server'), 'redis_version');
  return {
    url: server.url,
    port,
    version,
    aof,
    settings,
    async flush() {
      await control.flushall();
      if (!aof) return;
      await control.bgrewriteaof();
      const rewriting = /^aof_rewrite_(in_progress|scheduled):1$/m;
      while (rewriting.test(await control.info('persistence'))) await sleep(20);
    },
    async usedMemory() {
      return Number(infoField(await control.info('memory'), 'used_memory'));
    },
    async cpuSeconds() {
      const info = await control.info('cpu');
      return Number(infoField(info, 'used_cpu_user')) + Number(infoField(info, 'used_cpu_sys'));
    },
    async commandsProcessed() {
      return Number(infoField(await control.info('stats'), 'total_commands_processed'));
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
