/** The schema as committed in schema.graphql: printed from the code, types and fields sorted. */
import { printSchema } from 'graphql';
import { fileURLToPath } from 'node:url';
import { schema } from './index.js';

export const SCHEMA_FILE = fileURLToPath(new URL('../../schema.graphql', import.meta.url));

export function printedSchema(): string {
  return `${printSchema(schema)}\n`;
}
