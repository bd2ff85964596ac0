/**
 * Ends the run with the plain line `N passed, N failed` that CI reads. A file whose setup
 * failed counts its tests that did not pass as failed, and an error outside any test counts
 * once: the line never reads green when the run is red.
 */
import type { Reporter, SerializedError, TestModule, TestRunEndReason } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError> = [], reason?: TestRunEndReason): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const module of testModules) {
      const states = [...module.children.allTests()].map((test) => test.result().state);
      const moduleFailed = module.state() === 'failed' && !states.includes('failed');
      for (const state of states) {
        if (state === 'passed') passed++;
        else if (state === 'failed' || moduleFailed) failed++;
        else skipped++;
      }
      if (moduleFailed && states.every((state) => state === 'passed')) failed++;
    }
    // A run that failed before any test (its global setup, say) still reads as failed.
    if (reason === 'failed' && failed === 0) failed = 1;
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
