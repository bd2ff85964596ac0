/**
 * W5's subscribers: one process holding many WebSocket clients (`ws` sockets), each with one
 * `taskFired` subscription to the Punctual API, speaking graphql-ws's protocol
 * (graphql-transport-ws) itself. Each event's message carries its task's sequence number and
 * due time (see taskMessage), so this process tells, per subscriber, what arrived, what
 * arrived twice, and how long after its due time it arrived (this process's clock, the same
 * machine clock the producer used).
 *
 * Thousands of clients share two cores with the API they measure, so a client does only what
 * the protocol and the figures need: a `next` message is read for its task's message alone
 * (found in the raw bytes, not parsed whole); any other message is parsed and handled as
 * graphql-ws's client would (an `error` or `complete` ends the subscription, a `ping` gets
 * its `pong`). graphql-ws's own client cost about 26 µs of CPU per event here, this one a
 * fraction of it (BENCHMARKS.md, W5), so the delay measures the API rather than its clients.
 *
 * A client does not reconnect: a resubscription would start from now and hide the events
 * lost in between, so a dropped socket ends its subscription and counts as ended.
 *
 * argv: WebSocket URL, number of clients, events expected per client. IPC: sends `ready`
 * once every client is connected (or failed to), `progress` while it runs; on `stop` closes
 * every client and sends `result`.
 */
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
  /** CPU (user + system) this process has used so far, seconds. */
  cpuSeconds: number;
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

const clients: WebSocket[] = [];
const delays: number[] = [];
const reasons = new Map<string, number>();
let received = 0;
let duplicates = 0;
let probed = 0;
let ended = 0;
let settled = 0;
let stopping = false;

function noteReason(reason: string): void {
  if (reasons.has(reason) || reasons.size < REASONS_KEPT) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  else reasons.set('(other)', (reasons.get('(other)') ?? 0) + 1);
}

const SUBSCRIBE = JSON.stringify({ id: '1', type: 'subscribe', payload: { query: TASK_FIRED_SUBSCRIPTION } });
const NEXT_HEAD = Buffer.from('{"id":"1","type":"next",');
const MESSAGE_FIELD = Buffer.from('"message":"');
const QUOTE = '"'.charCodeAt(0);

/** The task message of a `next` message as the API writes it, or undefined for any other message. */
function nextTaskMessage(data: Buffer): string | undefined {
  if (data.length < NEXT_HEAD.length || NEXT_HEAD.compare(data, 0, NEXT_HEAD.length) !== 0) return undefined;
  const at = data.indexOf(MESSAGE_FIELD, NEXT_HEAD.length);
  if (at < 0) return undefined;
  const from = at + MESSAGE_FIELD.length;
  // Task messages here are `<seq>:<due>`: digits, a colon and a minus sign, never escaped.
  return data.toString('latin1', from, data.indexOf(QUOTE, from));
}

/** Handles a message other than a task's `next`; returns why it ends the subscription, or undefined when it does not. */
function otherMessage(socket: WebSocket, data: Buffer, acknowledged: () => void): string | undefined {
  let message: { type?: string; payload?: unknown };
  try {
    message = JSON.parse(data.toString('utf8')) as typeof message;
  } catch {
    return 'a message that is not JSON';
  }
  switch (message.type) {
    case 'connection_ack':
      socket.send(SUBSCRIBE);
      acknowledged();
      return undefined;
    case 'ping':
      socket.send('{"type":"pong"}');
      return undefined;
    case 'pong':
      return undefined;
    case 'next': // a result without the task's message (errors): nothing to count
      return undefined;
    case 'error':
      return (message.payload as { message?: string; extensions?: { code?: string } }[]).map((e) => `${e.extensions?.code ?? 'ERROR'}: ${e.message ?? ''}`).join('; ');
    case 'complete':
      return 'completed by the server';
    default:
      return `an unexpected message ${String(message.type)}`;
  }
}

/** One client and its subscription; resolves once it is acknowledged, or has failed. */
function subscribe(): Promise<void> {
  return new Promise((connected) => {
    const seen = new Uint8Array(expected);
    let got = 0;
    let done = false;
    let over = false;
    const settle = () => {
      if (done) return;
      done = true;
      settled += 1;
    };
    const end = (reason: string) => {
      connected();
      if (stopping || over) return;
      over = true;
      ended += 1;
      noteReason(reason);
      settle();
    };
    const socket = new WebSocket(url, 'graphql-transport-ws', { perMessageDeflate: false, skipUTF8Validation: true });
    clients.push(socket);
    socket.on('open', () => socket.send('{"type":"connection_init"}'));
    socket.on('message', (data: Buffer) => {
      const receivedAt = Date.now();
      const message = nextTaskMessage(data);
      if (message === undefined) {
        const ending = otherMessage(socket, data, connected);
        if (ending !== undefined) end(ending);
        return;
      }
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
    });
    socket.on('error', (error) => end(`not connected: ${error.message}`));
    socket.on('close', (code, reason) => end(`socket closed ${code}${reason.length > 0 ? ` ${reason.toString()}` : ''}`));
  });
}

const cpuSeconds = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};
const progress = () => toRunner({ type: 'progress', received, probed, ended, settled, cpuSeconds: cpuSeconds() } satisfies SubscriberProgress);

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
    for (const client of clients) client.terminate();
    process.exit(0);
  });
});
