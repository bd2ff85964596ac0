/**
 * A private redis-server for `npm start` on a machine with no Redis running: AOF on, data
 * in a directory of ours, stopped with the service. The tests start their isolated Redis
 * servers the same way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { resolve } from 'node:path';

export interface PrivateRedis {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly process: ChildProcess;
  /** Stops it: SIGTERM makes Redis flush its AOF and exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export class RedisServerMissing extends Error {
  constructor() {
    super(
      'No Redis is listening and redis-server is not installed. Install Redis (Debian/Ubuntu: ' +
        '`sudo apt-get install redis-server`, macOS: `brew install redis`) or set REDIS_URL to a running one.',
    );
    this.name = 'RedisServerMissing';
  }
}

/** True when something accepts TCP connections at host:port within the timeout. */
export function isListening(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    const finish = (result: boolean) => {
      socket.destroy();
      done(result);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

/** Ports below Linux's ephemeral range (32768 and up): no outgoing connection takes one between the check and the bind. */
const FIXED_PORTS = { from: 20_000, to: 32_767 };

/** Whether a port can be bound on every interface right now, as a service binds it. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port free right now, for a process to bind next. Chosen at random below the ephemeral
 * range: a port the kernel handed out (listen on 0) may be taken by an outgoing connection
 * before the process binds it.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = FIXED_PORTS.from + Math.floor(Math.random() * (FIXED_PORTS.to - FIXED_PORTS.from));
    if (await canBind(port)) return port;
  }
}

/**
 * A port for a Redis Cluster node, free with its cluster bus port (port + 10000): both below
 * the ephemeral range, so a node restarted after a kill finds both still free.
 */
export async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = FIXED_PORTS.from + Math.floor(Math.random() * (FIXED_PORTS.to - 10_000 - FIXED_PORTS.from));
    if ((await canBind(port)) && (await canBind(port + 10_000))) return port;
  }
}

export interface PrivateRedisOptions {
  port: number;
  dir: string;
  /** `always` survives kill -9 with every acknowledged write; `everysec` loses at most a second. @default everysec */
  appendfsync?: 'always' | 'everysec';
  /** Extra redis-server arguments. */
  args?: string[];
}

export async function startPrivateRedis(options: PrivateRedisOptions): Promise<PrivateRedis> {
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const child = spawn(
    'redis-server',
    [
      '--port', String(options.port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--appendonly', 'yes',
      '--appendfsync', options.appendfsync ?? 'everysec',
      '--save', '',
      '--daemonize', 'no',
      '--logfile', 'redis.log',
      ...(options.args ?? []),
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const spawnError = await new Promise<Error | undefined>((done) => {
    child.once('error', done);
    child.once('spawn', () => done(undefined));
  });
  if (spawnError) {
    if ((spawnError as NodeJS.ErrnoException).code === 'ENOENT') throw new RedisServerMissing();
    throw spawnError;
  }
  const deadline = Date.now() + 10_000;
  while (!(await isListening('127.0.0.1', options.port, 200))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not start on port ${options.port} (see ${dir}/redis.log)`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${options.port}`,
    port: options.port,
    dir,
    process: child,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
