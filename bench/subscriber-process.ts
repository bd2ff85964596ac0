/**
 * W5's subscribers: one process holding many graphql-ws clients (`ws` sockets), each with one
 * `taskFired` subscription to the Punctual API. Each event's message carries its task's
 * sequence number and due time (see taskMessage), so this process tells, per subscriber,
 * what arrived, what arrived twice, and how long after its due time it arrived (this
 * process's clock, the same machine clock the producer used).
 *
 * A client does not reconnect (`retryAttempts: 0`): a resubscription would start from now
 * and hide the events lost in between, so a dropped socket ends its subscription and counts
 * as ended.
 *
 * argv: WebSocket URL, number of clients, events expected per client. IPC: sends `ready`
 * once every client is connected (or failed to), `progress` while it runs; on `stop` closes
 * every client and sends `result`.
 */
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { exitWithRunner, toRunner, type Message } from './children.js';
import { parseTaskMessage } from './systems.js';

export const TASK_FIRED_SUBSCRIPTION = 'subscription { taskFired { cursor task { id message time firedAt } } }';

/** Clients connecting at once: thousands of simultaneous handshakes would measure the ramp, not the feed. */
const CONNECTING_AT_ONCE = 100;
const PROGRESS_EVERY_MS = 100;
/** Distinct reasons kept for the report, each with its count. */
const REASONS_KEPT = 10;

export interface SubscriberProgress extends Message {
  type: 'progress';
  /** Events received once, over all clients (duplicates not counted). */
  received: number;
  /** Clients that received the probe (a task numbered -1). */
  probed: number;
  /** Clients whose subscription ended (error or complete) or that never connected. */
  ended: number;
  /** Clients done: every expected event received, or ended. */
  settled: number;
}

export interface SubscriberResult extends Message {
  type: 'result';
  received: number;
  duplicates: number;
  ended: number;
  /** Why subscriptions ended, with how many ended that way. */
  reasons: Record<string, number>;
  /** Per event received once: receipt minus due time, ms. */
  delays: Float64Array;
}

const [url, countArg, expectedArg] = process.argv.slice(2) as [string, string, string];
const clientCount = Number(countArg);
const expected = Number(expectedArg);
exitWithRunner();

const clients: Client[] = [];
const delays: number[] = [];
const reasons = new Map<string, number>();
let received = 0;
let duplicates = 0;
let probed = 0;
let ended = 0;
let settled = 0;
let stopping = false;

function describe(error: unknown): string {
  if (Array.isArray(error)) {
    return error.map((e: { message?: string; extensions?: { code?: string } }) => `${e.extensions?.code ?? 'ERROR'}: ${e.message ?? String(e)}`).join('; ');
  }
  if (error && typeof error === 'object' && 'code' in error && 'reason' in error) {
    return `socket closed ${String(error.code)}${error.reason ? ` ${String(error.reason)}` : ''}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function noteReason(reason: string): void {
  if (reasons.has(reason) || reasons.size < REASONS_KEPT) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  else reasons.set('(other)', (reasons.get('(other)') ?? 0) + 1);
}

/** One client and its subscription; resolves once it is connected, or has failed to. */
function subscribe(): Promise<void> {
  return new Promise((connected) => {
    const seen = new Uint8Array(expected);
    let got = 0;
    let done = false;
    const settle = () => {
      if (done) return;
      done = true;
      settled += 1;
    };
    const end = (reason: string) => {
      connected();
      if (stopping) return;
      ended += 1;
      noteReason(reason);
      settle();
    };
    const client = createClient({
      url,
      webSocketImpl: WebSocket,
      lazy: false,
      retryAttempts: 0,
      on: { connected: () => connected() },
      onNonLazyError: (error) => end(`not connected: ${describe(error)}`),
    });
    clients.push(client);
    client.subscribe<{ taskFired: { task: { message: string } } }>(
      { query: TASK_FIRED_SUBSCRIPTION },
      {
        next(result) {
          const receivedAt = Date.now();
          const message = result.data?.taskFired.task.message;
          if (message === undefined) return;
          const { seq, due } = parseTaskMessage(message);
          if (seq < 0) {
            probed += 1;
            return;
          }
          if (seq >= expected) return;
          if (seen[seq]) {
            duplicates += 1;
            return;
          }
          seen[seq] = 1;
          got += 1;
          received += 1;
          delays.push(receivedAt - due);
          if (got === expected) settle();
        },
        error: (error) => end(describe(error)),
        complete: () => end('completed by the server'),
      },
    );
  });
}

const progress = () => toRunner({ type: 'progress', received, probed, ended, settled } satisfies SubscriberProgress);

async function connectAll(): Promise<void> {
  for (let first = 0; first < clientCount; first += CONNECTING_AT_ONCE) {
    await Promise.all(Array.from({ length: Math.min(CONNECTING_AT_ONCE, clientCount - first) }, subscribe));
  }
}

await connectAll();
toRunner({ type: 'ready', connected: clientCount - ended });
setInterval(progress, PROGRESS_EVERY_MS);

process.on('message', (message: Message) => {
  if (message.type !== 'stop') return;
  stopping = true;
  const result: SubscriberResult = { type: 'result', received, duplicates, ended, reasons: Object.fromEntries(reasons), delays: Float64Array.from(delays) };
  process.send?.(result, () => {
    for (const client of clients) void client.dispose();
    process.exit(0);
  });
});
