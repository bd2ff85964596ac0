/**
 * The Pothos builder: plugins, the TypeScript types behind each GraphQL type, and the
 * context every resolver receives. It defines no types itself; each type has its own file.
 */
import SchemaBuilder from '@pothos/core';
import ValidationPlugin from '@pothos/plugin-validation';
import type { TaskStore } from '../scheduler/tasks.js';
import type { Task } from '../scheduler/task.js';
import type { Feed, FeedEvent } from '../scheduler/feed.js';
import type { ListQuery, TaskPage } from '../scheduler/listing.js';
import type { SchedulerStats } from '../scheduler/stats.js';
import { badUserInput } from './errors.js';

/** What the API's resolvers use; the server builds it once per process. */
export interface ApiContext {
  store: TaskStore;
  feed: Pick<Feed, 'subscribe' | 'subscriptions'>;
  listTasks(query: ListQuery): Promise<TaskPage>;
  readStats(): Promise<SchedulerStats>;
}

export const builder = new SchemaBuilder<{
  Context: ApiContext;
  // Times are whole milliseconds since the epoch inside; ISO-8601 strings outside.
  Scalars: { DateTime: { Input: number; Output: number } };
  Objects: {
    Task: Task;
    TaskFired: FeedEvent;
    TaskEdge: TaskPage['tasks'][number];
    TaskConnection: TaskPage;
    PageInfo: Pick<TaskPage, 'hasNextPage' | 'endCursor'>;
    Stats: SchedulerStats;
  };
  DefaultFieldNullability: false;
}>({
  plugins: [ValidationPlugin],
  // Pothos makes fields nullable by default; the contract says what may be null.
  defaultFieldNullability: false,
  validation: {
    validationError: (failure) => badUserInput(failure.issues.map((issue) => issue.message).join('; ')),
  },
});
