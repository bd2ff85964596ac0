/**
 * What one request, one socket and one process may cost, counted before anything runs.
 *
 * - Tasks created per request: `MAX_BULK` bounds a `delayedTasks` field, but aliases and
 *   batch entries multiply it (a 569 KB batch of 10 operations x 30 aliases x 1,000 created
 *   300,000 tasks). The budget is summed over the whole request from the parsed documents and
 *   their variables, so a request over it is refused before anything is written.
 * - Tasks listed per request: the sum of `first` over every `tasks` field, for the same reason.
 * - Subscriptions only where they can be delivered: over graphql-ws, or over SSE when the
 *   client asked for `text/event-stream`. Inside a JSON batch or a plain JSON answer nothing
 *   reads them, yet each stayed live and buffered every event until the process ran out of
 *   heap.
 * - Live subscriptions per process: a gate around the feed, released when the iterator ends.
 */
import { Kind, parse, type DocumentNode, type FragmentDefinitionNode, type SelectionSetNode, type ValueNode } from 'graphql';
import { createGraphQLError, type Plugin } from 'graphql-yoga';
import type { GraphQLError } from 'graphql';

export interface RequestBudget {
  /** Most tasks one request may create (MAX_BULK). */
  maxCreated: number;
  /** Most tasks one request may list (MAX_LISTED_TASKS). */
  maxListed: number;
  /** Most tokens in a document (MAX_QUERY_TOKENS): the parse here stops where armor's would. */
  maxTokens: number;
}

export interface OperationCost {
  /** The document holds a subscription operation (of those that may run). */
  subscription: boolean;
  /** Tasks its mutations would create. */
  created: number;
  /** Tasks its listings would read (the sum of `first`). */
  listed: number;
}

const FREE: OperationCost = { subscription: false, created: 0, listed: 0 };
/** `tasks` lists this many when `first` is not given (schema default). */
const DEFAULT_PAGE = 50;
/** Only a document naming one of these can cost anything counted here: no need to parse the others. */
const COSTLY = /subscription|delayedTask|tasks/;

type Variables = Readonly<Record<string, unknown>> | null | undefined;

/** The value of an argument, literal or from the variables. */
function argumentValue(node: ValueNode | undefined, variables: Variables): unknown {
  if (!node) return undefined;
  if (node.kind === Kind.VARIABLE) return variables?.[node.name.value];
  if (node.kind === Kind.LIST) return node.values;
  if (node.kind === Kind.INT) return Number(node.value);
  return node.kind === Kind.NULL ? undefined : node;
}

/** Tasks created and listed by the root fields of a selection, through fragments (each visited once). */
function rootFieldCost(selectionSet: SelectionSetNode, fragments: Map<string, FragmentDefinitionNode>, variables: Variables, seen = new Set<string>()): Omit<OperationCost, 'subscription'> {
  let created = 0;
  let listed = 0;
  for (const selection of selectionSet.selections) {
    let inner: Omit<OperationCost, 'subscription'> | undefined;
    if (selection.kind === Kind.INLINE_FRAGMENT) inner = rootFieldCost(selection.selectionSet, fragments, variables, seen);
    else if (selection.kind === Kind.FRAGMENT_SPREAD) {
      const fragment = fragments.get(selection.name.value);
      if (fragment && !seen.has(fragment.name.value)) inner = rootFieldCost(fragment.selectionSet, fragments, variables, seen.add(fragment.name.value));
    } else {
      const arg = (name: string) => argumentValue(selection.arguments?.find((a) => a.name.value === name)?.value, variables);
      if (selection.name.value === 'delayedTask') created += 1;
      if (selection.name.value === 'delayedTasks') {
        const tasks = arg('tasks');
        // GraphQL takes a single value where a list is expected as a list of one.
        created += Array.isArray(tasks) ? tasks.length : 1;
      }
      if (selection.name.value === 'tasks') {
        const first = arg('first');
        listed += typeof first === 'number' && Number.isFinite(first) ? Math.max(first, 0) : DEFAULT_PAGE;
      }
    }
    if (inner) {
      created += inner.created;
      listed += inner.listed;
    }
  }
  return { created, listed };
}

/**
 * What a request's document would cost, counting every operation that may run (the one
 * named, or all when none is). A document that does not parse costs nothing here: the
 * parse that follows refuses it with its own message.
 */
