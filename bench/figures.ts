/**
 * The figures a benchmark run collects: one row per figure, one value per run and system,
 * and the targets of issue 4 as ratios Punctual/BullMQ in the same run.
 */
import { aofLabel, type AofFsync } from './bench-redis.js';
import { spread, type Spread } from './stats.js';
import type { SystemName } from './systems.js';

export interface Row {
  id: string;
  label: string;
  /** The AOF fsync setting of the redis-server it was measured on; null with the AOF off. */
  aof: AofFsync | null;
  /** The workload's own row (id and label), the same under every setting. */
  figure: { id: string; label: string };
  unit: string;
  /** Which way is better; decides nothing but how a reader reads the ratio. */
  better: 'higher' | 'lower';
  values: Record<SystemName, number[]>;
}

export interface Target {
  text: string;
  met(punctual: number, bullmq: number): boolean;
}

/** Issue 4's targets, by row id. */
export const TARGETS: Record<string, Target> = {
  'w1.workers1.tasksPerSec': { text: '>= 2x (aim 3x)', met: (p, b) => p >= 2 * b },
  'w1.workers2.tasksPerSec': { text: '>= 2x (aim 3x)', met: (p, b) => p >= 2 * b },
  'w2.lateness.p99': { text: '<= 0.1x and < 5 ms', met: (p, b) => p <= b / 10 && p < 5 },
  'w3.bulk.tasksPerSec': { text: '>= 2x', met: (p, b) => p >= 2 * b },
  'w3.graphqlBulk.tasksPerSec': { text: '>= 1x', met: (p, b) => p >= b },
  'w4.bytesPerTask': { text: '<= 0.5x', met: (p, b) => p <= b / 2 },
};

/** Rows measured on a deployment other than the one redis-server: a key suffix and a label suffix. */
export interface Setting {
  key: string;
  label: string;
}

export class Figures {
  constructor(
    readonly rows = new Map<string, Row>(),
    private readonly aof: AofFsync | null = null,
    private readonly setting: Setting | null = null,
  ) {}

  /** The same table, for a workload measured on another deployment (a Redis Cluster): rows of its own, as onAof. */
  on(setting: Setting): Figures {
    return new Figures(this.rows, null, setting);
  }

  /**
   * The same table, for a workload measured on a redis-server with the AOF on: each figure
   * goes into a row of its own for that setting (`w2.lateness.p99:aof-always`, label
   * "..., AOF always"), so one workload's code fills the rows of every setting.
   */
  onAof(aof: AofFsync): Figures {
    return new Figures(this.rows, aof);
  }

  private key(id: string): string {
    if (this.setting) return `${id}:${this.setting.key}`;
    return this.aof ? `${id}:aof-${this.aof}` : id;
  }

  record(id: string, label: string, unit: string, better: Row['better'], system: SystemName, value: number): void {
    const key = this.key(id);
    let row = this.rows.get(key);
    if (!row) {
      row = { id: key, label: `${label}${aofLabel(this.aof)}${this.setting?.label ?? ''}`, aof: this.aof, figure: { id, label }, unit, better, values: { punctual: [], bullmq: [] } };
      this.rows.set(key, row);
    }
    row.values[system].push(value);
  }

  /** Puts one system's values of a row into another row too, to compare a variant against them. */
  copy(fromId: string, toId: string, system: SystemName): void {
    const from = this.rows.get(this.key(fromId));
    const to = this.rows.get(this.key(toId));
    if (from && to) to.values[system] = [...from.values[system]];
  }

  /** Median and range per system, the ratio of medians, and the target's verdict. */
  summary(): RowSummary[] {
    return [...this.rows.values()].map((row) => {
      const punctual = spread(row.values.punctual);
      const bullmq = spread(row.values.bullmq);
      const ratio = punctual.median / bullmq.median;
      const target = TARGETS[row.id];
      const comparable = Number.isFinite(punctual.median) && Number.isFinite(bullmq.median);
      return {
        id: row.id,
        label: row.label,
        aof: row.aof,
        figure: row.figure,
        unit: row.unit,
        better: row.better,
        punctual,
        bullmq,
        ratio: Number.isFinite(ratio) ? ratio : null,
        target: target?.text ?? null,
        met: target && comparable ? target.met(punctual.median, bullmq.median) : null,
      };
    });
  }
}

export interface RowSummary {
  id: string;
  label: string;
  /** Absent in results saved before the AOF rows existed. */
  aof?: Row['aof'];
  figure?: Row['figure'];
  unit: string;
  better: Row['better'];
  punctual: Spread;
  bullmq: Spread;
  ratio: number | null;
  target: string | null;
  met: boolean | null;
}
