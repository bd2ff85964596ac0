/**
 * The chaos suite from the command line: every scenario and its negative control, a table
 * of the figures, exit 1 when a bound is broken or a control is not caught by the bound it
 * is meant to break.
 *
 *   npm run test:soak                      the soak profile (100,000 tasks in all)
 *   npx tsx test/chaos/run.ts --profile short [--only baseline,poison] [--variant control] [--json]
 */
import { PROFILES, SCENARIOS, catchesOf, verdict, type Outcome, type Variant } from './scenarios.js';

export function formatTable(outcomes: Outcome[]): string {
  const header = '| scenario | run | scheduled | lost | early | dup prints | dup events | late p50 / p99 / max (ms) | other figures | must break | verdict |';
  const rule = '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |';
  const rows = outcomes.map((o) => {
    const r = o.report;
    const figures = Object.entries(o.figures)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    const mustBreak = o.variant === 'control' ? catchesOf(o.scenario).join(', ') : '';
    return `| ${o.scenario} | ${o.variant === 'real' ? 'fault' : 'negative control'} | ${r.scheduled} | ${r.lost} | ${r.early} | ${r.duplicatePrints} | ${r.duplicateEvents} | ${r.lateP50} / ${r.lateP99} / ${r.lateMax} | ${figures} | ${mustBreak} | ${verdict(o).text} |`;
  });
  return [header, rule, ...rows].join('\n');
}

async function main() {
  const args = process.argv.slice(2);
  const option = (name: string) => {
    const index = args.indexOf(`--${name}`);
    return index >= 0 ? args[index + 1] : undefined;
  };
  const profileName = (option('profile') ?? 'soak') as keyof typeof PROFILES;
  const profile = PROFILES[profileName];
  if (!profile) throw new Error(`unknown profile ${profileName}; use short or soak`);
  const only = option('only')?.split(',');
  const variants = (option('variant')?.split(',') ?? ['real', 'control']) as Variant[];
  const json = args.includes('--json');
  const outcomes: Outcome[] = [];
  let failed = false;
  for (const scenario of SCENARIOS.filter((s) => !only || only.includes(s.name))) {
    for (const variant of variants) {
      const started = Date.now();
      const outcome = await scenario.run(profile, variant);
      outcomes.push(outcome);
      const { ok } = verdict(outcome);
      if (!ok) failed = true;
      process.stderr.write(`${scenario.name} ${variant}: ${ok ? 'ok' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    }
  }
  const described = outcomes.map((o) => ({ ...o, mustBreak: o.variant === 'control' ? catchesOf(o.scenario) : [], verdict: verdict(o).text }));
  process.stdout.write(json ? `${JSON.stringify(described, null, 2)}\n` : `${formatTable(outcomes)}\n`);
  process.exit(failed ? 1 : 0);
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
