/**
 * No Docker engine runs here, so this reads docker-compose.yml, the Dockerfile and
 * .dockerignore and checks what the README relies on: Redis with AOF and a health check,
 * `api` and `worker` from one image with valid settings, workers that scale, and an image
 * that runs compiled JavaScript. The build the image runs, `npm run build`, runs here, and
 * the image's command starts the built program against a Redis of the test's own.
 */
import { describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { loadConfig } from '../src/config.js';
import { durabilityShortfall } from '../src/durability.js';
import { ROOT, freePort, startRedisServer, uniquePrefix, waitFor } from './helpers.js';

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
  profiles?: string[];
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
  it('declares redis, api and worker, and nothing else outside a profile', () => {
    const always = Object.entries(compose.services).filter(([, service]) => !service.profiles?.length);
    expect(always.map(([name]) => name).sort()).toEqual(['api', 'redis', 'worker']);
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

describe('docker-compose.yml, the cluster profile', () => {
  const inProfile = Object.entries(compose.services).filter(([, service]) => service.profiles?.includes('cluster'));
  const nodes = inProfile.filter(([name]) => /^redis-node-\d+$/.test(name));
  const init = compose.services['redis-cluster-init']!;
  const command = (service: ComposeService) => words(service.command).join(' ');

  it('runs six cluster-enabled Redis nodes, each announcing its name, with AOF and no eviction on a volume of its own', () => {
    expect(nodes).toHaveLength(6);
    for (const [name, node] of nodes) {
      expect(command(node)).toMatch(/redis-server --cluster-enabled yes/);
      expect(command(node)).toMatch(/--cluster-announce-hostname \$\$HOSTNAME --cluster-preferred-endpoint-type hostname/);
      expect(command(node)).toMatch(/--appendonly yes/);
      expect(command(node)).toMatch(/--maxmemory-policy noeviction/);
      expect((node as ComposeService & { hostname?: string }).hostname).toBe(name);
      expect(node.volumes).toEqual([`${name}:/data`]);
      expect(compose.volumes).toHaveProperty(name);
      expect(node.ports ?? []).toEqual([]);
    }
  });

  it('joins the six once, a replica per master, after every node is healthy', () => {
    expect(init.profiles).toEqual(['cluster']);
    const script = command(init);
    expect(script).toMatch(/redis-cli --cluster create/);
    for (const [name] of nodes) expect(script).toContain(`${name}:6379`);
    expect(script).toMatch(/--cluster-replicas 1 --cluster-yes/);
    expect(script).toMatch(/cluster_state:ok/);
    for (const [name] of nodes) expect(init.depends_on).toMatchObject({ [name]: { condition: 'service_healthy' } });
  });

  it('starts api-cluster and worker-cluster from the one image on the cluster, with valid settings and WAIT for a replica', () => {
    for (const [name, role] of [
      ['api-cluster', 'api'],
      ['worker-cluster', 'worker'],
    ] as const) {
      const service = compose.services[name]!;
      expect(service.profiles).toEqual(['cluster']);
      expect(service.image).toBe(compose.services.api!.image);
      const env = environment(service);
      expect(env.ROLE).toBe(role);
      expect(env.REDIS_URL).toBeUndefined();
      const config = loadConfig(env);
      for (const seed of config.redisClusterNodes!) expect(nodes.map(([node]) => node)).toContain(seed.host);
      expect(config.redisWaitReplicas).toBe(1);
      expect(config.partitions % 3).toBe(0);
      expect(service.depends_on).toMatchObject({ 'redis-cluster-init': { condition: 'service_completed_successfully' } });
    }
    // Beside the single-Redis API on 4000, and scalable workers.
    expect(compose.services['api-cluster']!.ports).toEqual(['4001:4000']);
    expect(compose.services['worker-cluster']!.ports ?? []).toEqual([]);
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const lines = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  /** The build stages, each its instructions; the last one is the image. */
  const stages: string[][] = [];
  for (const line of lines) {
    if (line.startsWith('FROM ')) stages.push([line]);
    else stages.at(-1)!.push(line);
  }
  const instructionIn = (stage: string[], name: string) => stage.filter((line) => line.startsWith(`${name} `)).map((line) => line.slice(name.length + 1));
  const image = stages.at(-1)!;
  const instruction = (name: string) => instructionIn(image, name);
  const command = JSON.parse(instruction('CMD')[0]!) as string[];
  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; dependencies: Record<string, string>; devDependencies: Record<string, string> };
  const outDir = (JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { outDir: string } }).compilerOptions.outDir;

  it('starts the program on Node 20, as a non-root user, with the port the compose file uses', () => {
    for (const stage of stages) expect(stage[0]).toMatch(/^FROM node:20/);
    expect(instruction('USER')).toEqual(['node']);
    expect(instruction('EXPOSE')).toEqual(['4000']);
    expect(instruction('RUN').join(' ')).toMatch(/npm ci --omit=dev/);
    expect(instruction('HEALTHCHECK').join(' ')).toContain('/readyz');
  });

  it('runs node on the built JavaScript, with no TypeScript loader', () => {
    expect(command[0]).toBe('node');
    expect(command.at(-1)).toBe(`${outDir}/main.js`);
    expect(command.join(' ')).not.toMatch(/--import|--loader|--require|-r\b|tsx|ts-node|\.ts\b/);
    // The loader is for development only: the image installs no dev dependency.
    expect(pkg.dependencies).not.toHaveProperty('tsx');
    expect(pkg.devDependencies).toHaveProperty('tsx');
    expect(pkg.scripts.start).toBe('tsx src/main.ts');
  });

  it('builds in a stage of its own and copies only the built output into the image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages.find((stage) => instructionIn(stage, 'RUN').includes('npm run build'))!;
    expect(build).toBeDefined();
    const stageName = /\bAS (\S+)$/i.exec(build[0]!)![1];
    expect(instructionIn(build, 'COPY')).toContain('src ./src');
    expect(instructionIn(build, 'COPY').join(' ')).toContain('tsconfig.build.json');
    expect(instruction('COPY')).toContain(`--from=${stageName} /app/${outDir} ./${outDir}`);
    expect(instruction('COPY').join(' ')).not.toMatch(/\bsrc\b/);
    // What the built program reads at run time: its Lua scripts, its page, and uPlot from node_modules.
    expect(pkg.scripts.build).toContain('src/web');
    expect(pkg.scripts.build).toContain('src/scheduler/lua');
    expect(pkg.dependencies).toHaveProperty('uplot');
    const ignored = read('.dockerignore').split('\n').map((line) => line.trim());
    for (const path of ['node_modules', '.data', '.git', 'dist']) expect(ignored).toContain(path);
    expect(ignored).not.toContain('src');
  });

  it('`npm run build` emits the program, and the image command starts it: ready, dashboard served', { timeout: 60_000 }, async () => {
    await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT });
    for (const file of ['main.js', 'scheduler/lua/schedule.lua', 'web/index.html', 'web/dashboard.js']) expect(existsSync(join(ROOT, outDir, file))).toBe(true);

    const redis = await startRedisServer();
    const port = await freePort();
    const env = { PATH: process.env.PATH ?? '', PRIVATE_REDIS: 'off', REDIS_URL: redis.url, PORT: String(port), KEY_PREFIX: uniquePrefix('built'), LOG_LEVEL: 'info' };
    const program = spawn(process.execPath, command.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    program.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => program.once('exit', resolve));
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitFor(
        async () => {
          if (program.exitCode !== null) throw new Error(`the built program exited with ${program.exitCode}: ${stderr}`);
          return (await fetch(`${base}/readyz`).catch(() => undefined))?.ok;
        },
        20_000,
        'the built program to be ready',
        100,
      );
      expect((await fetch(`${base}/`)).headers.get('content-type')).toContain('text/html');
      expect((await fetch(`${base}/vendor/uPlot.iife.min.js`)).status).toBe(200);
      // A task through the whole path (schedule, promote, fire: the Lua scripts) of the built program.
      const graphql = async (query: string) =>
        (await (await fetch(`${base}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query }) })).json()) as { data: Record<string, { id: string; status: string }> };
      const { id } = (await graphql(`mutation { delayedTask(message: "built", time: "${new Date().toISOString()}") { id status } }`)).data.delayedTask!;
      await waitFor(async () => (await graphql(`{ task(id: "${id}") { id status } }`)).data.task!.status === 'FIRED', 10_000, 'the task to fire', 100);
      program.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      program.kill('SIGKILL');
      await redis.cleanup();
    }
  });
});
