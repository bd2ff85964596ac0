/**
 * The only reader of the environment. Every setting, its default and its meaning live in
 * `settings` below; `loadConfig` validates them all at once so a bad value stops the
 * program at start with a message naming the setting, instead of failing later mid-run.
 */

import type { Durability } from './durability.js';
import { timingConflict } from './scheduler/timings.js';

export type Role = 'all' | 'api' | 'worker';
export type PrivateRedis = 'auto' | 'on' | 'off';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  /** Where Redis is. @default redis://127.0.0.1:6379 */
  redisUrl: string;
  /** Whether REDIS_URL came from the environment (decides the private Redis in `auto`). */
  redisUrlFromEnv: boolean;
  /** Seed nodes of a Redis Cluster (`host:port,...`); set instead of REDIS_URL. @default unset (one Redis) */
  redisClusterNodes: { host: string; port: number }[] | undefined;
  /** Replicas that must hold a write before it is answered (WAIT); 0 answers once the master has it. @default 0 */
  redisWaitReplicas: number;
  /** How long a write waits for those replicas before it is answered UNAVAILABLE (at most 1000). @default 500 */
  redisWaitTimeoutMs: number;
  /** When to start a private redis-server. @default auto */
  privateRedis: PrivateRedis;
  /** Where a private redis-server keeps its AOF. @default .data */
  dataDir: string;
  /** HTTP port. @default 4000 */
  port: number;
  /** Which roles this process runs. @default all */
  role: Role;
  /** Prefix of every Redis key and channel. @default punctual */
  keyPrefix: string;
  /** Number of schedule partitions; every process of a deployment must agree. @default 4 on one Redis, 12 on a cluster (a multiple of 1, 2, 3, 4, 6 and 12 masters) */
  partitions: number;
  /** Tasks moved from a schedule to the due stream per script call. @default 1000 */
  promoteBatch: number;
  /** About how many tasks a worker reads, claims, prints and completes per round. @default 500 */
  fireBatch: number;
  /** Most tasks a promotion puts in one due entry; 1 writes entries workers of earlier versions read. @default 32 */
  dueEntryTasks: number;
  /** How long a worker's XREADGROUP blocks before it re-checks for shutdown. @default 2000 */
  readBlockMs: number;
  /** An entry unacknowledged this long is taken over by another worker. @default 5000 */
  reclaimIdleMs: number;
  /** Deliveries after which a task that never completed becomes DEAD. @default 5 */
  maxDeliveries: number;
  /** Interval of the safety sweep that promotes anything overdue. @default 1000 */
  sweepMs: number;
  /** How far ahead a task may be scheduled. @default 10 years */
  horizonMs: number;
  /** How long a finished (FIRED, CANCELLED, DEAD) task stays readable. @default 7 days */
  retentionMs: number;
  /** Approximate number of events the fired log keeps per partition for resuming. @default 100000 */
  firedLogMax: number;
  /** Longest message accepted, in UTF-8 bytes. @default 65536 */
  maxMessageBytes: number;
  /** Most tasks in one bulk call. @default 1000 */
  maxBulk: number;
  /** Name of this worker in the consumer group; unique per process. @default host-pid-random */
  workerName: string | undefined;
  /** Added to this process's clock; only for testing clock skew, Redis TIME decides. @default 0 */
  clockOffsetMs: number;
  /** Level of the JSON logs on stderr. @default info */
  logLevel: LogLevel;
  /** When set, every API request must carry `Authorization: Bearer <token>`. @default unset (open) */
  apiToken: string | undefined;
  /** Serve GraphiQL at /graphql to browsers. @default true */
  graphiql: boolean;
  /** Answer introspection queries. @default true */
  introspection: boolean;
  /** Largest HTTP request body, in bytes; larger ones get 413. @default 1048576 (1 MiB) */
  maxBodyBytes: number;
  /** Deepest selection a query may nest. @default 10 */
  maxQueryDepth: number;
  /** Most aliases in one operation. @default 30 */
  maxAliases: number;
  /** Most tokens in one GraphQL document. @default 5000 */
  maxQueryTokens: number;
  /** Most operations in one batched HTTP request (a JSON array); 1 turns batching off. @default 10 */
  maxBatchOperations: number;
  /** What an accepted write means: in Redis's memory, or on its disk (Redis must run appendfsync always). @default memory */
  durability: Durability;
  /** Live events one taskFired subscription buffers; a subscriber slower than that reads from the fired logs instead. @default 10000 */
  feedBufferMax: number;
  /** Live subscriptions one graphql-ws socket may hold. @default 100 */
  maxSubscriptionsPerSocket: number;
  /** Live subscriptions (WebSocket and SSE) one process serves. @default 10000 */
  maxSubscriptions: number;
  /** Sum of `first` over every `tasks` listing in one request (all batch entries). @default 1000 */
  maxListedTasks: number;
  /** Origins whose browser pages may call the API (CORS); empty means same-origin only. @default none */
  corsOrigins: string[];
  /** Host names the API answers; empty means localhost and IP addresses only, `*` any. @default none */
  allowedHosts: string[];
  /** Longest time a client may take to send its request headers. @default 10000 */
  headersTimeoutMs: number;
  /** Longest time a client may take to send a whole request, body included. @default 30000 */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection stays open. @default 5000 */
  keepAliveTimeoutMs: number;
  /** Longest time a response may take to reach a client that reads slowly (GraphiQL). @default 30000 */
  writeTimeoutMs: number;
  /** Open HTTP connections (WebSockets included) for the API; OPS_CONNECTIONS more are kept for the ops routes. @default 2000 */
  maxConnections: number;
  /** Connections kept for /healthz, /readyz and /metrics once the API's are all taken. @default 32 */
  opsConnections: number;
  /** Open connections one client address may hold. @default 200 */
  maxConnectionsPerClient: number;
  /** Open WebSockets one process serves. @default 1000 */
  maxWebSockets: number;
  /** Open WebSockets one client address may hold. @default 100 */
  maxWebSocketsPerClient: number;
  /** A WebSocket without a subscription for this long is closed. @default 60000 */
  webSocketIdleMs: number;
  /** graphql-ws pings every socket this often and closes one that has not answered by the next ping: a silent peer is dropped, its subscriptions released. @default 12000 */
  wsKeepAliveMs: number;
}

