/**
 * The checker: from a run's whole history (what clients were told, what workers printed,
 * what was published), for every task: scheduled once, printed how many times, published
 * how many times, fired when. It knows nothing of how the run was made, so a broken
 * variant of the system shows up here as a broken bound.
 */
import type { Accepted, FiredRecord } from './cluster.js';

export interface History {
  accepted: Accepted[];
  /** Tasks whose cancel succeeded: they must never print. */
  cancelled: Set<string>;
  /** Tasks expected to end DEAD instead of firing (poison messages). */
  poison: Set<string>;
  prints: { line: string; at: number }[];
  fired: FiredRecord[];
  statuses: Map<string, string | null>;
}

export interface Bounds {
  /** Most duplicate prints allowed (a killed worker's printed, uncommitted batch). @default 0 */
  duplicatePrints?: number;
}

export interface Report {
  scheduled: number;
  cancelled: number;
  expected: number;
  lost: number;
  /** The first lost tasks' ids, for a closer look (CHAOS_DEBUG=1 prints what is known of each). */
  lostIds: string[];
  early: number;
  duplicatePrints: number;
  duplicateEvents: number;
  cancelledButPrinted: number;
  poisonNotDead: number;
  lateP50: number;
  lateP99: number;
  lateMax: number;
  violations: string[];
}

const percentile = (sorted: number[], q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!);

export function check(history: History, bounds: Bounds = {}): Report {
  const printsByMessage = new Map<string, { count: number; first: number }>();
  for (const { line, at } of history.prints) {
    const entry = printsByMessage.get(line);
    if (entry) entry.count += 1;
    else printsByMessage.set(line, { count: 1, first: at });
  }
  const eventsById = new Map<string, FiredRecord[]>();
  for (const record of history.fired) eventsById.set(record.id, [...(eventsById.get(record.id) ?? []), record]);

  let lost = 0;
  const lostIds: string[] = [];
  let early = 0;
  let duplicatePrints = 0;
  let duplicateEvents = 0;
  let cancelledButPrinted = 0;
  let poisonNotDead = 0;
  const lateness: number[] = [];
  const ids = new Set<string>();
  for (const task of history.accepted) {
    if (ids.has(task.id)) continue; // an id acknowledged twice is one task
    ids.add(task.id);
    const prints = printsByMessage.get(task.message);
    const events = eventsById.get(task.id) ?? [];
    if (history.cancelled.has(task.id)) {
      if (prints || events.length > 0) cancelledButPrinted += 1;
      continue;
    }
    if (history.poison.has(task.id)) {
      if (history.statuses.get(task.id) !== 'DEAD') poisonNotDead += 1;
      continue;
    }
    if (!prints || events.length === 0) {
      if (process.env.CHAOS_DEBUG) process.stderr.write(`LOST ${task.id} prints ${prints?.count ?? 0} events ${events.length} status ${history.statuses.get(task.id)} due ${task.due} msg ${task.message}\n`);
      lost += 1;
      if (lostIds.length < 20) lostIds.push(task.id);
      continue;
    }
    // Early by either clock: the print reached us before its time, or Redis says it fired early.
    if (prints.first < task.due || events.some((e) => e.firedAt < e.time)) early += 1;
    duplicatePrints += prints.count - 1;
    duplicateEvents += events.length - 1;
    lateness.push(Math.min(...events.map((e) => e.lateByMs)));
  }
  lateness.sort((a, b) => a - b);
  const report: Report = {
    scheduled: ids.size,
    cancelled: history.cancelled.size,
    expected: ids.size - history.cancelled.size - history.poison.size,
    lost,
    lostIds,
    early,
    duplicatePrints,
    duplicateEvents,
    cancelledButPrinted,
    poisonNotDead,
    lateP50: percentile(lateness, 0.5),
    lateP99: percentile(lateness, 0.99),
    lateMax: lateness.length ? lateness[lateness.length - 1]! : 0,
    violations: [],
  };
  const bound = (name: keyof Report, limit: number) => {
    if ((report[name] as number) > limit) report.violations.push(`${name} ${report[name]} > ${limit}`);
  };
  bound('lost', 0);
  bound('early', 0);
  bound('duplicateEvents', 0);
  bound('cancelledButPrinted', 0);
  bound('poisonNotDead', 0);
  bound('duplicatePrints', bounds.duplicatePrints ?? 0);
  if (report.expected <= 0) report.violations.push(`expected ${report.expected}: no task was expected to fire, the run proves nothing`);
  return report;
}
