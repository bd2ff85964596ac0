/**
 * The entry point: reads the config, finds or starts a Redis, starts the roles, and stops
 * them cleanly on SIGTERM/SIGINT. The only place that handles signals or exits. Imported
 * rather than run (by the tests), it runs nothing.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import { createService } from './service.js';
import { DurabilityError } from './durability.js';
import { WorkerNameTaken } from './scheduler/worker.js';
import { isListening, startPrivateRedis, RedisServerMissing, type PrivateRedis } from './private-redis.js';

/** Starts a private redis-server when the settings ask for one and nothing listens at REDIS_URL. */
export async function privateRedisIfNeeded(config: Config, log: Logger): Promise<PrivateRedis | undefined> {
  if (config.redisClusterNodes) return undefined;
  const wanted = config.privateRedis === 'on' || (config.privateRedis === 'auto' && !config.redisUrlFromEnv);
  if (!wanted) return undefined;
  const url = new URL(config.redisUrl);
  const host = url.hostname || '127.0.0.1';
  const port = Number(url.port || 6379);
  if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) return undefined;
  if (await isListening(host, port)) return undefined;
  // Every write on disk before Redis answers: what DURABILITY=disk needs, at a cost measured in BENCHMARKS.md.
  const appendfsync = 'always';
  log.info({ port, dir: config.dataDir, appendfsync }, 'no Redis is listening: starting a private redis-server (AOF on)');
  return startPrivateRedis({ port, dir: config.dataDir, appendfsync });
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`punctual: bad setting ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const log = createLogger(config.logLevel, { role: config.role });

  let redisServer: PrivateRedis | undefined;
  try {
    redisServer = await privateRedisIfNeeded(config, log);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    log.fatal({ err: error }, message);
    process.stderr.write(`punctual: ${message}\n`);
    process.exit(error instanceof RedisServerMissing ? 3 : 1);
  }

  const service = createService(config, { log });
  let stopping: Promise<void> | undefined;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'stopping');
    stopping = service
      .stop()
      .then(() => redisServer?.stop())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          log.error({ err: error }, 'stopped with an error');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  try {
    await service.start();
  } catch (error) {
    const message =
      error instanceof DurabilityError || error instanceof WorkerNameTaken
        ? `could not start: ${error.message}`
        : `could not start (${error instanceof Error ? error.message : String(error)}); is Redis reachable at ${redisWhere(config)}?`;
    log.fatal({ err: error, redis: redisWhere(config) }, message);
    process.stderr.write(`punctual: ${message}\n`);
    await service.stop().catch(() => {});
    await redisServer?.stop();
    process.exit(1);
  }
  log.info({ redis: redisWhere(config), port: config.port }, 'punctual started');
}

/** REDIS_URL, or the cluster's seed nodes. */
const redisWhere = (config: Config) => config.redisClusterNodes?.map((node) => `${node.host}:${node.port}`).join(',') ?? config.redisUrl;

/** True when Node was started with this file as its program (`node src/main.ts`, `tsx src/main.ts`). */
function isEntryPoint(): boolean {
  const program = process.argv[1];
  if (!program) return false;
  try {
    return realpathSync(program) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) void main();
