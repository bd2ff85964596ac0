/** The Stats type and the stats query: what a dashboard shows about the scheduler. */
import { builder } from './builder.js';

const Stats = builder.objectType('Stats', {
  description: 'A snapshot of the scheduler, read in a few pipelined round trips to Redis, timed by Redis.',
  fields: (t) => ({
    now: t.field({ type: 'DateTime', description: 'Redis time of the snapshot.', resolve: (stats) => stats.now }),
    partitions: t.exposeInt('partitions'),
    scheduled: t.exposeInt('scheduled', { description: 'Tasks waiting for their time.' }),
    due: t.exposeInt('due', { description: 'Tasks due, waiting for a worker.' }),
    firing: t.exposeInt('firing', { description: 'Tasks delivered to a worker, not yet committed.' }),
    firedInLog: t.exposeInt('firedInLog', { description: 'Fired events the fired logs still hold (about FIRED_LOG_MAX per partition).' }),
    backlog: t.exposeInt('backlog', { description: 'Tasks whose time has come and that have not fired yet.' }),
    oldestOverdueMs: t.exposeFloat('oldestOverdueMs', { nullable: true, description: 'How long the oldest of those has waited, in ms; null when none.' }),
    workers: t.exposeInt('workers', { description: 'Workers with a recent heartbeat.' }),
    // Float: a running total outgrows Int's 32 bits (about 25 days at 1,000 tasks/s).
    fired: t.exposeFloat('fired', { description: 'Tasks that ended FIRED, since the data began (a running total, an integer).' }),
    cancelled: t.exposeFloat('cancelled', { description: 'Tasks that ended CANCELLED, since the data began (a running total, an integer).' }),
    dead: t.exposeFloat('dead', { description: 'Tasks that ended DEAD after the maximum deliveries, since the data began (a running total, an integer).' }),
  }),
});

builder.queryFields((t) => ({
  stats: t.field({ type: Stats, resolve: (_root, _args, context) => context.readStats() }),
}));
