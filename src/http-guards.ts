/**
 * What keeps hostile clients from holding the HTTP side of the API: who may call it, how many
 * connections and sockets they may hold, how long a slow one may take. The review this
 * answers (shared/reviews/security-2026-11.md) found each of these open:
 *
 * - Browsers from other sites: CORS reflected any Origin, so any page could schedule, cancel
 *   and read tasks through a visitor's browser; WebSockets and SSE took any Origin, and the
 *   Host header was not checked, so DNS rebinding reached a loopback instance.
 * - Connections: 19,990 sockets trickling headers used every file descriptor in 11 s; a
 *   trickled body was held for Node's 300 s default; idle graphql-ws sockets had no cap.
 * - GraphiQL: a 9 MB page rendered per request pinned 15-25 MB per client that did not read.
 */
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import type { Config } from './config.js';

export type GuardSettings = Pick<
  Config,
  | 'corsOrigins'
  | 'allowedHosts'
  | 'headersTimeoutMs'
  | 'requestTimeoutMs'
  | 'keepAliveTimeoutMs'
  | 'writeTimeoutMs'
  | 'maxConnections'
  | 'opsConnections'
  | 'maxConnectionsPerClient'
  | 'maxWebSockets'
  | 'maxWebSocketsPerClient'
>;

/** The node:http options that bound how long a client may take to send its request. */
export function serverTimeouts(settings: GuardSettings): ServerOptions {
  return {
    headersTimeout: settings.headersTimeoutMs,
    requestTimeout: settings.requestTimeoutMs,
    keepAliveTimeout: settings.keepAliveTimeoutMs,
    // Node checks them every 30 s by default: a slow client then holds its socket that much longer.
    connectionsCheckingInterval: Math.max(Math.min(settings.headersTimeoutMs / 4, 1000), 50),
  };
}

/** The host name of a Host header, lower case, without port or IPv6 brackets; undefined when absent. */
function hostName(host: string | undefined): string | undefined {
  if (!host) return undefined;
  const match = /^(\[[^\]]*\]|[^:]*)(?::\d*)?$/.exec(host.trim().toLowerCase());
  return (match?.[1] ?? '').replace(/^\[|\]$/g, '');
}

/**
 * Whether the API answers to this Host. DNS rebinding points a name of the attacker's at a
 * loopback or private address; the browser then sends that name as Host. With no list, only
 * names that cannot be rebound from outside are answered: localhost and IP addresses.
 */
export function hostAllowed(host: string | undefined, allowed: readonly string[]): boolean {
  const name = hostName(host);
  if (name === undefined) return true;
  if (allowed.length === 0) return name === 'localhost' || name.endsWith('.localhost') || isIP(name) !== 0;
  return allowed.some((entry) => entry === '*' || entry === name || (entry.startsWith('*.') && name.endsWith(entry.slice(1))));
}

/**
 * Whether a request's Origin may call the API: no Origin (not a browser, or a same-origin
 * GET), the page's own origin (scheme aside, its host is the Host asked for), or one in
 * CORS_ORIGINS. `null` (sandboxed frames, file: pages) is foreign.
 */
export function originAllowed(origin: string | undefined, host: string | undefined, corsOrigins: readonly string[]): boolean {
  if (origin === undefined) return true;
  if (corsOrigins.includes(origin)) return true;
  try {
    return host !== undefined && new URL(origin).host === host.toLowerCase();
  } catch {
    return false;
  }
}

/** Why the API refuses a request from a browser or for a host, or undefined when it does not. */
export function refusal(req: IncomingMessage, settings: GuardSettings): string | undefined {
  if (!hostAllowed(req.headers.host, settings.allowedHosts)) return 'This host name is not served here (ALLOWED_HOSTS).';
  if (!originAllowed(req.headers.origin, req.headers.host, settings.corsOrigins)) return 'Pages of this origin may not call the API (CORS_ORIGINS).';
  return undefined;
}

/** Counts of what each client address holds open. */
class PerClient {
  private readonly counts = new Map<string, number>();
  total = 0;
  /** Counts one more for the address and returns how many it then holds. */
  add(address: string): number {
    const count = (this.counts.get(address) ?? 0) + 1;
    this.counts.set(address, count);
    this.total++;
    return count;
  }
  held(address: string): number {
    return this.counts.get(address) ?? 0;
  }
  remove(address: string): void {
    const count = (this.counts.get(address) ?? 1) - 1;
    if (count > 0) this.counts.set(address, count);
    else this.counts.delete(address);
    this.total--;
  }
}

export interface ConnectionLimits {
  /** True when the request's connection may reach the API; false when it is one kept for the ops routes. */
  admitsApi(req: IncomingMessage): boolean;
  /** True when the upgrade may open one more WebSocket; counts it when it opens. */
  admitsWebSocket(req: IncomingMessage): boolean;
  /** Counts an open WebSocket until it closes. */
  trackWebSocket(req: IncomingMessage, socket: { once(event: 'close', listener: () => void): unknown }): void;
  readonly connections: number;
  readonly webSockets: number;
}

/**
 * Gives each connection HEADERS_TIMEOUT_MS to send a request's headers (from its opening, or
 * from the end of its last response) and REQUEST_TIMEOUT_MS to send the rest of the request;
 * a connection that does not is closed. Node's own headersTimeout and requestTimeout did not
 * close a socket that sent nothing, nor one trickling a header, within 8 s of a 2 s limit
 * (Node 20.20), so the deadlines are kept here.
 */
