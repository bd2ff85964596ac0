/**
 * The chaos suite's short profile: every fault scenario holds its bounds (lost 0, early 0,
 * duplicate events 0; duplicate prints only where a worker was killed mid-batch), and every
 * negative control, a deliberately broken variant, is caught by the bound it is meant to
 * break (a persistence-off Redis by lost, a clock taken from the worker by early, ...).
 * The soak profile runs the same scenarios bigger: `npm run test:soak`.
 */
import { describe, expect, it } from 'vitest';
import { PROFILES, SCENARIOS, brokenBounds, violationsOf, type Outcome } from './chaos/scenarios.js';
import { formatTable } from './chaos/run.js';

const outcomes: Outcome[] = [];

describe('chaos (short profile)', () => {
  for (const scenario of SCENARIOS) {
    it(`${scenario.name}: ${scenario.fault}; its negative control is caught`, { timeout: 240_000 }, async () => {
      const real = await scenario.run(PROFILES.short, 'real');
      outcomes.push(real);
      expect(violationsOf(real), JSON.stringify({ report: real.report, figures: real.figures, timeline: real.timeline })).toEqual([]);
      expect(real.report.lost).toBe(0);
      expect(real.report.early).toBe(0);
      expect(real.report.duplicateEvents).toBe(0);

      const control = await scenario.run(PROFILES.short, 'control');
      outcomes.push(control);
      // Caught by the bound the broken variant is meant to break, not merely by some bound.
      expect(brokenBounds(control), `negative control (${scenario.control}): ${JSON.stringify({ report: control.report, violations: control.violations })}`).toEqual(
        expect.arrayContaining(scenario.catches),
      );
    });
  }

  it('prints the table', () => {
    console.log(`\n${formatTable(outcomes)}\n`);
    expect(outcomes.length).toBe(SCENARIOS.length * 2);
  });
});
