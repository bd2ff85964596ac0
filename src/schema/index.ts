/** Assembles the schema from the type files; the root types are declared here and filled by them. */
import { lexicographicSortSchema } from 'graphql';
import { builder } from './builder.js';
import './datetime.js';
import './task.js';
import './task-fired.js';
import './stats.js';

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});

/** The schema, its types and fields sorted so the printed form is stable. */
export const schema = lexicographicSortSchema(builder.toSchema());
export type { ApiContext } from './builder.js';
