/**
 * The benchmark's child processes: workers, producers and API servers run in processes of
 * their own (as they would in production), talk to the runner over IPC, and are all killed
 * when the runner exits for any reason, so a failed run leaves nothing behind.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Every message between the runner and a child has a type; the rest depends on it. */
export interface Message {
  type: string;
  [field: string]: unknown;
}

const running = new Set<ChildProcess>();

function killAll(): void {
  for (const child of running) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

// 'exit' handlers must be synchronous: SIGKILL is the only thing that is sure to land.
process.on('exit', killAll);

/** Last few kilobytes of a child's stderr, shown when it fails. */
function keepTail(child: ChildProcess): () => string {
  let tail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    tail = (tail + text).slice(-4000);
  });
  return () => tail;
}

export class ChildFailed extends Error {
  constructor(name: string, reason: string, stderr: string) {
    super(`${name}: ${reason}${stderr ? `\n--- its stderr ---\n${stderr}` : ''}`);
    this.name = 'ChildFailed';
  }
}

/** A child process speaking the benchmark's IPC protocol. */
export interface Child {
  readonly name: string;
  send(message: Message): void;
  /** The next message of this type (earlier ones of that type are queued, not lost). */
  next<T extends Message>(type: string, timeoutMs: number): Promise<T>;
  /** Called for every message of this type instead of queueing it. */
  on(type: string, listener: (message: Message) => void): void;
  /** Waits for the exit, killing the child after the grace period. */
  exited(graceMs: number): Promise<void>;
  kill(): void;
}

/** Set by `--cpu-prof DIR`: every child writes a V8 CPU profile there when it exits. */
export const CPU_PROFILE_DIR_ENV = 'BENCH_CPU_PROF_DIR';

function nodeFlags(): string[] {
  const dir = process.env[CPU_PROFILE_DIR_ENV];
  return ['--import', 'tsx', ...(dir ? ['--cpu-prof', '--cpu-prof-dir', dir] : [])];
}

/** Runs a bench/*.ts module in a Node child process with tsx, connected by IPC. */
export function forkChild(name: string, module: string, args: string[], env: Record<string, string> = {}): Child {
  const child = fork(fileURLToPath(new URL(module, import.meta.url)), args, {
    execArgv: nodeFlags(),
    serialization: 'advanced',
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, ...env },
  });
  running.add(child);
  const stderr = keepTail(child);
  const queues = new Map<string, Message[]>();
  const waiters = new Map<string, ((message: Message) => void)[]>();
  const listeners = new Map<string, (message: Message) => void>();
  let exitReason: string | undefined;
  const failures: ((error: Error) => void)[] = [];

  child.on('message', (raw) => {
    const message = raw as Message;
    const listener = listeners.get(message.type);
    if (listener) return listener(message);
    const waiting = waiters.get(message.type)?.shift();
    if (waiting) return waiting(message);
    const queue = queues.get(message.type) ?? [];
    queue.push(message);
    queues.set(message.type, queue);
  });
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      exitReason = signal ? `killed by ${signal}` : `exited with code ${code}`;
      for (const fail of failures.splice(0)) fail(new ChildFailed(name, exitReason, stderr()));
      resolve();
    });
  });

  return {
    name,
    send(message) {
      if (child.connected) child.send(message);
    },
    next<T extends Message>(type: string, timeoutMs: number): Promise<T> {
      const queued = queues.get(type)?.shift();
      if (queued) return Promise.resolve(queued as T);
      if (exitReason) return Promise.reject(new ChildFailed(name, exitReason, stderr()));
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new ChildFailed(name, `no "${type}" within ${timeoutMs} ms`, stderr()));
        }, timeoutMs);
        const settle = (message: Message) => {
          clearTimeout(timer);
          resolve(message as T);
        };
        waiters.set(type, [...(waiters.get(type) ?? []), settle]);
        failures.push((error) => {
          clearTimeout(timer);
          reject(error);
        });
      });
    },
    on(type, listener) {
      listeners.set(type, listener);
    },
    async exited(graceMs) {
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * Starts a Node program that speaks no IPC (the Punctual API server); it is killed with the
 * runner. `preload`: bench modules loaded with `--import` before the program (W5's command count).
 */
export function spawnNode(module: string, env: Record<string, string>, preload: string[] = []): { process: ChildProcess; stderr: () => string; stop(): Promise<void> } {
  const imports = preload.flatMap((name) => ['--import', fileURLToPath(new URL(name, import.meta.url))]);
  const child = spawn(process.execPath, [...nodeFlags(), ...imports, module], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  running.add(child);
  const stderr = keepTail(child);
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exit.then(() => running.delete(child));
  return {
    process: child,
    stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** Adds a process started elsewhere (the benchmark's redis-server) to those killed with the runner. */
export function killWithRunner(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
}

/** Kills every child now; the runner calls it on SIGINT/SIGTERM before exiting. */
export function killChildren(): void {
  killAll();
}

/** For child modules: the IPC channel to the runner, typed. */
export function toRunner(message: Message): void {
  process.send?.(message);
}

/** For child modules: exit when the runner goes away, so no child outlives it. */
export function exitWithRunner(): void {
  process.on('disconnect', () => process.exit(0));
}
