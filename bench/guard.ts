/**
 * `npm run bench:guard`: the CI regression guard. A small W1 (one worker) and W2 against
 * both systems in the same run; fails when a ratio Punctual/BullMQ falls far below the one
 * committed in guard-baseline.json (ratios, not times, since CI machines differ), or when
 * Punctual loses or duplicates a task. A failing check is measured once more before the
 * guard fails, since a shared CI machine can stall any single run.
 *
 * `npm run bench:guard -- --update` writes the current ratios as the new baseline.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseOptions } from './options.js';
import { runBenchmark } from './run.js';
import type { RowSummary } from './figures.js';

interface Check {
  /** The row whose ratio Punctual/BullMQ is guarded. */
  id: string;
  /** How many times worse than the baseline the ratio may get before the guard fails. */
  tolerance: number;
}

/** Lateness tails swing more from run to run than throughput does, hence the wider margin. */
const CHECKS: Check[] = [
  { id: 'w1.workers1.tasksPerSec', tolerance: 2 },
  { id: 'w2.lateness.p99', tolerance: 4 },
];
/** Figures Punctual must keep at zero whatever BullMQ does. */
const ZERO = ['w1.workers1.lost', 'w1.workers1.duplicates', 'w2.lost'];

const BASELINE_FILE = fileURLToPath(new URL('./guard-baseline.json', import.meta.url));

type Baseline = Record<string, number>;

interface Verdict {
  id: string;
  ratio: number | null;
  baseline: number;
  limit: number;
  ok: boolean;
}

function judge(rows: RowSummary[], baseline: Baseline): Verdict[] {
  const verdicts: Verdict[] = CHECKS.map(({ id, tolerance }) => {
    const row = rows.find((r) => r.id === id);
    const expected = baseline[id] ?? Number.NaN;
    const higher = row?.better !== 'lower';
    const limit = higher ? expected / tolerance : expected * tolerance;
    const ratio = row?.ratio ?? null;
    const ok = ratio !== null && Number.isFinite(expected) && (higher ? ratio >= limit : ratio <= limit);
    return { id, ratio, baseline: expected, limit, ok };
  });
  for (const id of ZERO) {
    const value = rows.find((r) => r.id === id)?.punctual.median ?? Number.NaN;
    verdicts.push({ id: `${id} (Punctual)`, ratio: value, baseline: 0, limit: 0, ok: value === 0 });
  }
  return verdicts;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const update = argv.includes('--update');
  const options = parseOptions(argv.filter((a) => a !== '--update'), 'guard');
  options.only = new Set(['w1', 'w2']);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const started = Date.now();
  let rows = (await runBenchmark(options, log)).rows;

  if (update) {
    const baseline: Baseline = Object.fromEntries(CHECKS.map(({ id }) => [id, Number((rows.find((r) => r.id === id)?.ratio ?? Number.NaN).toFixed(3))]));
    writeFileSync(BASELINE_FILE, `${JSON.stringify(baseline, null, 2)}\n`);
    log(`wrote ${BASELINE_FILE}: ${JSON.stringify(baseline)}`);
    return;
  }

  const baseline = JSON.parse(readFileSync(BASELINE_FILE, 'utf8')) as Baseline;
  let verdicts = judge(rows, baseline);
  if (verdicts.some((v) => !v.ok)) {
    log('a check failed: measuring once more');
    const again = (await runBenchmark(options, log)).rows;
    const second = judge(again, baseline);
    // Each check keeps the better of its two measurements.
    verdicts = verdicts.map((first, i) => (first.ok ? first : second[i]!));
    rows = again;
  }
  for (const v of verdicts) {
    const shown = v.ratio === null ? 'none' : v.ratio.toFixed(3);
    log(`${v.ok ? 'ok  ' : 'FAIL'} ${v.id}: ${shown} (baseline ${v.baseline}, limit ${Number(v.limit.toFixed(3))})`);
  }
  const failed = verdicts.filter((v) => !v.ok).length;
  log(`${verdicts.length - failed} passed, ${failed} failed (${Math.round((Date.now() - started) / 1000)} s)`);
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:guard failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