export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`${setting}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const DAY_MS = 24 * 60 * 60 * 1000;

function integer(name: string, raw: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, `expected a whole number, got "${raw}"`);
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(name, `expected a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

function oneOf<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  const value = raw.trim().toLowerCase();
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(name, `expected one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return value as T;
}

function flag(name: string, raw: string): boolean {
  const value = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
}

function apiToken(name: string, raw: string): string {
  // A short token is guessable; whitespace around it is almost always a copy-paste accident.
  if (raw.length < 16 || raw.length > 512 || !/^[\x21-\x7e]+$/.test(raw)) {
    throw new ConfigError(name, 'expected 16 to 512 visible ASCII characters (no spaces)');
  }
  return raw;
}

/** A comma-separated list of origins like https://app.example.com (scheme, host, port; no path). */
function origins(name: string, raw: string): string[] {
  return raw.split(',').map((item) => item.trim()).filter(Boolean).map((item) => {
    let url: URL;
    try {
      url = new URL(item);
    } catch {
      throw new ConfigError(name, `expected origins like https://app.example.com, got "${item}"`);
    }
    if (url.origin !== item.replace(/\/$/, '') || !/^https?:$/.test(url.protocol)) {
      throw new ConfigError(name, `expected an origin (scheme://host[:port], no path), got "${item}"`);
    }
    return url.origin;
  });
}

/** A comma-separated list of host names (no port), or `*` for any. */
function hosts(name: string, raw: string): string[] {
  const list = raw.split(',').map((item) => item.trim().toLowerCase()).filter(Boolean);
  for (const item of list) {
    if (item !== '*' && !/^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(item)) throw new ConfigError(name, `expected host names like api.example.com, *.example.com or *, got "${item}"`);
  }
  return list;
}

