/**
 * The one module that loads and calls the Lua scripts (one file per atomic operation, in
 * ./lua). Scripts run by EVALSHA and are sent again when Redis answers NOSCRIPT (after a
 * restart or SCRIPT FLUSH), through ioredis' defineCommand.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import type { ChainableCommander } from 'ioredis';
import { type RedisClient, isCluster } from '../redis.js';

export const SCRIPT_NAMES = ['schedule', 'promote', 'claim', 'take', 'complete', 'cancel', 'reschedule', 'heartbeat', 'lease', 'read'] as const;
export type ScriptName = (typeof SCRIPT_NAMES)[number];

const readLua = (name: string) => readFileSync(fileURLToPath(new URL(`./lua/${name}.lua`, import.meta.url)), 'utf8');

/** Helpers every script may use (how a message is stored, where a task's state lives, promoting, claiming), prepended to each. */
const LIBRARY = ['message', 'task-state', 'firing'].map(readLua).join('\n');

/**
 * A script's source: its `#!lua` line (the flags it declares: a script that may write and
 * declares no `allow-oom` is refused whole while Redis is out of memory), then the library,
 * then its body.
 */
const assemble = (name: ScriptName) => {
  const source = readLua(name);
  const newline = source.indexOf('\n');
  const shebang = source.slice(0, newline);
  if (!shebang.startsWith('#!lua')) throw new Error(`script ${name} must start with a #!lua line`);
  return `${shebang}\n${LIBRARY}\n${source.slice(newline + 1)}`;
};

const lua = Object.fromEntries(SCRIPT_NAMES.map((name) => [name, assemble(name)])) as Record<ScriptName, string>;

const commandName = (name: ScriptName) => `punctual_${name}`;

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');

type Arg = string | number;
type ScriptCommand = (numberOfKeys: number, ...keysAndArgs: Arg[]) => Promise<unknown>;

/** Registers every script on a connection (and so on its pipelines). */
export function defineScripts(redis: RedisClient): void {
  for (const name of SCRIPT_NAMES) {
    if (!(commandName(name) in redis)) redis.defineCommand(commandName(name), { lua: lua[name] });
  }
}

/** Loads every script into Redis' cache; readiness means this succeeded. */
export async function loadScripts(redis: RedisClient): Promise<void> {
  // On a cluster every master runs scripts for its slots.
  for (const node of isCluster(redis) ? redis.nodes('master') : [redis]) {
    for (const name of SCRIPT_NAMES) {
      const sha = await node.script('LOAD', lua[name]);
      if (sha !== sha1(lua[name])) throw new Error(`script ${name} loaded with an unexpected digest`);
    }
  }
}

/** Calls a script on a connection, or queues it on a pipeline. */
export function runScript(client: RedisClient | ChainableCommander, name: ScriptName, keys: string[], args: Arg[]): Promise<unknown> {
  const command = (client as unknown as Record<string, ScriptCommand>)[commandName(name)];
  if (!command) throw new Error(`script ${name} is not defined on this connection; call defineScripts first`);
  return command.call(client, keys.length, ...keys, ...args);
}

/** The scripts Redis' cache lacks (SCRIPT EXISTS): all of them after a Redis restart without persistence of the cache. */
export async function missingScripts(redis: RedisClient): Promise<ScriptName[]> {
  const missing = new Set<ScriptName>();
  for (const node of isCluster(redis) ? redis.nodes('master') : [redis]) {
    const exists = (await node.script('EXISTS', ...SCRIPT_NAMES.map((name) => sha1(lua[name])))) as number[];
    for (const [i, name] of SCRIPT_NAMES.entries()) if (exists[i] !== 1) missing.add(name);
  }
  return [...missing];
}
