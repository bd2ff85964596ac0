/**
 * Loaded with `--import` into the Punctual API process of W5: counts the commands that
 * process sends to Redis and writes the count, with the time it was taken, to the file named
 * by BENCH_REDIS_COMMANDS_FILE every 100 ms. The runner reads it twice and divides.
 *
 * Why in the process and not in Redis: Redis 7.0 keeps no per-connection command count
 * (CLIENT LIST shows only the last command; `tot-cmds` came later), and its global count mixes
 * the API with the worker and the producer. Every command ioredis writes to a socket goes
 * through `Redis.prototype.sendCommand` (pipelines too, one call per command), so wrapping it
 * counts them exactly; EVALSHA counts as one, as it is one round trip. A command queued while
 * disconnected passes through twice (queued, then written), so only a command that reached
 * the socket's command queue is counted.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { Redis } from 'ioredis';

/** What the file holds. */
export interface CommandCount {
  count: number;
  /** Date.now() when the count was taken. */
  at: number;
}

export const COMMANDS_FILE_ENV = 'BENCH_REDIS_COMMANDS_FILE';

const WRITE_EVERY_MS = 100;

const file = process.env[COMMANDS_FILE_ENV];
if (file) {
  let count = 0;
  type SendCommand = (this: Redis, command: unknown, stream?: unknown) => unknown;
  const proto = Redis.prototype as unknown as { sendCommand: SendCommand };
  const send = proto.sendCommand;
  proto.sendCommand = function (this: Redis, command, stream) {
    const result = send.call(this, command, stream);
    const queue = (this as unknown as { commandQueue: { peekBack(): { command: unknown } | undefined } }).commandQueue;
    if (queue.peekBack()?.command === command) count += 1;
    return result;
  };
  // Written aside and renamed, so a reader never sees half a file. Off the event loop after
  // the first (a synchronous write and rename took a few ms of the API's loop each time).
  const contents = () => JSON.stringify({ count, at: Date.now() } satisfies CommandCount);
  writeFileSync(`${file}.tmp`, contents());
  renameSync(`${file}.tmp`, file);
  let writing = false;
  const write = async () => {
    writing = true;
    try {
      await writeFile(`${file}.tmp`, contents());
      await rename(`${file}.tmp`, file);
    } finally {
      writing = false;
    }
  };
  setInterval(() => void (writing ? undefined : write().catch(() => {})), WRITE_EVERY_MS).unref();
}
