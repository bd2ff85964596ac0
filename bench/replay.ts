/**
 * Redis CPU per task of each firing step, replayed one step at a time on a private
 * redis-server: N tasks due now, then promote until the schedule is empty, then read +
 * claim, then complete, in batches the size a worker uses. Redis CPU is read from
 * INFO (used_cpu_user_main_thread + used_cpu_sys_main_thread) around each step, so the
 * figure is what Redis spent, without the client's share. No printing: this measures Redis.
 *
 *   npx tsx bench/replay.ts [--tasks 40000] [--repeat 2]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startPrivateRedis } from '../src/private-redis.js';
import { createKeys } from '../src/scheduler/keys.js';
import { createTaskStore } from '../src/scheduler/tasks.js';
import { defineScripts } from '../src/scheduler/scripts.js';
import { type Acquired, createFiringCalls, entriesFor, promote, TASKS_PER_ENTRY } from '../src/scheduler/calls/firing.js';
import { createPartitionClocks } from '../src/scheduler/redis-clock.js';
import { firingTimings } from '../src/scheduler/timings.js';

const PARTITIONS = 4;
const FIRE_BATCH = 500;
const PROMOTE_BATCH = 1000;
const argValue = (name: string, fallback: number) => {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
};

const SETTINGS = { dueEntryTasks: argValue('entry-tasks', TASKS_PER_ENTRY), maxDeliveries: 5, retentionMs: 86_400_000, reclaimIdleMs: 5000, sweepMs: 1000, firedLogMax: 100_000 };

async function redisCpuMs(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return (field('used_cpu_user_main_thread') + field('used_cpu_sys_main_thread')) * 1000;
}

/** Calls per task and µs per task of each command Redis ran since its stats were reset, costliest first. */
async function commandCosts(redis: Redis, tasks: number): Promise<string> {
  const info = await redis.info('commandstats');
  const rows = [...info.matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g)].map(([, name, calls, usec]) => ({ name: name!, calls: Number(calls), usec: Number(usec) }));
  return rows
    .filter((row) => row.name !== 'info' && row.name !== 'config')
    .sort((a, b) => b.usec - a.usec)
    .map((row) => `${row.name} ${(row.calls / tasks).toFixed(3)}/task ${(row.usec / tasks).toFixed(2)} µs`)
    .join(', ');
}

const showCommands = process.argv.includes('--commands');
const withAof = process.argv.includes('--aof');

/** Bytes the AOF has grown by since Redis started, 0 without one. */
async function aofBytes(redis: Redis): Promise<number> {
  const info = await redis.info('persistence');
  return Number(/aof_current_size:(\d+)/.exec(info)?.[1] ?? 0);
}

async function replay(redis: Redis, tasks: number, round: number): Promise<Record<string, number>> {
  const keys = createKeys(`replay${round}`, PARTITIONS);
  const store = createTaskStore(redis, keys, { horizonMs: 86_400_000, retentionMs: 86_400_000, maxMessageBytes: 65_536, maxBulk: 1000 });
  for (let p = 0; p < PARTITIONS; p++) await redis.xgroup('CREATE', keys.due(p), keys.group, '0', 'MKSTREAM');
  const now = Date.now();
  for (let i = 0; i < tasks; i += 1000) {
    await store.scheduleMany(Array.from({ length: Math.min(1000, tasks - i) }, (_, j) => ({ message: `${i + j}:${now}`, time: now })));
  }
  const figures: Record<string, number> = {};
  const measure = async (step: string, work: () => Promise<void>) => {
    if (showCommands) await redis.config('RESETSTAT');
    const before = await redisCpuMs(redis);
    const aofBefore = await aofBytes(redis);
    await work();
    figures[step] = (((await redisCpuMs(redis)) - before) * 1000) / tasks;
    if (withAof) process.stdout.write(`  ${step}: AOF ${(((await aofBytes(redis)) - aofBefore) / tasks).toFixed(0)} bytes/task\n`);
    if (showCommands) process.stdout.write(`  ${step}: ${await commandCosts(redis, tasks)}\n`);
  };

  const calls = createFiringCalls(redis, createPartitionClocks(redis, keys), keys, 'replay', SETTINGS, firingTimings(SETTINGS));
  await measure('promote', async () => {
    for (let p = 0; p < PARTITIONS; p++) {
      let moved = PROMOTE_BATCH;
      while (moved >= PROMOTE_BATCH) ({ moved } = await promote(redis, keys, p, PROMOTE_BATCH, SETTINGS.dueEntryTasks));
    }
  });

  const batches: { p: number; entries: [string, string][] }[] = [];
  await measure('read', async () => {
    for (let p = 0; p < PARTITIONS; p++) {
      for (;;) {
        const reply = (await redis.xreadgroup('GROUP', keys.group, 'replay', 'COUNT', entriesFor(FIRE_BATCH), 'STREAMS', keys.due(p), '>')) as
          | [string, [string, string[]][]][]
          | null;
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) break;
        batches.push({ p, entries: entries.map(([entry, fields]) => [entry, fields[1]!]) });
      }
    }
  });

  const claimed: Acquired[] = [];
  await measure('claim', async () => {
    for (const { p, entries } of batches) claimed.push(...(await calls.claim(new Map([[p, entries]]))));
  });

  await measure('complete', async () => {
    for (const { partition, tasks } of claimed) await calls.complete(new Map([[partition, tasks]]));
  });
  figures.total = figures.promote! + figures.read! + figures.claim! + figures.complete!;
  await redis.flushall();
  return figures;
}

const HELP = `Usage: npx tsx bench/replay.ts [--tasks N] [--repeat R] [--commands] [--aof] [--entry-tasks K]

Replays the firing path one step at a time on a private redis-server (started on a free
port, removed after) and prints the Redis CPU per task of each step: promote, read, claim,
complete. N tasks due now (default 40000), R rounds (default 2). One round swings about
3 µs: compare builds by alternating them. --commands also prints, after each step, the calls
and µs per task of each command Redis ran in it (INFO commandstats: wall time inside Redis,
commands a script runs counted apart from the script). --aof runs Redis with
\`--appendonly yes --appendfsync everysec\` and also prints the AOF bytes each step wrote per task. --entry-tasks K promotes K
tasks per due entry at most (DUE_ENTRY_TASKS, default 32; 1 as earlier versions).
`;

async function main() {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(HELP);
    return;
  }
  const tasks = argValue('tasks', 40_000);
  const repeat = argValue('repeat', 2);
  const dir = mkdtempSync(join(tmpdir(), 'punctual-replay-'));
  const port = await freePort();
  const aof = withAof ? ['--appendonly', 'yes', '--appendfsync', 'everysec', '--auto-aof-rewrite-percentage', '0'] : ['--appendonly', 'no'];
  const server = await startPrivateRedis({ port, dir, args: [...aof, '--save', ''] });
  const redis = new Redis({ port, host: '127.0.0.1' });
  defineScripts(redis);
  try {
    for (let round = 1; round <= repeat; round++) {
      const figures = await replay(redis, tasks, round);
      const line = Object.entries(figures)
        .map(([step, us]) => `${step} ${us.toFixed(1)}`)
        .join(', ');
      process.stdout.write(`round ${round}, ${tasks} tasks, Redis CPU µs per task: ${line}\n`);
    }
  } finally {
    redis.disconnect();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
