/** The printed table: median (min-max) per system, the ratio Punctual/BullMQ, the target. */
import type { RowSummary } from './figures.js';
import type { RedisLimit } from './limit.js';
import type { W5Run } from './live-subscribers.js';
import type { Profile } from './workloads.js';
import { spread, type Spread } from './stats.js';
import type { SystemName } from './systems.js';

function number(value: number): string {
  if (!Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toLocaleString('en-US');
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2).replace(/\.?0+$/, '') || '0';
}

function spreadText(spread: Spread, format: (value: number) => string = number): string {
  if (!Number.isFinite(spread.median)) return 'pending';
  return spread.min === spread.max ? format(spread.median) : `${format(spread.median)} (${format(spread.min)}-${format(spread.max)})`;
}

function count(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function percent(fraction: number): string {
  const value = fraction * 100;
  return `${value === 100 || value < 10 ? number(value) : value.toFixed(1)}%`;
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

/**
 * W5, Punctual alone: one line per number of subscribers, each figure's median (range) over
 * the runs, then why subscriptions ended.
 */
export function w5Table(runs: W5Run[]): string {
  const columns: [string, (run: W5Run) => number, ((value: number) => string)?][] = [
    ['delivered', (r) => r.delivered, percent],
    ['subscriptions ended', (r) => r.ended, count],
    ['live when tasks began', (r) => r.liveAtStart ?? Number.NaN, count],
    ['duplicates', (r) => r.duplicates, count],
    ['delay p50 ms', (r) => r.delayP50],
    ['delay p99 ms', (r) => r.delayP99],
    ['delay max ms', (r) => r.delayMax],
    ['of it firing lateness p99 ms', (r) => r.firingLatenessP99 ?? Number.NaN],
    ['API RSS per idle subscriber, KB', (r) => r.rssPerSubscriberKb],
    ['API Redis commands/s', (r) => r.apiCommandsPerSec],
    ['all Redis commands/s', (r) => r.redisCommandsPerSec],
    ['API CPU, % of a core', (r) => r.apiCpuPercent],
    ["clients' CPU, % of a core", (r) => r.clientCpuPercent ?? Number.NaN],
    ['API CPU per delivery, µs', (r) => r.apiCpuUsPerDelivery ?? Number.NaN],
    ['of it in the kernel, µs', (r) => r.apiSystemCpuUsPerDelivery ?? Number.NaN],
    ["clients' CPU per delivery, µs", (r) => r.clientCpuUsPerDelivery ?? Number.NaN],
    ['API event-loop delay p99 ms', (r) => r.apiLoopDelayP99 ?? Number.NaN],
    ['API event-loop delay max ms', (r) => r.apiLoopDelayMax ?? Number.NaN],
  ];
  const lines = [`| subscribers | ${columns.map(([name]) => name).join(' | ')} |`, `| ---: | ${columns.map(() => '---:').join(' | ')} |`];
  const ended: string[] = [];
  for (const subscribers of new Set(runs.map((r) => r.subscribers))) {
    const mine = runs.filter((r) => r.subscribers === subscribers);
    lines.push(`| ${count(subscribers)} | ${columns.map(([, figure, format]) => spreadText(spread(mine.map(figure)), format)).join(' | ')} |`);
    const reasons = new Map<string, number>();
    for (const r of mine) for (const [reason, n] of Object.entries(r.reasons)) reasons.set(reason, (reasons.get(reason) ?? 0) + n);
    for (const [reason, n] of reasons) ended.push(`- ${count(subscribers)} subscribers, ${mine.length} run(s): ${count(n)} ended with ${reason}`);
  }
  return [...lines, ...(ended.length > 0 ? ['', 'Subscriptions ended:', ...ended] : [])].join('\n');
}
