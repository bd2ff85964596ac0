/**
 * Subscription results computed once per event, not once per subscriber.
 *
 * A live taskFired event is one object that the process's feed hands to every subscription
 * (feed-hub.ts). graphql-js would execute the subscription's selection for it once per
 * subscriber; this plugin keeps each result by event object and by subscription (document,
 * operation, variables), so a thousand subscribers with the same document cost one execution
 * per event. It is sound because nothing in the result depends on who asks: no resolver of
 * an event reads the context. Replayed events are objects of their subscriber's own and are
 * executed as usual.
 */
import { createSourceEventStream, execute, type DocumentNode, type ExecutionArgs, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';

const documentIds = new WeakMap<DocumentNode, number>();
let nextDocumentId = 0;

/** The results of one event object, by subscription key. */
const resultsByEvent = new WeakMap<object, Map<string, Promise<ExecutionResult> | ExecutionResult>>();

function keyOf(args: ExecutionArgs): string {
  let id = documentIds.get(args.document);
  if (id === undefined) documentIds.set(args.document, (id = nextDocumentId++));
  return `${id}|${args.operationName ?? ''}|${JSON.stringify(args.variableValues ?? {})}`;
}

function resultFor(args: ExecutionArgs, key: string, payload: unknown): Promise<ExecutionResult> | ExecutionResult {
  const run = () => execute({ ...args, rootValue: payload });
  if (typeof payload !== 'object' || payload === null) return run();
  let results = resultsByEvent.get(payload);
  if (!results) resultsByEvent.set(payload, (results = new Map()));
  let result = results.get(key);
  if (!result) results.set(key, (result = run()));
  return result;
}

/** Maps a source stream to results, passing on its end, its errors and an early return. */
function mapResults(source: AsyncIterator<unknown>, map: (payload: unknown) => Promise<ExecutionResult> | ExecutionResult): AsyncIterableIterator<ExecutionResult> {
  const results: AsyncIterableIterator<ExecutionResult> = {
    async next() {
      const step = await source.next();
      return step.done ? { done: true, value: undefined } : { done: false, value: await map(step.value) };
    },
    async return() {
      await source.return?.();
      return { done: true, value: undefined };
    },
    async throw(error: unknown) {
      if (source.throw) await source.throw(error);
      throw error;
    },
    [Symbol.asyncIterator]() {
      return results;
    },
  };
  return results;
}

async function sharedSubscribe(args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const source = await createSourceEventStream(args);
  if (!(Symbol.asyncIterator in source)) return source as ExecutionResult;
  const key = keyOf(args);
  return mapResults(source[Symbol.asyncIterator](), (payload) => resultFor(args, key, payload));
}

/** The envelop plugin: every subscription of the API runs through sharedSubscribe. */
export function useSharedSubscriptionResults(): Plugin {
  return {
    onSubscribe({ setSubscribeFn }) {
      setSubscribeFn(sharedSubscribe as Parameters<typeof setSubscribeFn>[0]);
    },
  };
}
