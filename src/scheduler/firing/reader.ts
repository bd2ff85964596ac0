/**
 * The blocking read of new due entries, over every partition. On one Redis it is one
 * XREADGROUP over every partition's stream, on one connection. On a cluster the streams sit
 * in different slots, which no single command may span: each partition has a connection of
 * its own (following its slot's master through failovers), each with a blocking read
 * outstanding, and a read answers with whatever any of them brought.
 *
 * Stopping: on one Redis, CLIENT UNBLOCK makes the read return at once without losing what it
 * may deliver. On a cluster the reads are left to end by their block time (READ_BLOCK_MS), and
 * the last read waits for all of them, so nothing they deliver is left pending.
 */
import type { Redis } from 'ioredis';
import { type RedisClient, isCluster } from '../../redis.js';
import type { Keys } from '../keys.js';
import { type Entries, entriesFor } from '../calls/firing.js';

export interface ReaderSettings {
  fireBatch: number;
  readBlockMs: number;
}

export interface DueReader {
  /** New entries of any partition, waiting up to the block time; null when none came. */
  read(): Promise<Entries | null>;
  start(): Promise<void>;
  /** Makes the reads end soon; the next read returns everything still delivered. */
  stop(): Promise<void>;
}

interface Lane {
  client: RedisClient;
  partitions: number[];
  pending: Promise<void> | undefined;
}

export function createDueReader(commands: RedisClient, blocking: RedisClient[], keys: Keys, worker: string, settings: ReaderSettings): DueReader {
  const all = Array.from({ length: keys.partitions }, (_, p) => p);
  // One lane over every partition on one Redis; one lane per partition on a cluster.
  const lanes: Lane[] = blocking.length === 1 ? [{ client: blocking[0]!, partitions: all, pending: undefined }] : blocking.map((client, p) => ({ client, partitions: [p], pending: undefined }));
  const ready: Entries[] = [];
  let failure: unknown;
  let stopping = false;
  let wake: (() => void) | undefined;

  const readLane = async (lane: Lane): Promise<Entries | null> => {
    const dueKeys = lane.partitions.map((p) => keys.due(p));
    const reply = (await lane.client.xreadgroup(
      'GROUP', keys.group, worker, 'COUNT', entriesFor(settings.fireBatch), 'BLOCK', settings.readBlockMs, 'STREAMS', ...dueKeys, ...dueKeys.map(() => '>'),
    )) as [string, [string, string[] | null][]][] | null;
    if (!reply) return null;
    const entries: Entries = new Map();
    for (const [key, list] of reply) {
      const read = list.filter(([, fields]) => fields).map(([entry, fields]) => [entry, fields![1]!] as [string, string]);
      if (read.length > 0) entries.set(lane.partitions[dueKeys.indexOf(key)]!, read);
    }
    return entries.size > 0 ? entries : null;
  };

  const issue = (lane: Lane) => {
    lane.pending = readLane(lane)
      .then(
        (entries) => {
          if (entries) ready.push(entries);
        },
        (error: unknown) => {
          failure ??= error;
        },
      )
      .finally(() => {
        lane.pending = undefined;
        wake?.();
      });
  };

  const settled = () => new Promise<void>((resolve) => (wake = resolve));

  // One Redis: the blocking connection's id, for CLIENT UNBLOCK at stop.
  const single = lanes.length === 1 && !isCluster(lanes[0]!.client) ? (lanes[0]!.client as Redis) : undefined;
  let clientId: number | undefined;
  const rememberClientId = () => {
    single?.client('ID').then(
      (id) => (clientId = Number(id)),
      () => (clientId = undefined),
    );
  };

  return {
    async read() {
      if (!stopping) for (const lane of lanes) if (!lane.pending) issue(lane);
      // At stop, wait for every read still out: what they deliver is this worker's to fire.
      while ((ready.length === 0 && failure === undefined && lanes.some((lane) => lane.pending)) || (stopping && lanes.some((lane) => lane.pending))) await settled();
      wake = undefined;
      if (failure !== undefined) {
        const error = failure;
        failure = undefined;
        throw error;
      }
      if (ready.length === 0) return null;
      const merged: Entries = new Map();
      for (const entries of ready.splice(0)) for (const [p, list] of entries) merged.set(p, [...(merged.get(p) ?? []), ...list]);
      return merged;
    },
    async start() {
      stopping = false;
      if (!single) return;
      single.on('ready', rememberClientId);
      if (single.status === 'ready') rememberClientId();
      else await single.connect().catch(() => {});
    },
    async stop() {
      stopping = true;
      if (!single) return;
      // Wake the blocking read without losing what it may deliver: CLIENT UNBLOCK makes it
      // return empty; were the connection cut instead, a delivered batch would wait for a sweep.
      if (clientId !== undefined) await commands.client('UNBLOCK', clientId).catch(() => {});
      single.off('ready', rememberClientId);
    },
  };
}