function enforceDeadlines(server: Server, settings: GuardSettings): void {
  const waiting = new WeakMap<Socket, NodeJS.Timeout>();
  const awaitHeaders = (socket: Socket) => {
    clearTimeout(waiting.get(socket));
    waiting.set(socket, setTimeout(() => socket.destroy(), settings.headersTimeoutMs));
  };
  const headersCame = (socket: Socket) => clearTimeout(waiting.get(socket));
  server.on('connection', (socket: Socket) => {
    awaitHeaders(socket);
    socket.once('close', () => headersCame(socket));
  });
  server.on('upgrade', (req: IncomingMessage) => headersCame(req.socket));
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    headersCame(req.socket);
    const body = setTimeout(() => req.complete || req.socket.destroy(), settings.requestTimeoutMs);
    req.once('end', () => clearTimeout(body));
    res.once('close', () => clearTimeout(body));
    res.once('finish', () => req.socket.destroyed || awaitHeaders(req.socket));
  });
}

/**
 * Caps open connections, per process and per client address, and enforces the header and
 * request deadlines. Past MAX_CONNECTIONS a connection is kept only for the ops routes (up to
 * OPS_CONNECTIONS more), so /healthz, /readyz and /metrics still answer when the API is full;
 * past that, or past a client's share, it is closed at once.
 */
export function limitConnections(server: Server, settings: GuardSettings): ConnectionLimits {
  enforceDeadlines(server, settings);
  const connections = new PerClient();
  const webSockets = new PerClient();
  const opsOnly = new WeakSet<Socket>();
  const addressOf = (socket: Socket) => socket.remoteAddress ?? 'unknown';
  server.on('connection', (socket: Socket) => {
    const address = addressOf(socket);
    const held = connections.add(address);
    socket.once('close', () => connections.remove(address));
    if (held > settings.maxConnectionsPerClient || connections.total > settings.maxConnections + settings.opsConnections) socket.destroy();
    else if (connections.total > settings.maxConnections) opsOnly.add(socket);
  });
  return {
    admitsApi: (req) => !opsOnly.has(req.socket),
    admitsWebSocket: (req) => {
      if (opsOnly.has(req.socket) || webSockets.total >= settings.maxWebSockets) return false;
      return webSockets.held(addressOf(req.socket)) < settings.maxWebSocketsPerClient;
    },
    trackWebSocket: (req, socket) => {
      const address = addressOf(req.socket);
      webSockets.add(address);
      socket.once('close', () => webSockets.remove(address));
    },
    get connections() {
      return connections.total;
    },
    get webSockets() {
      return webSockets.total;
    },
  };
}

/**
 * The GraphiQL page as one buffer, and its gzip, made once and shared by every request: a
 * client that never reads holds a reference to them, not a copy. A response not taken
 * within WRITE_TIMEOUT_MS is cut off, so such clients cannot pile up.
 */
export function cachedPage(render: () => Promise<string>, writeTimeoutMs: number): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  let page: Promise<{ plain: Buffer; gzipped: Buffer; etag: string }> | undefined;
  const build = async () => {
    const plain = Buffer.from(await render());
    const gzipped = await promisify(gzip)(plain);
    return { plain, gzipped, etag: `"${createHash('sha1').update(plain).digest('base64url')}"` };
  };
  return async (req, res) => {
    page ??= build().catch((error: unknown) => {
      page = undefined;
      throw error;
    });
    const { plain, gzipped, etag } = await page;
    const headers: Record<string, string | number> = {
      'content-type': 'text/html; charset=utf-8',
      etag,
      'cache-control': 'no-cache',
      vary: 'accept-encoding',
      'x-frame-options': 'DENY',
      'content-security-policy': "frame-ancestors 'none'",
    };
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, headers).end();
      return;
    }
    const compressed = /\bgzip\b/i.test(String(req.headers['accept-encoding'] ?? ''));
    const body = compressed ? gzipped : plain;
    res.writeHead(200, { ...headers, 'content-length': body.length, ...(compressed ? { 'content-encoding': 'gzip' } : {}) });
    const timer = setTimeout(() => res.destroy(), writeTimeoutMs);
    res.once('close', () => clearTimeout(timer));
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

interface Closable {
  close(code: number, reason: string): void;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * Closes WebSockets that hold no operation for `idleMs`: an acknowledged socket that never
 * subscribes costs a file descriptor and a connection slot for nothing. (graphql-ws itself
 * closes a socket that never sends connection_init, after 3 s.)
 */
export function closeIdleSockets(idleMs: number): { track(socket: Closable, operations: () => number): void; stop(): void } {
  const tracked = new Map<Closable, { operations: () => number; idleSince: number }>();
  const timer = setInterval(
    () => {
      const now = Date.now();
      for (const [socket, state] of tracked) {
        if (state.operations() > 0) state.idleSince = now;
        else if (now - state.idleSince >= idleMs) socket.close(4408, 'Idle: no subscription for WEBSOCKET_IDLE_MS');
      }
    },
    Math.min(idleMs / 4, 1000),
  );
  timer.unref();
  return {
    track(socket, operations) {
      tracked.set(socket, { operations, idleSince: Date.now() });
      socket.once('close', () => tracked.delete(socket));
    },
    stop: () => clearInterval(timer),
  };
}
