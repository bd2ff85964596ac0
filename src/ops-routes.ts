/**
 * The operational HTTP routes every process serves, whatever its role: `/metrics`
 * (Prometheus), `/healthz` (alive), `/readyz` (ready), and the dashboard at `/` with its
 * scripts and styles (src/web-assets.ts). `createOpsRoutes` returns a handler that answers
 * these paths and returns false for any other, so the API server can mount it in front of
 * its own routes; `createOpsServer` serves it alone, for a process without the API.
 *
 * None of these routes needs the API token: the probes and the metrics hold no task data,
 * and the page holds none either (its GraphQL calls carry the token like any other client).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { closeServer, listen } from './http-listen.js';
import { readFile } from 'node:fs/promises';
import { webAssets } from './web-assets.js';
import type { Metrics } from './metrics.js';
import type { Health } from './health.js';
import type { Logger } from './log.js';

export type OpsRoutes = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface OpsSources {
  metrics: Metrics;
  health: Health;
  log: Logger;
  /** Serve the dashboard at `/`: only where /graphql is, since the page talks to it. */
  livePage: boolean;
}

/** Same-origin only: the browser itself refuses any external or inline script, style, font or connection. */
const PAGE_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function send(req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(req.method === 'HEAD' ? undefined : body);
}

const json = (value: unknown) => JSON.stringify(value);

export function createOpsRoutes(sources: OpsSources): OpsRoutes {
  const { metrics, health, log } = sources;
  const assets = sources.livePage ? webAssets() : new Map<string, never>();
  const pages = new Map<string, Buffer>();

  const page = async (path: string): Promise<Buffer> => {
    let body = pages.get(path);
    if (!body) {
      body = await readFile(assets.get(path)!.file);
      pages.set(path, body);
    }
    return body;
  };

  const answer = async (req: IncomingMessage, res: ServerResponse, path: string) => {
    if (path === '/healthz') return send(req, res, 200, 'application/json', json({ status: 'ok' }));
    if (path === '/readyz') {
      const readiness = await health.ready();
      return send(req, res, readiness.ready ? 200 : 503, 'application/json', json({ status: readiness.ready ? 'ready' : 'not ready', checks: readiness.checks }));
    }
    if (path === '/metrics') return send(req, res, 200, metrics.contentType, await metrics.render());
    return send(req, res, 200, assets.get(path)!.type, await page(path), { 'content-security-policy': PAGE_POLICY, 'x-content-type-options': 'nosniff' });
  };

  return (req, res) => {
    // The path as sent: parsed as a URL, `//graphql` would be the host "graphql" and path `/`.
    const path = (req.url ?? '/').split('?')[0]!;
    if (!['/healthz', '/readyz', '/metrics'].includes(path) && !assets.has(path)) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(req, res, 405, 'application/json', json({ error: 'Use GET.' }), { allow: 'GET, HEAD' });
      return true;
    }
    answer(req, res, path).catch((error: unknown) => {
      log.error({ err: error, path }, 'ops route failed');
      if (!res.headersSent) send(req, res, 500, 'application/json', json({ error: 'Unexpected error.' }));
      else res.destroy();
    });
    return true;
  };
}

export interface OpsServer {
  /** Listens on the port (0 picks a free one). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The port listened on, once started. */
  readonly port: number;
}

/** An HTTP server with only the ops routes, for a process that runs no API (ROLE=worker). */
export function createOpsServer(listenPort: number, routes: OpsRoutes, log: Logger): OpsServer {
  const server = createServer((req, res) => {
    if (!routes(req, res)) send(req, res, 404, 'application/json', json({ error: 'Nothing here: this process serves /metrics, /healthz and /readyz.' }));
  });
  let port = 0;
  return {
    get port() {
      return port;
    },
    async start() {
      port = await listen(server, listenPort);
      log.info({ port }, `ops routes listening on http://localhost:${port} (/metrics, /healthz, /readyz)`);
    },
    stop: () => closeServer(server),
  };
}
