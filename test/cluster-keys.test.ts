/**
 * Where partitions fall on a cluster: each partition's tag puts its slot in its own share of
 * the 16384, whatever the topology, so equal contiguous ranges per master (what redis-cli
 * --cluster create makes) hold equal numbers of partitions; one Redis keeps its `{P:n}` names.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLUSTER_SLOTS, channelsOf, createKeys, slotOf } from '../src/scheduler/keys.js';
import { readClusterLayout } from '../src/cluster-layout.js';
import { durabilityShortfall, readPersistence } from '../src/durability.js';
import { isCluster, type RedisClient } from '../src/redis.js';
import { connectBackend } from './helpers.js';

describe('partition keys on a cluster', () => {
  it.each([3, 6, 12, 48])('puts each of %i partitions in its own share of the slots, one slot for all its keys and channels', (partitions) => {
    const keys = createKeys('punctual', partitions, true);
    for (let p = 0; p < partitions; p++) {
      const slot = slotOf(keys.schedule(p));
      expect(slot).toBeGreaterThanOrEqual(Math.floor((p * CLUSTER_SLOTS) / partitions));
      expect(slot).toBeLessThan(Math.floor(((p + 1) * CLUSTER_SLOTS) / partitions));
      for (const key of [keys.due(p), keys.fired(p), keys.task(p, `${p}-x`), keys.idempotency(p, 'k'), keys.totals(p), keys.firedChannel(p), keys.wakeChannel(p)]) expect(slotOf(key)).toBe(slot);
    }
    expect(channelsOf(keys, keys.firedChannel)).toHaveLength(partitions);
  });

  it('keeps the names of one Redis as they were: {P:n} and one channel', () => {
    const keys = createKeys('punctual', 4);
    expect(keys.schedule(3)).toBe('{punctual:3}:schedule');
    expect(channelsOf(keys, keys.firedChannel)).toEqual(['punctual:taskFired']);
    expect(channelsOf(keys, keys.wakeChannel)).toEqual(['punctual:wake']);
  });

  it('hashes as Redis does (CRC16 of the tag)', () => {
    // Values from CLUSTER KEYSLOT.
    expect(slotOf('foo')).toBe(12182);
    expect(slotOf('{user1000}.following')).toBe(slotOf('user1000'));
  });
});

describe('the layout read from the test cluster', () => {
  let redis: RedisClient;
  beforeAll(async () => {
    redis = await connectBackend('cluster');
  });
  afterAll(() => redis.disconnect());

  it('places 12 partitions 4, 4 and 4 on the 3 masters', async () => {
    if (!isCluster(redis)) throw new Error('not a cluster');
    const layout = await readClusterLayout(redis, createKeys('punctual', 12, true));
    expect([...layout.masters.values()].map((list) => list.length)).toEqual([4, 4, 4]);
    expect(layout.unserved).toEqual([]);
    expect(await redis.cluster('KEYSLOT', createKeys('punctual', 12, true).schedule(5))).toBe(slotOf(createKeys('punctual', 12, true).schedule(5)));
  });

  it('reads persistence from every master, and DURABILITY=disk refuses a cluster whose masters fsync once a second', async () => {
    const persistence = await readPersistence(redis);
    expect(persistence).toMatchObject({ aof: true, fsync: 'everysec' });
    expect(durabilityShortfall('disk', persistence)).toMatch(/appendfsync always/);
  });

  it('keeps worker name leases in partitions slots, spread by name', () => {
    const keys = createKeys('punctual', 12, true);
    const slots = new Set(Array.from({ length: 30 }, (_, i) => slotOf(keys.workerLease(`worker-${i}`))));
    expect(slots.size).toBeGreaterThan(5);
    expect(createKeys('punctual', 12).workerLease('w1')).toBe('punctual:lease:w1');
  });
});
