/** The Task type, its status, and the queries and mutations that schedule, read, list, cancel and reschedule tasks. */
import { z } from 'zod';
import { TASK_STATUSES, type Task as StoredTask } from '../scheduler/task.js';
import { MAX_CANDIDATES, MAX_PAGE_SIZE } from '../scheduler/listing.js';
import { builder } from './builder.js';

/** GraphQL Int is 32-bit; a task fired weeks late reports the largest Int rather than failing the whole answer. */
const MAX_INT = 2 ** 31 - 1;

/** A lone UTF-16 surrogate cannot be stored as UTF-8: Redis would keep a replacement character instead. */
const wellFormed = (what: string) =>
  z.string().refine((value) => !/\p{Cs}/u.test(value), { message: `The ${what} is not well-formed Unicode (it has a lone surrogate).` });

/** Ids are `<partition>-<16 to 32 characters>`; a longer one is not ours and is not echoed back or looked up. */
const MAX_ID_LENGTH = 64;
const taskId = z.string().max(MAX_ID_LENGTH, { message: `A task id is at most ${MAX_ID_LENGTH} characters; this one is longer, so no task has it.` });

export const TaskStatus = builder.enumType('TaskStatus', {
  description: 'SCHEDULED → DUE → FIRING → FIRED; SCHEDULED or DUE → CANCELLED; after too many failed deliveries → DEAD.',
  values: TASK_STATUSES,
});

export const Task = builder.objectType('Task', {
  description: 'A message to print at a time.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'Starts with the partition number: `<partition>-<random>`.' }),
    message: t.exposeString('message'),
    time: t.field({ type: 'DateTime', description: 'When it is due.', resolve: (task) => task.time }),
    status: t.field({ type: TaskStatus, resolve: (task) => task.status }),
    createdAt: t.field({ type: 'DateTime', resolve: (task) => task.createdAt }),
    firedAt: t.field({ type: 'DateTime', nullable: true, description: 'When a worker started firing it (Redis time).', resolve: (task) => task.firedAt }),
    lateByMs: t.int({
      nullable: true,
      description: `firedAt - time, in ms; at most ${MAX_INT} (about 24.8 days).`,
      resolve: (task) => (task.lateByMs === null ? null : Math.min(task.lateByMs, MAX_INT)),
    }),
    attempts: t.exposeInt('attempts', { description: 'Deliveries to a worker; above 1 means it was retried and may have printed more than once.' }),
    firedBy: t.exposeString('firedBy', { nullable: true, description: 'The worker that fired it.' }),
    endedAt: t.field({ type: 'DateTime', nullable: true, description: 'When it was cancelled or became DEAD.', resolve: (task) => task.endedAt }),
    idempotencyKey: t.exposeString('idempotencyKey', { nullable: true }),
  }),
});

const PageInfo = builder.objectType('PageInfo', {
  fields: (t) => ({
    hasNextPage: t.exposeBoolean('hasNextPage'),
    endCursor: t.exposeString('endCursor', { nullable: true, description: 'Pass as `after` for the next page.' }),
  }),
});

const TaskEdge = builder.objectType('TaskEdge', {
  fields: (t) => ({
    cursor: t.exposeString('cursor'),
    node: t.field({ type: Task, resolve: (edge) => edge.task }),
  }),
});

builder.objectType('TaskConnection', {
  fields: (t) => ({
    edges: t.field({ type: [TaskEdge], resolve: (page) => page.tasks }),
    nodes: t.field({ type: [Task], resolve: (page) => page.tasks.map((edge) => edge.task) }),
    pageInfo: t.field({ type: PageInfo, resolve: (page) => page }),
  }),
});

const DelayedTaskInput = builder.inputType('DelayedTaskInput', {
  fields: (t) => ({
    message: t.string({ required: true, validate: wellFormed('message') }),
    time: t.field({ type: 'DateTime', required: true }),
    idempotencyKey: t.string({ validate: wellFormed('idempotency key') }),
  }),
});

const newTask = (input: { message: string; time: number; idempotencyKey?: string | null | undefined }) => ({
  message: input.message,
  time: input.time,
  idempotencyKey: input.idempotencyKey ?? undefined,
});

builder.queryFields((t) => ({
  task: t.field({
    type: Task,
    nullable: true,
    description: 'A task by id; null when there is none (or it finished longer ago than the retention period).',
    args: { id: t.arg.id({ required: true, validate: taskId }) },
    resolve: (_root, { id }, context): Promise<StoredTask | null> => context.store.get(String(id)),
  }),
  tasks: t.field({
    type: 'TaskConnection',
    description: `Tasks of one status, by due time then id (CANCELLED and DEAD: by endedAt then id), a page at a time (at most ${MAX_PAGE_SIZE}). SCHEDULED comes from the schedule index; DUE and FIRING from the due streams; FIRED from the fired logs (the last FIRED_LOG_MAX per partition); CANCELLED and DEAD from their indexes (at most ${MAX_CANDIDATES} entries per partition examined when from or to filter them).`,
    args: {
      status: t.arg({ type: TaskStatus, required: true, defaultValue: 'SCHEDULED' }),
      from: t.arg({ type: 'DateTime', description: 'Earliest due time, inclusive.' }),
      to: t.arg({ type: 'DateTime', description: 'Latest due time, inclusive.' }),
      first: t.arg.int({ required: true, defaultValue: 50 }),
      after: t.arg.string({ description: 'endCursor of the previous page.' }),
    },
    resolve: (_root, args, context) =>
      context.listTasks({ status: args.status, first: args.first, after: args.after ?? undefined, from: args.from ?? undefined, to: args.to ?? undefined }),
  }),
}));

builder.mutationFields((t) => ({
  delayedTask: t.field({
    type: Task,
    description:
      'Schedules a message to print at `time` (a past time fires at once). Answers once Redis has it. Retrying with the same idempotencyKey, message and time returns the same task instead of a second one.',
    args: {
      message: t.arg.string({ required: true, validate: wellFormed('message') }),
      time: t.arg({ type: 'DateTime', required: true }),
      idempotencyKey: t.arg.string({ validate: wellFormed('idempotency key') }),
    },
    resolve: (_root, args, context) => context.store.schedule(newTask(args)),
  }),
  delayedTasks: t.field({
    type: [Task],
    description: 'Schedules many tasks in one call (at most MAX_BULK). The answer is in the order of the input.',
    args: { tasks: t.arg({ type: [DelayedTaskInput], required: true }) },
    resolve: (_root, args, context) => context.store.scheduleMany(args.tasks.map(newTask)),
  }),
  cancelTask: t.field({
    type: Task,
    description: 'Cancels a task that has not started firing; once this succeeds it never prints. TOO_LATE when it is firing or fired.',
    args: { id: t.arg.id({ required: true, validate: taskId }) },
    resolve: (_root, { id }, context) => context.store.cancel(String(id)),
  }),
  rescheduleTask: t.field({
    type: Task,
    description: 'Gives a task that has not started firing a new time.',
    args: { id: t.arg.id({ required: true, validate: taskId }), time: t.arg({ type: 'DateTime', required: true }) },
    resolve: (_root, { id, time }, context) => context.store.reschedule(String(id), time),
  }),
}));
