/**
 * What Redis itself can do on this machine: redis-benchmark's ZADD and XADD (the commands
 * at the heart of scheduling and delivery), with and without pipelining, on the benchmark's
 * own Redis. Every scheduled task costs at least one such write, so these bound both systems.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface RedisLimit {
  test: string;
  pipeline: number;
  requestsPerSec: number;
}

export const PIPELINE_DEPTH = 16;

/** redis-benchmark 7.0 has a built-in ZADD test but no XADD one: that is given as a command. */
const TESTS: Record<string, string[]> = {
  ZADD: ['-t', 'zadd'],
  XADD: ['XADD', 'limit:stream', '*', 'id', '__rand_int__'],
};

/** Runs redis-benchmark; undefined when it is not installed. */
export async function measureLimit(port: number, requests: number): Promise<RedisLimit[] | undefined> {
  const limits: RedisLimit[] = [];
  for (const [test, command] of Object.entries(TESTS)) {
    for (const pipeline of [1, PIPELINE_DEPTH]) {
      let stdout: string;
      try {
        // -r: random members, so ZADD grows a real sorted set instead of rewriting one member.
        const args = ['-h', '127.0.0.1', '-p', String(port), '-n', String(requests), '-r', '1000000', '-P', String(pipeline), '--csv', ...command];
        ({ stdout } = await run('redis-benchmark', args, { timeout: 300_000 }));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
      const match = /^"[^"]+","([\d.]+)"/m.exec(stdout);
      if (!match) throw new Error(`redis-benchmark printed no rate for ${test}: ${stdout}`);
      limits.push({ test, pipeline, requestsPerSec: Number(match[1]) });
    }
  }
  return limits;
}
