/**
 * The program around the core: settings, the print's escaping, starting a private Redis,
 * and stopping cleanly.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, symlinkSync, existsSync, readdirSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { ConfigError, loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { isListening } from '../src/private-redis.js';
import { privateRedisIfNeeded } from '../src/main.js';
import { escapeMessage } from '../src/scheduler/print.js';
import {
  LOG_LEVEL,
  ROOT,
  ServiceProcess,
  connect,
  deletePrefix,
  freePort,
  parseLogLines,
  redisNow,
  startRedisServer,
  startService,
  tempDir,
  testEnv,
  uniquePrefix,
  waitFor,
  readTasksAt,
} from './helpers.js';
import { Redis } from 'ioredis';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

/** Redis at url answers, or not, to a connection that does not retry. */
async function answers(url: string): Promise<boolean> {
  const probe = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  probe.on('error', () => {});
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

describe('settings', () => {
  it('has documented defaults', () => {
    const config = loadConfig({});
    expect(config.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(config.port).toBe(4000);
    expect(config.role).toBe('all');
    expect(config.keyPrefix).toBe('punctual');
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['ROLE', 'boss'],
    ['REDIS_URL', 'http://example'],
    ['PARTITIONS', '0'],
    ['RECLAIM_IDLE_MS', '-5'],
    ['KEY_PREFIX', 'a{b}'],
    ['LOG_LEVEL', 'loud'],
    ['REDIS_CLUSTER_NODES', 'redis-1'],
    ['REDIS_CLUSTER_NODES', 'redis-1:6379,redis-2:99999'],
    ['REDIS_WAIT_REPLICAS', '-1'],
  ])('refuses %s=%s naming the setting', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^${name}:`));
  });

  it.each([
    // A faster failover with the default sweep (1000 ms), and a slower sweep with the default reclaim (5000 ms).
    [{ RECLAIM_IDLE_MS: '1500' }],
    [{ SWEEP_MS: '3000' }],
    [{ RECLAIM_IDLE_MS: '2000', SWEEP_MS: '700' }],
  ])('refuses a sweep longer than a third of the reclaim idle time, naming both: %j', (env) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(/^SWEEP_MS: .*RECLAIM_IDLE_MS/);
  });

  it('takes a cluster from REDIS_CLUSTER_NODES, with 12 partitions by default, and refuses it beside REDIS_URL, naming both', () => {
    const config = loadConfig({ REDIS_CLUSTER_NODES: 'redis-1:6379, 10.0.0.2:7000,[::1]:7001', REDIS_WAIT_REPLICAS: '1' });
    expect(config.redisClusterNodes).toEqual([
      { host: 'redis-1', port: 6379 },
      { host: '10.0.0.2', port: 7000 },
      { host: '::1', port: 7001 },
    ]);
    expect(config.partitions).toBe(12);
    expect(config.redisWaitReplicas).toBe(1);
    expect(loadConfig({}).partitions).toBe(4);
    expect(loadConfig({}).redisWaitReplicas).toBe(0);
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'redis-1:6379', REDIS_URL: 'redis://redis:6379' })).toThrow(/^REDIS_CLUSTER_NODES: .*REDIS_URL/);
  });

  it('accepts a sweep of a third of the reclaim idle time or less', () => {
    expect(loadConfig({ RECLAIM_IDLE_MS: '1500', SWEEP_MS: '500' }).sweepMs).toBe(500);
    expect(loadConfig({ RECLAIM_IDLE_MS: '2000', SWEEP_MS: '500' }).reclaimIdleMs).toBe(2000);
    expect(loadConfig({}).sweepMs).toBe(1000);
  });

  it('stops the program at start with a message naming a bad setting', async () => {
    const child = new ServiceProcess({ PARTITIONS: 'many', PRIVATE_REDIS: 'off' });
    expect(await child.exited).toBe(2);
    expect(child.stderr.join('')).toMatch(/PARTITIONS: expected a whole number/);
  });
});

describe('the print', () => {
  it('escapes everything that could add a line or drive a terminal', () => {
    const hostile = 'a\nb\r\x1b[31mred\x07\u0085\u2028\u2029\u202e\u2066\x7f\\n\ud800';
    const line = escapeMessage(hostile);
    expect(line).toBe('a\\nb\\r\\u001b[31mred\\u0007\\u0085\\u2028\\u2029\\u202e\\u2066\\u007f\\\\n\\ud800');
    expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
    expect(escapeMessage('plain text, émoji 🎉 ok')).toBe('plain text, émoji 🎉 ok');
  });
});

describe('npm start', () => {
  it('starts a private redis-server (AOF on) when none is listening, and stops it on SIGTERM', async () => {
    const port = await freePort();
    const data = tempDir();
    const prefix = uniquePrefix('private');
    try {
      const child = new ServiceProcess(
        testEnv(prefix, { REDIS_URL: `redis://127.0.0.1:${port}`, PRIVATE_REDIS: 'on', DATA_DIR: data.dir, LOG_LEVEL: 'info' }),
      );
      await child.started();
      expect(child.logs().some((record) => /starting a private redis-server/.test(record.msg))).toBe(true);
      const redis = new Redis(`redis://127.0.0.1:${port}`);
      expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await redis.config('GET', 'dir')).toEqual(['dir', data.dir]);
      redis.disconnect();
      expect(await child.stop()).toBe(0);
      child.logs(); // every line it wrote, to the last, is a JSON log record
      expect(existsSync(join(data.dir, 'appendonlydir')) || readdirSync(data.dir).some((f) => f.includes('aof'))).toBe(true);
      // The private server went with the service.
      expect(await answers(`redis://127.0.0.1:${port}`)).toBe(false);
    } finally {
      data.cleanup();
    }
  });

  it('by default (PRIVATE_REDIS auto, no REDIS_URL) starts one with AOF on and its data in .data under the working directory, when nothing listens', async () => {
    const config = loadConfig({});
    expect(config.privateRedis).toBe('auto');
    expect(config.redisUrlFromEnv).toBe(false);
    expect(config.dataDir).toBe('.data');
    // The default address, 127.0.0.1:6379, is taken on a test machine: the same decision at
    // an address where nothing listens.
    const port = await freePort();
    const work = tempDir();
    const cwd = process.cwd();
    const log = createLogger('silent');
    process.chdir(work.dir);
    try {
      const server = await privateRedisIfNeeded({ ...config, redisUrl: `redis://127.0.0.1:${port}` }, log);
      expect(server).toBeDefined();
      cleanups.push(() => server!.stop('SIGKILL'));
      const dataDir = join(realpathSync(work.dir), '.data');
      const redis = new Redis(`redis://127.0.0.1:${port}`);
      try {
        expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
        expect(await redis.config('GET', 'appendfsync')).toEqual(['appendfsync', 'always']);
        expect(realpathSync(((await redis.config('GET', 'dir')) as string[])[1]!)).toBe(dataDir);
        await redis.set('written', '1');
        await waitFor(() => existsSync(join(dataDir, 'appendonlydir')), 5000, 'the AOF under .data');
      } finally {
        redis.disconnect();
      }
      await server!.stop();
      expect(await answers(`redis://127.0.0.1:${port}`)).toBe(false);
    } finally {
      process.chdir(cwd);
      work.cleanup();
    }
  });

  it.each([
    ['auto, with REDIS_URL set', { PRIVATE_REDIS: 'auto' }],
    ['off', { PRIVATE_REDIS: 'off' }],
  ])('starts no private redis-server when PRIVATE_REDIS is %s', async (_label, env) => {
    const port = await freePort();
    const data = tempDir();
    try {
      const config = loadConfig({ ...env, REDIS_URL: `redis://127.0.0.1:${port}`, DATA_DIR: join(data.dir, 'data') });
      expect(await privateRedisIfNeeded(config, createLogger('silent'))).toBeUndefined();
      expect(await isListening('127.0.0.1', port)).toBe(false);
      expect(existsSync(join(data.dir, 'data'))).toBe(false);
    } finally {
      data.cleanup();
    }
  });

  it('starts no private redis-server when one already listens at the address', async () => {
    const server = await startRedisServer();
    cleanups.push(() => server.cleanup());
    const data = tempDir();
    try {
      const config = loadConfig({ PRIVATE_REDIS: 'on', REDIS_URL: server.url, DATA_DIR: join(data.dir, 'data') });
      expect(await privateRedisIfNeeded(config, createLogger('silent'))).toBeUndefined();
      expect(existsSync(join(data.dir, 'data'))).toBe(false);
    } finally {
      data.cleanup();
    }
  });

  it('exits with a message saying how to get Redis when none is listening and redis-server is missing', async () => {
    const port = await freePort();
    const bin = mkdtempSync(join(tmpdir(), 'punctual-bin-'));
    symlinkSync(process.execPath, join(bin, 'node'));
    const child = new ServiceProcess({ REDIS_URL: `redis://127.0.0.1:${port}`, PRIVATE_REDIS: 'on', PATH: bin });
    expect(await child.exited).toBe(3);
    const stderr = child.stderr.join('');
    expect(stderr).toMatch(/redis-server is not installed.*apt-get install redis-server/s);
    // The log record, and one plain line for a person at a terminal.
    const lines = stderr.split('\n').filter(Boolean);
    expect(parseLogLines(lines.filter((line) => !line.startsWith('punctual: ')).join('\n')).some((r) => r.level === LOG_LEVEL.fatal)).toBe(true);
    expect(lines.filter((line) => line.startsWith('punctual: '))).toHaveLength(1);
  });

  it('warns at start when Redis persists nothing, and not when it keeps an AOF', async () => {
    const bare = await startRedisServer(['--appendonly', 'no', '--save', '']);
    cleanups.push(() => bare.cleanup());
    const durable = await startRedisServer();
    cleanups.push(() => durable.cleanup());
    const warnings = async (url: string) => {
      const child = new ServiceProcess(testEnv(uniquePrefix('warn'), { REDIS_URL: url, LOG_LEVEL: 'info', ROLE: 'worker' }));
      cleanups.push(async () => child.kill('SIGKILL'));
      await child.started();
      expect(await child.stop()).toBe(0);
      return child.logs().filter((record) => record.level === LOG_LEVEL.warn && /persists nothing/.test(record.msg));
    };
    const direct = new Redis(bare.url);
    expect(await direct.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
    expect(await direct.config('GET', 'save')).toEqual(['save', '']);
    direct.disconnect();
    expect(await warnings(bare.url)).toHaveLength(1);
    expect(await warnings(durable.url)).toEqual([]);
  });

  it('DURABILITY=disk refuses a Redis that does not fsync every write, naming appendfsync always; on one that does it starts, and /readyz fails if that setting is changed', async () => {
    const everysec = await startRedisServer(['--appendfsync', 'everysec']);
    cleanups.push(() => everysec.cleanup());
    const refused = new ServiceProcess(testEnv(uniquePrefix('disk'), { REDIS_URL: everysec.url, DURABILITY: 'disk', ROLE: 'worker' }));
    cleanups.push(async () => refused.kill('SIGKILL'));
    expect(await refused.exited).toBe(1);
    expect(refused.stderr.join('')).toMatch(/DURABILITY=disk .*appendfsync always .*now appendonly yes, appendfsync everysec/);

    const always = await startRedisServer();
    cleanups.push(() => always.cleanup());
    const port = await freePort();
    const child = new ServiceProcess(testEnv(uniquePrefix('disk'), { REDIS_URL: always.url, DURABILITY: 'disk', ROLE: 'worker', PORT: String(port), LOG_LEVEL: 'info' }));
    cleanups.push(async () => child.kill('SIGKILL'));
    await child.started();
    expect(child.logs().some((record) => /nothing accepted is lost/.test(record.msg))).toBe(true);
    const readyz = async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
    await waitFor(async () => (await readyz()) === 200, 10_000, '/readyz 200');
    const direct = new Redis(always.url);
    await direct.config('SET', 'appendfsync', 'everysec');
    direct.disconnect();
    const body = await waitFor(async () => {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`);
      return response.status === 503 ? ((await response.json()) as { checks: { durability?: { detail: string } } }) : null;
    }, 10_000, '/readyz 503');
    expect(body.checks.durability?.detail).toMatch(/appendfsync always/);
    expect(await child.stop()).toBe(0);
  });

  it.each(['SIGTERM', 'SIGINT'] as const)('on %s mid-stream a worker commits what it printed, leaves the group and exits 0; the rest fire later', async (signal) => {
    const prefix = uniquePrefix(signal.toLowerCase());
    const redis = await connect();
    cleanups.push(async () => {
      await deletePrefix(redis, prefix);
      await redis.quit();
    });
    const child = new ServiceProcess(testEnv(prefix, { ROLE: 'all', LOG_LEVEL: 'info', FIRE_BATCH: '10' }));
    cleanups.push(async () => child.kill('SIGKILL'));
    await child.started();
    const api = await startService(testEnv(prefix, { ROLE: 'api' }));
    const now = await redisNow(redis);
    // Due over 4 s: the signal comes while most are still to fire.
    const tasks = await api.service.store.scheduleMany(Array.from({ length: 1000 }, (_, i) => ({ message: `${signal} ${i}`, time: now + 200 + i * 4 })));
    await api.stop();
    await waitFor(() => child.lines.length > 0, 10_000, 'the first prints');
    const statusesNow = async () => (await readTasksAt(redis, prefix, tasks.map((t) => t.id))).map((task) => task?.status ?? null);
    expect(await child.stop(20_000, signal)).toBe(0);
    const statuses = await statusesNow();
    const logs = child.logs();
    expect(logs.some((record) => record.msg === 'stopping' && record.signal === signal)).toBe(true);

    // It stopped mid-stream: some fired, some were left for later.
    const fired = tasks.filter((_, i) => statuses[i] === 'FIRED');
    expect(fired.length).toBeGreaterThan(0);
    expect(fired.length).toBeLessThan(tasks.length);
    // What it printed is exactly what it committed: nothing left FIRING, nothing printed twice.
    expect(statuses.filter((status) => status === 'FIRING')).toEqual([]);
    expect(child.lines).toHaveLength(new Set(child.lines).size);
    expect([...child.lines].sort()).toEqual(fired.map((t) => t.message).sort());
    for (let p = 0; p < 4; p++) {
      const consumers = (await redis.xinfo('CONSUMERS', `{${prefix}:${p}}:due`, 'workers')) as unknown[];
      expect(consumers).toEqual([]);
    }

    // The rest fire on the next start, none of them again.
    const next = await startService(testEnv(prefix, { ROLE: 'worker' }));
    cleanups.push(() => next.stop());
    await waitFor(async () => (await statusesNow()).every((status) => status === 'FIRED'), 20_000, 'the rest to fire');
    await next.stop();
    const all = [...child.lines, ...next.out.lines.map((l) => l.line)];
    expect(all.sort()).toEqual(tasks.map((t) => t.message).sort());
  });
});

describe('npm test', () => {
  /** Runs vitest on one file in a child, as `npm test` would, with the given environment. */
  const vitest = (env: Record<string, string>, ...args: string[]) =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', ...args], { cwd: ROOT, env: { HOME: process.env.HOME ?? '', ...env } });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.on('exit', (code) => resolve({ code, output }));
    });

  it('starts a redis-server of its own when none answers at the test address, and stops it after', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const { code, output } = await vitest({ PATH: process.env.PATH ?? '', PUNCTUAL_TEST_REDIS_URL: `redis://127.0.0.1:${port}` }, 'test/write-resend.test.ts', '-t', 'all or nothing');
    expect(output).toMatch(/No Redis at redis:\/\/127\.0\.0\.1:\d+: the tests use their own redis-server at redis:\/\/127\.0\.0\.1:\d+/);
    expect(output).toMatch(/^2 passed, 0 failed, 4 skipped$/m);
    expect(code).toBe(0);
    const started = Number(/own redis-server at redis:\/\/127\.0\.0\.1:(\d+)/.exec(output)![1]);
    expect(await isListening('127.0.0.1', started)).toBe(false);
  });

  it('without redis-server installed, stops at once with one line saying how to get it, and its closing line reads failed', { timeout: 60_000 }, async () => {
    const bin = mkdtempSync(join(tmpdir(), 'punctual-path-'));
    symlinkSync(process.execPath, join(bin, 'node'));
    const { code, output } = await vitest({ PATH: bin, PUNCTUAL_TEST_REDIS_URL: `redis://127.0.0.1:${await freePort()}` }, 'test/compose.test.ts');
    expect(output).toContain('npm test needs redis-server on the PATH (Debian/Ubuntu: apt-get install redis-server');
    // That line alone: no stack frames or code excerpt around it.
    expect(output).not.toMatch(/global-setup\.ts|node_modules\/vitest|❯/);
    expect(output).toMatch(/^0 passed, 1 failed, 0 skipped$/m);
    expect(code).toBe(1);
  });
});
