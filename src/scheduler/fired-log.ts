/**
 * Reading the fired logs: one capped stream per partition, appended by complete.lua in the
 * same atomic step that publishes each event, so the logs hold every event the channel
 * carried, in each partition's firing order, and the channel's losses can be read back here.
 * The cap trims the oldest entries: a read that asks for events after a trimmed position is
 * refused (`LogTrimmed`), never answered with a gap.
 */
import type { RedisClient } from '../redis.js';
import type { Keys } from './keys.js';
import { reachRedis } from './errors.js';
import { type FiredEvent, firedTaskFromJson } from './task.js';

type StreamEntry = [id: string, fields: string[]];

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
  /** The id of each log's newest entry, or 0-0 when a log is empty. */
  tails(): Promise<string[]>;
  /** Up to `count` events of one partition in (from, to], oldest first; LogTrimmed when some after `from` are gone. */
  range(partition: number, from: string, to: string, count: number): Promise<FiredEvent[]>;
  /** True when events after `from` were trimmed off the partition's log. */
  lostAfter(partition: number, from: string): Promise<boolean>;
}

const eventOf = (partition: number, [seq, fields]: StreamEntry): FiredEvent => {
  const json = fields[fields.indexOf('e') + 1];
  return { partition, seq, task: firedTaskFromJson(json ?? '{}') };
};

export function createFiredLog(redis: RedisClient, keys: Keys): FiredLog {
  const partitionList = Array.from({ length: keys.partitions }, (_, p) => p);

  /**
   * Conservative: Redis does not say which ids it trimmed, only that some were and which
   * entry is now first, so a position just before the first entry counts as lost too.
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
    const field = (name: string) => info[info.indexOf(name) + 1];
    const first = field('first-entry') as StreamEntry | null;
    return Number(field('entries-added')) > Number(field('length')) && first !== null && compareSeq(from, first[0]) < 0;
  };

  return {
    tails: () =>
      reachRedis(() =>
        Promise.all(
          partitionList.map(async (p) => {
            const [last] = (await redis.xrevrange(keys.fired(p), '+', '-', 'COUNT', 1)) as StreamEntry[];
            return last ? last[0] : '0-0';
          }),
        ),
      ),
    async range(partition, from, to, count) {
      const page = (await reachRedis(() => redis.xrange(keys.fired(partition), `(${from}`, to, 'COUNT', count))) as StreamEntry[];
      // Trims only take the oldest entries: if nothing after `from` is gone now, the page had it all.
      if (await lostAfter(partition, from)) throw new LogTrimmed(partition);
      return page.map((entry) => eventOf(partition, entry));
    },
    lostAfter,
  };
}
