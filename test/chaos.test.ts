/**
 * The chaos suite's short profile: every fault scenario holds its bounds (lost 0, early 0,
 * duplicate events 0; duplicate prints only where a worker was killed mid-batch), and every
 * negative control, a deliberately broken variant, is caught by the checker.
 * The soak profile runs the same scenarios bigger: `npm run test:soak`.
 */
import { describe, expect, it } from 'vitest';
import { PROFILES, SCENARIOS, passed, type Outcome } from './chaos/scenarios.js';
import { formatTable } from './chaos/run.js';

const outcomes: Outcome[] = [];

describe('chaos (short profile)', () => {
  for (const scenario of SCENARIOS) {
    it(`${scenario.name}: ${scenario.fault}; its negative control is caught`, { timeout: 240_000 }, async () => {
      const real = await scenario.run(PROFILES.short, 'real');
      outcomes.push(real);
      const problems = [...real.report.violations, ...real.violations];
      expect(problems, JSON.stringify({ report: real.report, figures: real.figures, timeline: real.timeline })).toEqual([]);
      expect(real.report.lost).toBe(0);
      expect(real.report.early).toBe(0);
      expect(real.report.duplicateEvents).toBe(0);

      const control = await scenario.run(PROFILES.short, 'control');
      outcomes.push(control);
      expect(passed(control), `negative control not detected (${scenario.control}): ${JSON.stringify(control.report)}`).toBe(false);
    });
  }

  it('prints the table', () => {
    console.log(`\n${formatTable(outcomes)}\n`);
    expect(outcomes.length).toBe(SCENARIOS.length * 2);
  });
});
