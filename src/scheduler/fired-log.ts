/**
 * Reading the fired logs: one capped stream per partition, appended by complete.lua in the
 * same atomic step that publishes each batch, so the logs hold every event the channel
 * carried, in each partition's firing order, and the channel's losses can be read back here.
 * An entry holds one committed batch: `n`, its event count, and `e`, its events as a JSON
 * array; its id is its last event's seq (task.ts, batchEvents). An entry of an earlier
 * version holds one event object in `e` and no `n`: a batch of one. The cap trims the oldest
 * entries: a read that asks for events after a trimmed position is refused (`LogTrimmed`),
 * never answered with a gap.
 */
import type { RedisClient } from '../redis.js';
import type { Keys } from './keys.js';
import { reachRedis } from './errors.js';
import { type FiredEvent, type FiredTaskJson, batchEvents, firstOfBatch } from './task.js';

/** A fired log entry as XRANGE returns it. */
export type FiredLogEntry = [id: string, fields: string[]];

/** Orders stream entry ids: negative when a is before b. */
export function compareSeq(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bMs, bSeq] = b.split('-').map(BigInt) as [bigint, bigint];
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  if (aSeq !== bSeq) return aSeq < bSeq ? -1 : 1;
  return 0;
}

/** Events after a position were trimmed off a log: they cannot be read any more. */
export class LogTrimmed extends Error {
  constructor(readonly partition: number) {
    super(`the fired log of partition ${partition} no longer holds the events after the position`);
    this.name = 'LogTrimmed';
  }
}

export interface FiredLog {
  /** The id of each log's newest entry (its last event's seq), or 0-0 when a log is empty. */
  tails(): Promise<string[]>;
  /** Up to `count` events of one partition in (from, to], oldest first; LogTrimmed when some after `from` are gone. */
  range(partition: number, from: string, to: string, count: number): Promise<FiredEvent[]>;
  /** True when events after `from` were trimmed off the partition's log. */
  lostAfter(partition: number, from: string): Promise<boolean>;
}

const field = (fields: string[], name: string) => {
  const i = fields.indexOf(name);
  return i >= 0 && i % 2 === 0 ? fields[i + 1] : undefined;
};

/** The events of one fired log entry, oldest first, each with its seq: the one place an entry is read. */
export function eventsOfEntry(partition: number, [id, fields]: FiredLogEntry): FiredEvent[] {
  const json = field(fields, 'e') ?? '[]';
  // An entry of an earlier version: one event object, its seq the entry's id.
  const tasks = field(fields, 'n') === undefined ? [JSON.parse(json) as FiredTaskJson] : (JSON.parse(json) as FiredTaskJson[]);
  return batchEvents(partition, id, tasks);
}

/** The seq of an entry's first event, without reading its events. */
function firstSeqOf([id, fields]: FiredLogEntry): string {
  const { ms, first } = firstOfBatch(id, Number(field(fields, 'n') ?? 1));
  return `${ms}-${first}`;
}

/** Entries asked for by the first XRANGE of a read, before it knows how many events an entry holds. */
const FIRST_ENTRIES = 16;

/**
 * Up to `count` events of a log in (from, to] (`to` may be '+'), oldest first, without
 * asking whether any were trimmed. An entry's id is its last event's seq, so `XRANGE (from`
 * starts with the entry holding the event right after `from`. `count` counts events; the
 * entries asked for per XRANGE follow the events per entry seen so far, so a log of large
 * batches is not read whole for one page.
 */
export async function readEvents(redis: RedisClient, key: string, partition: number, from: string, to: string, count: number): Promise<FiredEvent[]> {
  const events: FiredEvent[] = [];
  let start = `(${from}`;
  let entriesRead = 0;
  let eventsRead = 0;
  for (;;) {
    const left = count - events.length;
    const ask = entriesRead === 0 ? Math.min(left, FIRST_ENTRIES) : Math.max(1, Math.min(left, Math.ceil((left * entriesRead) / eventsRead)));
    const entries = (await redis.xrange(key, start, '+', 'COUNT', ask)) as FiredLogEntry[];
    for (const entry of entries) {
      const batch = eventsOfEntry(partition, entry);
      entriesRead += 1;
      eventsRead += batch.length;
      for (const event of batch) {
        if (compareSeq(event.seq, from) <= 0) continue;
        if (to !== '+' && compareSeq(event.seq, to) > 0) return events;
        events.push(event);
        if (events.length === count) return events;
      }
    }
    if (entries.length < ask) return events;
    start = `(${entries[entries.length - 1]![0]}`;
  }
}

export function createFiredLog(redis: RedisClient, keys: Keys): FiredLog {
  const partitionList = Array.from({ length: keys.partitions }, (_, p) => p);

  /**
   * Conservative: Redis does not say which ids it trimmed, only that some were and which
   * entry is now first, so a position just before the first entry's first event counts as
   * lost too.
   */
  const lostAfter = async (partition: number, from: string): Promise<boolean> => {
    const info = await reachRedis(() =>
      redis.xinfo('STREAM', keys.fired(partition)).then(
        (reply) => reply as unknown[],
        (error: Error) => {
          if (/no such key/i.test(error.message)) return null;
          throw error;
        },
      ),
    );
    if (!info) return false;
    const about = (name: string) => info[info.indexOf(name) + 1];
    if (Number(about('entries-added')) <= Number(about('length'))) return false;
    const first = about('first-entry') as FiredLogEntry | null;
    // Emptied by trims: every event up to the last id it generated is gone.
    if (first === null) return compareSeq(from, String(about('last-generated-id'))) < 0;
    return compareSeq(from, firstSeqOf(first)) < 0;
  };

  return {
    tails: () =>
      reachRedis(() =>
        Promise.all(
          partitionList.map(async (p) => {
            const [last] = (await redis.xrevrange(keys.fired(p), '+', '-', 'COUNT', 1)) as FiredLogEntry[];
            return last ? last[0] : '0-0';
          }),
        ),
      ),
    async range(partition, from, to, count) {
      const page = await reachRedis(() => readEvents(redis, keys.fired(partition), partition, from, to, count));
      // Trims only take the oldest entries: if nothing after `from` is gone now, the page had it all.
      if (await lostAfter(partition, from)) throw new LogTrimmed(partition);
      return page;
    },
    lostAfter,
  };
}