function redisUrl(name: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, `expected a URL like redis://host:6379, got "${raw}"`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(name, `expected a redis:// or rediss:// URL, got "${raw}"`);
  }
  return raw;
}

/** `host:port,host:port,...`: a cluster's seed nodes. */
function clusterNodes(name: string, raw: string): { host: string; port: number }[] {
  const nodes = raw.split(',').map((item) => item.trim()).filter(Boolean).map((item) => {
    const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(item);
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65535) throw new ConfigError(name, `expected host:port pairs separated by commas, got "${item}"`);
    return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
  });
  if (nodes.length === 0) throw new ConfigError(name, 'expected at least one host:port');
  return nodes;
}

function keyPrefix(name: string, raw: string): string {
  // Braces would break the hash tags that keep a partition's keys in one cluster slot.
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(raw)) {
    throw new ConfigError(name, `expected 1-64 characters of A-Z a-z 0-9 _ . -, got "${raw}"`);
  }
  return raw;
}

/** Reads and validates every setting; throws ConfigError naming the first bad one. */
export function loadConfig(env: Env = process.env): Config {
  const read = <T>(name: string, fallback: T, parse: (name: string, raw: string) => T): T => {
    const raw = env[name];
    return raw === undefined || raw === '' ? fallback : parse(name, raw);
  };
  const int = (name: string, fallback: number, min: number, max: number) =>
    read(name, fallback, (n, raw) => integer(n, raw, min, max));

  const config: Config = {
    redisUrl: read('REDIS_URL', 'redis://127.0.0.1:6379', redisUrl),
    redisUrlFromEnv: Boolean(env.REDIS_URL),
    redisClusterNodes: read('REDIS_CLUSTER_NODES', undefined as { host: string; port: number }[] | undefined, clusterNodes),
    redisWaitReplicas: int('REDIS_WAIT_REPLICAS', 0, 0, 100),
    // Below COMMAND_TIMEOUT_MS (1200): the WAIT rides in the write's round trip, which must answer in time.
    redisWaitTimeoutMs: int('REDIS_WAIT_TIMEOUT_MS', 500, 10, 1000),
    privateRedis: read('PRIVATE_REDIS', 'auto' as PrivateRedis, (n, raw) => oneOf(n, raw, ['auto', 'on', 'off'] as const)),
    dataDir: read('DATA_DIR', '.data', (_n, raw) => raw),
    port: int('PORT', 4000, 0, 65535),
    role: read('ROLE', 'all' as Role, (n, raw) => oneOf(n, raw, ['all', 'api', 'worker'] as const)),
    keyPrefix: read('KEY_PREFIX', 'punctual', keyPrefix),
    partitions: int('PARTITIONS', env.REDIS_CLUSTER_NODES ? 12 : 4, 1, 1024),
    promoteBatch: int('PROMOTE_BATCH', 1000, 1, 100_000),
    fireBatch: int('FIRE_BATCH', 500, 1, 10_000),
    dueEntryTasks: int('DUE_ENTRY_TASKS', 32, 1, 1000),
    readBlockMs: int('READ_BLOCK_MS', 2000, 10, 60_000),
    reclaimIdleMs: int('RECLAIM_IDLE_MS', 5000, 100, DAY_MS),
    maxDeliveries: int('MAX_DELIVERIES', 5, 1, 1000),
    sweepMs: int('SWEEP_MS', 1000, 10, 60_000),
    horizonMs: int('HORIZON_MS', 3650 * DAY_MS, 1000, 100 * 365 * DAY_MS),
    retentionMs: int('RETENTION_MS', 7 * DAY_MS, 1000, 3650 * DAY_MS),
    firedLogMax: int('FIRED_LOG_MAX', 100_000, 100, 100_000_000),
    maxMessageBytes: int('MAX_MESSAGE_BYTES', 65_536, 1, 16 * 1024 * 1024),
    maxBulk: int('MAX_BULK', 1000, 1, 100_000),
    workerName: read('WORKER_NAME', undefined as string | undefined, (n, raw) => {
      if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(raw)) throw new ConfigError(n, `expected 1-128 characters of A-Z a-z 0-9 _ . : -, got "${raw}"`);
      return raw;
    }),
    clockOffsetMs: int('CLOCK_OFFSET_MS', 0, -365 * DAY_MS, 365 * DAY_MS),
    logLevel: read('LOG_LEVEL', 'info' as LogLevel, (n, raw) =>
      oneOf(n, raw, ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
    ),
    apiToken: read('API_TOKEN', undefined as string | undefined, apiToken),
    graphiql: read('GRAPHIQL', true, flag),
    introspection: read('INTROSPECTION', true, flag),
    maxBodyBytes: int('MAX_BODY_BYTES', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    maxQueryDepth: int('MAX_QUERY_DEPTH', 10, 2, 100),
    maxAliases: int('MAX_ALIASES', 30, 0, 10_000),
    maxQueryTokens: int('MAX_QUERY_TOKENS', 5000, 100, 1_000_000),
    maxBatchOperations: int('MAX_BATCH_OPERATIONS', 10, 1, 1000),
    durability: read('DURABILITY', 'memory' as Durability, (n, raw) => oneOf(n, raw, ['memory', 'disk'] as const)),
    feedBufferMax: int('FEED_BUFFER_MAX', 10_000, 100, 10_000_000),
    maxSubscriptionsPerSocket: int('MAX_SUBSCRIPTIONS_PER_SOCKET', 100, 1, 100_000),
    maxSubscriptions: int('MAX_SUBSCRIPTIONS', 10_000, 1, 1_000_000),
    maxListedTasks: int('MAX_LISTED_TASKS', 1000, 1, 1_000_000),
    corsOrigins: read('CORS_ORIGINS', [] as string[], origins),
    allowedHosts: read('ALLOWED_HOSTS', [] as string[], hosts),
    headersTimeoutMs: int('HEADERS_TIMEOUT_MS', 10_000, 100, 600_000),
    requestTimeoutMs: int('REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000),
    keepAliveTimeoutMs: int('KEEP_ALIVE_TIMEOUT_MS', 5000, 100, 600_000),
    writeTimeoutMs: int('WRITE_TIMEOUT_MS', 30_000, 100, 3_600_000),
    maxConnections: int('MAX_CONNECTIONS', 2000, 1, 1_000_000),
    opsConnections: int('OPS_CONNECTIONS', 32, 1, 10_000),
    maxConnectionsPerClient: int('MAX_CONNECTIONS_PER_CLIENT', 200, 1, 1_000_000),
    maxWebSockets: int('MAX_WEBSOCKETS', 1000, 1, 1_000_000),
    maxWebSocketsPerClient: int('MAX_WEBSOCKETS_PER_CLIENT', 100, 1, 1_000_000),
    webSocketIdleMs: int('WEBSOCKET_IDLE_MS', 60_000, 1000, 86_400_000),
    wsKeepAliveMs: int('WS_KEEPALIVE_MS', 12_000, 100, 3_600_000),
  };
  // Two places for Redis would leave it to chance which one holds the tasks.
  if (config.redisClusterNodes && config.redisUrlFromEnv) throw new ConfigError('REDIS_CLUSTER_NODES', 'set either REDIS_CLUSTER_NODES (a cluster) or REDIS_URL (one Redis), not both');
  // Node checks header timeouts only while a request is unfinished: a shorter requestTimeout would hide headersTimeout.
  if (config.headersTimeoutMs > config.requestTimeoutMs) throw new ConfigError('HEADERS_TIMEOUT_MS', `must not exceed REQUEST_TIMEOUT_MS (${config.requestTimeoutMs})`);
  const conflict = timingConflict(config);
  if (conflict) throw new ConfigError('SWEEP_MS', conflict);
  return config;
}
