/** The TaskFired event and the taskFired subscription: every fired task, live, resumable with a cursor. */
import { builder } from './builder.js';
import { Task } from './task.js';
import { MAX_WATCHED_IDS } from '../scheduler/feed.js';

const TaskFired = builder.objectType('TaskFired', {
  description: 'A task that fired, with the cursor to resume after it.',
  fields: (t) => ({
    cursor: t.exposeString('cursor', { description: 'Pass as `after` to receive exactly what fired after this event.' }),
    task: t.field({ type: Task, resolve: (event) => event.task }),
  }),
});

builder.subscriptionFields((t) => ({
  taskFired: t.field({
    type: TaskFired,
    description:
      'Every task any worker fires. With `after` (the cursor of an event received earlier) it first replays what fired since, from the fired log, then continues live: no gap, no repeat. ' +
      `With \`ids\` (at most ${MAX_WATCHED_IDS}), only those tasks; one that fired before the subscription started is delivered at once.`,
    args: {
      after: t.arg.string(),
      ids: t.arg.idList({ required: false, description: `Only these tasks (at most ${MAX_WATCHED_IDS}).` }),
    },
    // A feed that fails (Redis lost, subscriber too slow) ends the subscription with the
    // coded error: envelop turns the throw into a last result, the client resumes with after.
    subscribe: (_root, { after, ids }, context) => context.feed.subscribe(after ?? undefined, ids?.map(String)),
    resolve: (event) => event,
  }),
}));
