// The live connection: GraphQL subscriptions over one WebSocket, speaking graphql-ws
// (graphql-transport-ws: connection_init/ack, subscribe, next/error/complete, ping/pong),
// small enough to speak here directly. It reconnects with backoff and subscribes again;
// each subscription says what to send at every (re)start, so a feed can resume from its cursor.
import { authorization } from './token.js';

/**
 * `onState(state, text)` hears 'connecting', 'live', or 'down' (refused: the API token is
 * missing or wrong; it keeps retrying, in case the token is set meanwhile). Returns
 * `subscribe` and `reconnect` (after the token changed).
 */
export function createLive(onState) {
  /** Active subscriptions by their current id; a restart gives one a new id. */
  const active = new Map();
  let socket = null;
  let acked = false;
  let retryMs = 500;
  let retryTimer = null;
  let lastId = 0;

  const send = (message) => socket && socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify(message));

  const start = (subscription) => {
    if (subscription.id) active.delete(subscription.id);
    lastId += 1;
    subscription.id = String(lastId);
    active.set(subscription.id, subscription);
    if (acked) send({ id: subscription.id, type: 'subscribe', payload: subscription.payload() });
  };

  /**
   * Subscribes: `payload()` gives { query, variables } at each start; `next(data)` hears each
   * event; `error(errors)` ends it. The server completing it (shutting down, or a slow
   * reader) starts it again. Returns a function that ends it.
   */
  const subscribe = (payload, { next, error }) => {
    const subscription = { id: null, payload, next, error };
    start(subscription);
    return () => {
      if (active.delete(subscription.id)) send({ id: subscription.id, type: 'complete' });
    };
  };

  const receive = (ws, message) => {
    const subscription = active.get(message.id);
    switch (message.type) {
      case 'connection_ack':
        acked = true;
        retryMs = 500;
        onState('live', 'live');
        for (const each of [...active.values()]) start(each);
        break;
      case 'ping':
        ws.send(JSON.stringify({ type: 'pong' }));
        break;
      case 'next':
        if (subscription) subscription.next(message.payload);
        break;
      case 'error':
        active.delete(message.id);
        if (subscription) subscription.error(message.payload || []);
        break;
      case 'complete':
        if (subscription) start(subscription);
        break;
    }
  };

  const connect = () => {
    acked = false;
    onState('connecting', lastId > 0 ? 'reconnecting…' : 'connecting…');
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`, 'graphql-transport-ws');
    socket = ws;
    ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: authorization() ? { Authorization: authorization() } : {} })));
    ws.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // not a frame of this protocol
      }
      receive(ws, message);
    });
    ws.addEventListener('close', (event) => {
      if (socket !== ws) return;
      socket = null;
      acked = false;
      if (event.code === 4403) onState('down', 'UNAUTHENTICATED: the live feed needs the API token; retrying…');
      else onState('connecting', `disconnected (${event.code}); retrying…`);
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    });
  };

  /** Connects again at once, with the current token: closing the socket makes its handler retry. */
  const reconnect = () => {
    retryMs = 250;
    if (socket) return socket.close(1000, 'token changed');
    clearTimeout(retryTimer);
    connect();
  };

  connect();
  return { subscribe, reconnect };
}
