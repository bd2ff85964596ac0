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
 *
 * A transport that can write a result's JSON itself (graphql-ws, in server.ts) passes a
 * `LiveResultWriter` in the execution's root value. Live events then skip the iterator chain
 * (envelop, graphql-ws's loop) altogether: the feed hands each one to the writer in the turn
 * the hub emits it, with the result serialized once per event and subscription key, so the
 * same text goes to every socket. A result with errors, or one not ready at once, goes the
 * usual way, where envelop masks errors.
 */
import { createSourceEventStream, execute, type DocumentNode, type ExecutionArgs, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { FeedEvents, LiveSink } from '../scheduler/feed.js';

/** One event's result for one subscription key, as JSON text: one object for every subscriber with that key. */
export interface SerializedResult {
  readonly json: string;
}

/** Writes a subscription's live results straight to its client. */
export interface LiveResultWriter {
  /**
   * Sends one result; false (nothing sent) when the client cannot take it now. The result is
   * the same object for every subscriber of that event and key, so a writer may keep what it
   * derives from it (the bytes of a frame) for the next subscriber.
   */
  write(result: SerializedResult): boolean;
}

/** The root value a transport passes to have live results written by `writer`. */
export interface LiveRoot {
  liveWriter?: LiveResultWriter;
}

const documentIds = new WeakMap<DocumentNode, number>();
let nextDocumentId = 0;

/** One event's result for one subscription key, and its JSON text once asked for. */
interface SharedResult {
  result: Promise<ExecutionResult> | ExecutionResult;
  json?: string;
}

/** The results of one event object, by subscription key. */
const resultsByEvent = new WeakMap<object, Map<string, SharedResult>>();

function keyOf(args: ExecutionArgs): string {
  let id = documentIds.get(args.document);
  if (id === undefined) {
    id = nextDocumentId++;
    documentIds.set(args.document, id);
  }
  return `${id}|${args.operationName ?? ''}|${JSON.stringify(args.variableValues ?? {})}`;
}

function sharedResult(args: ExecutionArgs, key: string, payload: unknown): SharedResult {
  if (typeof payload !== 'object' || payload === null) return { result: execute({ ...args, rootValue: payload }) };
  let results = resultsByEvent.get(payload);
  if (!results) {
    results = new Map();
    resultsByEvent.set(payload, results);
  }
  let shared = results.get(key);
  if (!shared) {
    shared = { result: execute({ ...args, rootValue: payload }) };
    results.set(key, shared);
  }
  return shared;
}

const isPromise = (value: unknown): value is Promise<unknown> => typeof (value as Promise<unknown> | undefined)?.then === 'function';

/** A sink that writes each live event's shared JSON, or declines it to the usual path. */
function writingSink(args: ExecutionArgs, key: string, writer: LiveResultWriter): LiveSink {
  return {
    offer(event) {
      const shared = sharedResult(args, key, event);
      const { result } = shared;
      if (isPromise(result) || result.errors) return false;
      shared.json ??= JSON.stringify(result);
      return writer.write(shared as SerializedResult);
    },
  };
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
  const events = (source as AsyncIterable<unknown>)[Symbol.asyncIterator]() as FeedEvents;
  const writer = (args.rootValue as LiveRoot | undefined)?.liveWriter;
  if (writer && typeof events.pushTo === 'function') events.pushTo(writingSink(args, key, writer));
  return mapResults(events, (payload) => sharedResult(args, key, payload).result);
}

/** The envelop plugin: every subscription of the API runs through sharedSubscribe. */
export function useSharedSubscriptionResults(): Plugin {
  return {
    onSubscribe({ setSubscribeFn }) {
      setSubscribeFn(sharedSubscribe as Parameters<typeof setSubscribeFn>[0]);
    },
  };
}