export function operationCost(query: unknown, operationName: unknown, variables: Variables, maxTokens: number): OperationCost {
  if (typeof query !== 'string' || !COSTLY.test(query)) return FREE;
  let document: DocumentNode;
  try {
    document = parse(query, { noLocation: true, maxTokens });
  } catch {
    return FREE;
  }
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  const cost = { ...FREE };
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION) continue;
    if (typeof operationName === 'string' && definition.name?.value !== operationName) continue;
    if (definition.operation === 'subscription') cost.subscription = true;
    const fields = rootFieldCost(definition.selectionSet, fragments, variables);
    cost.created += fields.created;
    cost.listed += fields.listed;
  }
  return cost;
}

/** A refusal of a request that would cost more than its budget, with the documented reason. */
export function overBudget(cost: Omit<OperationCost, 'subscription'>, budget: RequestBudget): GraphQLError | undefined {
  const refuse = (message: string) => createGraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', reason: 'LIMIT_EXCEEDED', http: { status: 400 } } });
  if (cost.created > budget.maxCreated) {
    return refuse(`This request would create ${cost.created} tasks; one request may create at most ${budget.maxCreated} (MAX_BULK), counted over every alias and batch entry. Nothing was written.`);
  }
  if (cost.listed > budget.maxListed) {
    return refuse(`This request would list ${cost.listed} tasks; one request may list at most ${budget.maxListed} (MAX_LISTED_TASKS), the sum of first over every tasks field.`);
  }
  return undefined;
}

/** A subscription sent where nobody would read its events. */
export const undeliverable = (where: string) =>
  createGraphQLError(`Subscriptions are not served ${where}: subscribe over WebSocket (graphql-ws) or over SSE (Accept: text/event-stream), one per request.`, {
    extensions: { code: 'BAD_USER_INPUT', reason: 'SUBSCRIPTION_TRANSPORT', http: { status: 400 } },
  });

/** The client asked for a streamed answer (SSE, or yoga's multipart/mixed), which delivers each event. */
const acceptsStream = (request: Request) => /(^|,)\s*(text\/event-stream|multipart\/mixed)\s*(;|,|$)/i.test(request.headers.get('accept') ?? '');

/**
 * Refuses, before any operation runs, an HTTP request that holds a subscription it cannot
 * deliver or that would cost more than its budget. A thrown error ends the request with it.
 */
export function requestLimitsPlugin(budget: RequestBudget): Plugin {
  return {
    onRequestParse({ request }) {
      return {
        onRequestParseDone({ requestParserResult }) {
          const batch = Array.isArray(requestParserResult);
          const total = { created: 0, listed: 0 };
          for (const params of batch ? requestParserResult : [requestParserResult]) {
            const cost = operationCost(params.query, params.operationName, params.variables, budget.maxTokens);
            if (cost.subscription && batch) throw undeliverable('inside a batch');
            if (cost.subscription && !acceptsStream(request)) throw undeliverable('as a plain HTTP answer');
            total.created += cost.created;
            total.listed += cost.listed;
          }
          const refusal = overBudget(total, budget);
          if (refusal) throw refusal;
        },
      };
    },
  };
}

/**
 * Operations each graphql-ws socket holds, capped. Counted here rather than from graphql-ws'
 * own record, which also holds every operation still waiting in a flood (thousands: counting
 * them per message made a flood quadratic). A socket that keeps sending past as many refusals
 * as its cap is flooding, and is told to close: every refusal is a write.
 */
export class SocketOperations {
  private readonly held = new WeakMap<object, number>();
  private readonly refused = new WeakMap<object, number>();
  constructor(private readonly max: number) {}

  /** Counts one more operation on the socket, or says why not. */
  admit(socket: object): 'admitted' | 'full' | 'flooding' {
    const held = this.held.get(socket) ?? 0;
    if (held < this.max) {
      this.held.set(socket, held + 1);
      return 'admitted';
    }
    const refusals = (this.refused.get(socket) ?? 0) + 1;
    this.refused.set(socket, refusals);
    return refusals > this.max ? 'flooding' : 'full';
  }

  release(socket: object): void {
    this.held.set(socket, Math.max((this.held.get(socket) ?? 1) - 1, 0));
  }

  count(socket: object): number {
    return this.held.get(socket) ?? 0;
  }
}
