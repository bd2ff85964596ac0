/**
 * No Docker engine runs here, so this reads docker-compose.yml, the Dockerfile and
 * .dockerignore and checks what the README relies on: Redis with AOF and a health check,
 * `api` and `worker` from one image with valid settings, workers that scale.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadConfig } from '../src/config.js';
import { durabilityShortfall } from '../src/durability.js';
import { ROOT } from './helpers.js';

interface ComposeService {
  image?: string;
  build?: string | { context: string };
  command?: string | string[];
  environment?: Record<string, string> | string[];
  ports?: (string | { published?: string | number; target?: number })[];
  volumes?: (string | { target: string })[];
  healthcheck?: { test: string | string[] };
  depends_on?: string[] | Record<string, { condition?: string }>;
  container_name?: string;
  deploy?: { replicas?: number };
}

const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
// Compose resolves YAML merge keys (`<<: *punctual`); so does this parse.
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService>; volumes?: Record<string, unknown> };
const { redis, api, worker } = compose.services;

const words = (command: string | string[] | undefined) => (Array.isArray(command) ? command : (command ?? '').split(/\s+/));
const environment = (service: ComposeService): Record<string, string> =>
  Array.isArray(service.environment)
    ? Object.fromEntries(service.environment.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]))
    : Object.fromEntries(Object.entries(service.environment ?? {}).map(([name, value]) => [name, String(value)]));
const buildContext = (service: ComposeService) => (typeof service.build === 'string' ? service.build : service.build?.context);

describe('docker-compose.yml', () => {
  it('declares redis, api and worker', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['api', 'redis', 'worker']);
  });

  it('runs Redis with AOF on, no eviction, data on a volume, a health check, and no published port', () => {
    const args = words(redis!.command);
    expect(args[0]).toBe('redis-server');
    expect(args[args.indexOf('--appendonly') + 1]).toBe('yes');
    expect(['always', 'everysec']).toContain(args[args.indexOf('--appendfsync') + 1]);
    expect(args[args.indexOf('--maxmemory-policy') + 1]).toBe('noeviction');
    const dataVolume = redis!.volumes?.map((volume) => (typeof volume === 'string' ? volume : `x:${volume.target}`)).find((volume) => volume.endsWith(':/data'));
    expect(dataVolume).toBeDefined();
    expect(compose.volumes).toHaveProperty(dataVolume!.split(':')[0]!);
    expect(words(redis!.healthcheck?.test).join(' ')).toMatch(/redis-cli.*ping/);
    expect(redis!.ports ?? []).toEqual([]);
  });

  it('builds api and worker from the one image, each with its role and valid settings', () => {
    for (const [service, role] of [
      [api!, 'api'],
      [worker!, 'worker'],
    ] as const) {
      expect(buildContext(service)).toBe('.');
      expect(service.image).toBe(api!.image);
      const env = environment(service);
      expect(env.ROLE).toBe(role);
      expect(new URL(env.REDIS_URL!).hostname).toBe('redis');
      // The same validation the program runs at start: a bad value would stop the container.
      expect(() => loadConfig(env)).not.toThrow();
      // What the service asks of Redis, its Redis gives: the check at start would refuse it otherwise.
      const args = words(redis!.command);
      const persistence = { aof: args[args.indexOf('--appendonly') + 1] === 'yes', fsync: args[args.indexOf('--appendfsync') + 1], rdb: false };
      expect(durabilityShortfall(loadConfig(env).durability, persistence)).toBeUndefined();
      expect(service.depends_on).toMatchObject({ redis: { condition: 'service_healthy' } });
    }
  });

  it('publishes the API on port 4000 and nothing for workers, so `--scale worker=3` works', () => {
    expect(api!.ports).toContain('4000:4000');
    expect(environment(api!).PORT).toBe('4000');
    expect(worker!.ports ?? []).toEqual([]);
    expect(worker!.container_name).toBeUndefined();
    expect(environment(worker!).WORKER_NAME).toBeUndefined();
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const instruction = (name: string) => instructions.filter((line) => line.startsWith(`${name} `)).map((line) => line.slice(name.length + 1));

  it('starts the program on Node 20, as a non-root user, with the port the compose file uses', () => {
    expect(instruction('FROM')[0]).toMatch(/^node:20/);
    expect(instruction('USER')).toEqual(['node']);
    expect(instruction('EXPOSE')).toEqual(['4000']);
    expect(JSON.parse(instruction('CMD')[0]!)).toEqual(['node', '--import', 'tsx', 'src/main.ts']);
    expect(instruction('RUN').join(' ')).toMatch(/npm ci --omit=dev/);
    expect(instruction('HEALTHCHECK').join(' ')).toContain('/readyz');
  });

  it('copies what the program needs: tsx is a production dependency and the live page is under src/', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
    expect(pkg.dependencies).toHaveProperty('tsx');
    expect(instruction('COPY')).toContain('src ./src');
    const ignored = read('.dockerignore').split('\n').map((line) => line.trim());
    for (const path of ['node_modules', '.data', '.git']) expect(ignored).toContain(path);
    expect(ignored).not.toContain('src');
  });
});
