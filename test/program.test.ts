/**
 * The program around the core: settings, the print's escaping, starting a private Redis,
 * and stopping cleanly.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, symlinkSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../src/config.js';
import { escapeMessage } from '../src/scheduler/print.js';
import { ServiceProcess, connect, deletePrefix, freePort, redisNow, startService, tempDir, testEnv, uniquePrefix, waitFor } from './helpers.js';
import { Redis } from 'ioredis';

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
  ])('refuses %s=%s naming the setting', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^${name}:`));
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
      expect(child.stderr.join('')).toMatch(/starting a private redis-server/);
      const redis = new Redis(`redis://127.0.0.1:${port}`);
      expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await redis.config('GET', 'dir')).toEqual(['dir', data.dir]);
      redis.disconnect();
      expect(await child.stop()).toBe(0);
      expect(existsSync(join(data.dir, 'appendonlydir')) || readdirSync(data.dir).some((f) => f.includes('aof'))).toBe(true);
      // The private server went with the service.
      const probe = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, retryStrategy: () => null });
      probe.on('error', () => {});
      await expect(probe.connect()).rejects.toThrow();
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
    expect(child.stderr.join('')).toMatch(/redis-server is not installed.*apt-get install redis-server/s);
  });

  it('warns at start when Redis persists nothing', async () => {
    const prefix = uniquePrefix('warn');
    const child = new ServiceProcess(testEnv(prefix, { LOG_LEVEL: 'info', ROLE: 'worker' }));
    await child.started();
    expect(child.stderr.join('')).toMatch(/Redis persists nothing/);
    expect(await child.stop()).toBe(0);
    const redis = await connect();
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('on SIGTERM a worker finishes and commits its batch, then leaves the group', async () => {
    const prefix = uniquePrefix('sigterm');
    const redis = await connect();
    const child = new ServiceProcess(testEnv(prefix, { ROLE: 'all', LOG_LEVEL: 'info', FIRE_BATCH: '10' }));
    await child.started();
    const api = await startService(testEnv(prefix, { ROLE: 'api' }));
    const now = await redisNow(redis);
    const tasks = await api.service.store.scheduleMany(Array.from({ length: 1000 }, (_, i) => ({ message: `term ${i}`, time: now + 200 })));
    await api.stop();
    await waitFor(() => child.lines.length > 0, 10_000, 'the first prints');
    expect(await child.stop()).toBe(0);
    // Everything it printed is committed: no task is left FIRING.
    const statuses = await Promise.all(tasks.map((t) => redis.hget(`{${prefix}:${t.id.split('-')[0]}}:task:${t.id}`, 's')));
    expect(statuses.filter((status) => status === 'FIRING')).toEqual([]);
    expect(statuses.filter((status) => status === 'FIRED').length).toBe(new Set(child.lines).size);
    for (let p = 0; p < 4; p++) {
      const consumers = (await redis.xinfo('CONSUMERS', `{${prefix}:${p}}:due`, 'workers')) as unknown[];
      expect(consumers).toEqual([]);
    }
    await deletePrefix(redis, prefix);
    await redis.quit();
  });
});
