/** The printed table: median (min-max) per system, the ratio Punctual/BullMQ, the target. */
import type { RowSummary } from './figures.js';
import type { RedisLimit } from './limit.js';
import type { Profile } from './workloads.js';
import type { Spread } from './stats.js';
import type { SystemName } from './systems.js';

function number(value: number): string {
  if (!Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toLocaleString('en-US');
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2).replace(/\.?0+$/, '') || '0';
}

function spreadText(spread: Spread): string {
  if (!Number.isFinite(spread.median)) return 'pending';
  return spread.min === spread.max ? number(spread.median) : `${number(spread.median)} (${number(spread.min)}-${number(spread.max)})`;
}

function ratioText(ratio: number | null): string {
  return ratio === null ? '-' : `${ratio.toFixed(ratio >= 10 || ratio === 0 ? 1 : 2)}x`;
}

/** A Markdown table, so the output can go into BENCHMARKS.md as it is. */
export function markdownTable(rows: RowSummary[]): string {
  const lines = [
    '| figure | unit | Punctual median (range) | BullMQ median (range) | Punctual/BullMQ | target | met |',
    '| --- | --- | ---: | ---: | ---: | --- | --- |',
  ];
  for (const row of rows) {
    const met = row.met === null ? '' : row.met ? 'yes' : '**no**';
    lines.push(`| ${row.label} | ${row.unit} | ${spreadText(row.punctual)} | ${spreadText(row.bullmq)} | ${ratioText(row.ratio)} | ${row.target ?? ''} | ${met} |`);
  }
  return lines.join('\n');
}

/**
 * What `appendfsync always` costs each system: its median under `always` over its median
 * under `everysec`, figure by figure (rows measured under both settings in the same run).
 */
export function aofCostTable(rows: RowSummary[]): string {
  const lines = ['| figure | unit | Punctual always/everysec | BullMQ always/everysec |', '| --- | --- | ---: | ---: |'];
  for (const always of rows) {
    if (always.aof !== 'always' || !always.figure) continue;
    const everysec = rows.find((row) => row.aof === 'everysec' && row.figure?.id === always.figure!.id);
    if (!everysec) continue;
    const cost = (system: SystemName) => {
      const ratio = always[system].median / everysec[system].median;
      return ratioText(Number.isFinite(ratio) ? ratio : null);
    };
    lines.push(`| ${always.figure.label} | ${always.unit} | ${cost('punctual')} | ${cost('bullmq')} |`);
  }
  return lines.length > 2 ? lines.join('\n') : '';
}

export function limitTable(limits: RedisLimit[]): string {
  const lines = ['| redis-benchmark (50 clients) | requests/s |', '| --- | ---: |'];
  for (const limit of limits) lines.push(`| ${limit.test}${limit.pipeline > 1 ? `, pipeline ${limit.pipeline}` : ''} | ${number(limit.requestsPerSec)} |`);
  return lines.join('\n');
}

export function profileTable(profiles: Profile[]): string {
  const lines = [
    '| workload | system | Redis CPU ms / 1000 tasks | worker CPU ms / 1000 tasks | top Redis commands (calls, usec) |',
    '| --- | --- | ---: | ---: | --- |',
  ];
  for (const p of profiles) {
    const perK = (seconds: number) => number((seconds * 1000 * 1000) / p.tasks);
    const commands = p.commands.slice(0, 5).map((c) => `${c.command} ${c.calls}, ${c.usec}`).join('; ');
    lines.push(`| ${p.workload} | ${p.system} | ${perK(p.redisCpuSeconds)} | ${perK(p.workerCpuSeconds)} | ${commands} |`);
  }
  return lines.join('\n');
}
