/**
 * `npm run schema:print` writes schema.graphql from the code; `npm run schema:check` exits 1
 * when the committed file differs (CI runs it; so does the test suite).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { printedSchema, SCHEMA_FILE } from './sdl.js';

const printed = printedSchema();
if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(SCHEMA_FILE, 'utf8');
  } catch {
    // A missing file is a drift like any other.
  }
  if (committed !== printed) {
    process.stderr.write('schema.graphql is out of date: run npm run schema:print and commit it\n');
    process.exit(1);
  }
} else {
  writeFileSync(SCHEMA_FILE, printed);
}
