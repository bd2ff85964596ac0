/* eslint-disable */
import * as types from './graphql.js';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "fragment TaskFields on Task {\n  id\n  message\n  time\n  status\n  createdAt\n  firedAt\n  lateByMs\n  attempts\n}\n\nmutation DelayedTask($message: String!, $time: DateTime!, $idempotencyKey: String) {\n  delayedTask(message: $message, time: $time, idempotencyKey: $idempotencyKey) {\n    ...TaskFields\n  }\n}\n\nmutation DelayedTasks($tasks: [DelayedTaskInput!]!) {\n  delayedTasks(tasks: $tasks) {\n    ...TaskFields\n  }\n}\n\nmutation CancelTask($id: ID!) {\n  cancelTask(id: $id) {\n    ...TaskFields\n  }\n}\n\nmutation RescheduleTask($id: ID!, $time: DateTime!) {\n  rescheduleTask(id: $id, time: $time) {\n    ...TaskFields\n  }\n}\n\nquery Task($id: ID!) {\n  task(id: $id) {\n    ...TaskFields\n  }\n}\n\nquery Tasks($status: TaskStatus!, $first: Int!, $after: String, $from: DateTime, $to: DateTime) {\n  tasks(status: $status, first: $first, after: $after, from: $from, to: $to) {\n    edges {\n      cursor\n      node {\n        ...TaskFields\n      }\n    }\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n}\n\nquery Stats {\n  stats {\n    now\n    partitions\n    scheduled\n    due\n    firing\n    firedInLog\n    backlog\n    oldestOverdueMs\n    workers\n    fired\n    cancelled\n    dead\n  }\n}\n\nsubscription TaskFired($after: String) {\n  taskFired(after: $after) {\n    cursor\n    task {\n      ...TaskFields\n    }\n  }\n}": typeof types.TaskFieldsFragmentDoc,
};
const documents: Documents = {
    "fragment TaskFields on Task {\n  id\n  message\n  time\n  status\n  createdAt\n  firedAt\n  lateByMs\n  attempts\n}\n\nmutation DelayedTask($message: String!, $time: DateTime!, $idempotencyKey: String) {\n  delayedTask(message: $message, time: $time, idempotencyKey: $idempotencyKey) {\n    ...TaskFields\n  }\n}\n\nmutation DelayedTasks($tasks: [DelayedTaskInput!]!) {\n  delayedTasks(tasks: $tasks) {\n    ...TaskFields\n  }\n}\n\nmutation CancelTask($id: ID!) {\n  cancelTask(id: $id) {\n    ...TaskFields\n  }\n}\n\nmutation RescheduleTask($id: ID!, $time: DateTime!) {\n  rescheduleTask(id: $id, time: $time) {\n    ...TaskFields\n  }\n}\n\nquery Task($id: ID!) {\n  task(id: $id) {\n    ...TaskFields\n  }\n}\n\nquery Tasks($status: TaskStatus!, $first: Int!, $after: String, $from: DateTime, $to: DateTime) {\n  tasks(status: $status, first: $first, after: $after, from: $from, to: $to) {\n    edges {\n      cursor\n      node {\n        ...TaskFields\n      }\n    }\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n}\n\nquery Stats {\n  stats {\n    now\n    partitions\n    scheduled\n    due\n    firing\n    firedInLog\n    backlog\n    oldestOverdueMs\n    workers\n    fired\n    cancelled\n    dead\n  }\n}\n\nsubscription TaskFired($after: String) {\n  taskFired(after: $after) {\n    cursor\n    task {\n      ...TaskFields\n    }\n  }\n}": types.TaskFieldsFragmentDoc,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "fragment TaskFields on Task {\n  id\n  message\n  time\n  status\n  createdAt\n  firedAt\n  lateByMs\n  attempts\n}\n\nmutation DelayedTask($message: String!, $time: DateTime!, $idempotencyKey: String) {\n  delayedTask(message: $message, time: $time, idempotencyKey: $idempotencyKey) {\n    ...TaskFields\n  }\n}\n\nmutation DelayedTasks($tasks: [DelayedTaskInput!]!) {\n  delayedTasks(tasks: $tasks) {\n    ...TaskFields\n  }\n}\n\nmutation CancelTask($id: ID!) {\n  cancelTask(id: $id) {\n    ...TaskFields\n  }\n}\n\nmutation RescheduleTask($id: ID!, $time: DateTime!) {\n  rescheduleTask(id: $id, time: $time) {\n    ...TaskFields\n  }\n}\n\nquery Task($id: ID!) {\n  task(id: $id) {\n    ...TaskFields\n  }\n}\n\nquery Tasks($status: TaskStatus!, $first: Int!, $after: String, $from: DateTime, $to: DateTime) {\n  tasks(status: $status, first: $first, after: $after, from: $from, to: $to) {\n    edges {\n      cursor\n      node {\n        ...TaskFields\n      }\n    }\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n}\n\nquery Stats {\n  stats {\n    now\n    partitions\n    scheduled\n    due\n    firing\n    firedInLog\n    backlog\n    oldestOverdueMs\n    workers\n    fired\n    cancelled\n    dead\n  }\n}\n\nsubscription TaskFired($after: String) {\n  taskFired(after: $after) {\n    cursor\n    task {\n      ...TaskFields\n    }\n  }\n}"): (typeof documents)["fragment TaskFields on Task {\n  id\n  message\n  time\n  status\n  createdAt\n  firedAt\n  lateByMs\n  attempts\n}\n\nmutation DelayedTask($message: String!, $time: DateTime!, $idempotencyKey: String) {\n  delayedTask(message: $message, time: $time, idempotencyKey: $idempotencyKey) {\n    ...TaskFields\n  }\n}\n\nmutation DelayedTasks($tasks: [DelayedTaskInput!]!) {\n  delayedTasks(tasks: $tasks) {\n    ...TaskFields\n  }\n}\n\nmutation CancelTask($id: ID!) {\n  cancelTask(id: $id) {\n    ...TaskFields\n  }\n}\n\nmutation RescheduleTask($id: ID!, $time: DateTime!) {\n  rescheduleTask(id: $id, time: $time) {\n    ...TaskFields\n  }\n}\n\nquery Task($id: ID!) {\n  task(id: $id) {\n    ...TaskFields\n  }\n}\n\nquery Tasks($status: TaskStatus!, $first: Int!, $after: String, $from: DateTime, $to: DateTime) {\n  tasks(status: $status, first: $first, after: $after, from: $from, to: $to) {\n    edges {\n      cursor\n      node {\n        ...TaskFields\n      }\n    }\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n}\n\nquery Stats {\n  stats {\n    now\n    partitions\n    scheduled\n    due\n    firing\n    firedInLog\n    backlog\n    oldestOverdueMs\n    workers\n    fired\n    cancelled\n    dead\n  }\n}\n\nsubscription TaskFired($after: String) {\n  taskFired(after: $after) {\n    cursor\n    task {\n      ...TaskFields\n    }\n  }\n}"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;