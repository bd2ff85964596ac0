/**
 * The HTTP side of the API: graphql-yoga on node:http at /graphql (queries, mutations, SSE
 * subscriptions, GraphiQL), graphql-ws on the same path for WebSocket subscriptions, and the
 * seed's REST call `POST /api/tasks/delayedTask`. `createServer` starts nothing; `start`
 * listens and `stop` closes every connection.
 *
 * Guards sit in front of yoga: the body size limit (a body is read whole, at most
 * MAX_BODY_BYTES, before anything parses it) and the optional bearer token. graphql-armor
 * bounds depth, aliases and tokens; yoga bounds the batch size.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { closeServer, listen } from './http-listen.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { useServer, type Extra } from 'graphql-ws/use/ws';
import type { Context, SubscribePayload } from 'graphql-ws';
import { createYoga, isAsyncIterable, type Plugin } from 'graphql-yoga';
import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import { GraphQLError, NoSchemaIntrospectionCustomRule, type DocumentNode, type ExecutionArgs, type ExecutionResult } from 'graphql';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import type { Registry } from 'prom-client';
import { registerApiGauges } from './metrics.js';
import { schema, type ApiContext } from './schema/index.js';
import { useSharedSubscriptionResults, type LiveResultWriter, type LiveRoot, type SerializedResult } from './schema/shared-results.js';
import { clientError, concealSchema, maskedError, socketError } from './schema/errors.js';
import { cachedPage, closeIdleSockets, limitConnections, refusal, serverTimeouts, type GuardSettings } from './http-guards.js';
import { SocketOperations, operationCost, overBudget, requestLimitsPlugin, type RequestBudget } from './limits.js';

export const GRAPHQL_PATH = '/graphql';
export const REST_SCHEDULE_PATH = '/api/tasks/delayedTask';
/**
 * Whether a POST is JSON, the only body the API reads. Media types are case-insensitive
 * (RFC 9110), and yoga matches them as written, so the header is normalised for it here.
 * Refusing the others also refuses the bodies a browser may POST cross-site without a CORS
 * preflight (forms, plain text), which keeps another site's page from scheduling tasks.
 */
function isJson(req: IncomingMessage): boolean {
  const [type = '', ...parameters] = (req.headers['content-type'] ?? '').split(';');
  const media = type.trim().toLowerCase();
  if (media !== 'application/json' && media !== 'application/graphql+json') return false;
  req.headers['content-type'] = [media, ...parameters.map((p) => p.trim().toLowerCase())].join('; ');
  return true;
}

export type ServerSettings = GuardSettings &
  Pick<
  Config,
  | 'port'
  | 'apiToken'
  | 'graphiql'
  | 'introspection'
  | 'maxBodyBytes'
  | 'maxQueryDepth'
  | 'maxAliases'
  | 'maxQueryTokens'
  | 'maxBatchOperations'
  | 'maxBulk'
  | 'maxListedTasks'
  | 'maxSubscriptions'
  | 'maxSubscriptionsPerSocket'
  | 'webSocketIdleMs'
  | 'wsKeepAliveMs'
>;

/** Routes served in front of the API's own (the ops routes): answers a request and returns true, or returns false. */
export type MountedRoutes = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface ApiServer {
  /** Listens on the configured port (0 picks a free one). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The port listened on, once started. */
  readonly port: number;
}

/** The REST call runs this operation, so it validates and answers exactly as GraphQL does. */
const REST_SCHEDULE_OPERATION = `mutation RestDelayedTask($message: String!, $time: DateTime!, $idempotencyKey: String) {
  delayedTask(message: $message, time: $time, idempotencyKey: $idempotencyKey) {
    id message time status createdAt firedAt lateByMs attempts
  }
}`;

/** HTTP status of a REST answer by error code. */
const REST_STATUS: Record<string, number> = {
  BAD_USER_INPUT: 400,
  UNAUTHENTICATED: 401,
  NOT_FOUND: 404,
  IDEMPOTENCY_CONFLICT: 409,
  TIME_TOO_FAR: 422,
  TOO_LATE: 409,
  UNAVAILABLE: 503,
};

const errorBody = (message: string, code: string, reason?: string) => JSON.stringify({ errors: [{ message, extensions: { code, ...(reason ? { reason } : {}) } }] });
const FULL = 'This process holds as many connections as it serves (MAX_CONNECTIONS, MAX_WEBSOCKETS, or a client address\'s share); retry shortly.';

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/**
 * A body already read, in the form @whatwg-node/server takes without cost. Given the Buffer
 * itself, it tests `Object.keys(body).length`, which lists every byte's index: 50 ms of one
 * core per 590 KB body (profiled), most of a large request's time. An async iterable with one
 * key is taken as the body as it is.
 */
function readBodyOnce(body: Buffer): { bytes: number } & AsyncIterable<Buffer> {
  return {
    bytes: body.length,
    async *[Symbol.asyncIterator]() {
      yield body;
    },
  };
}

/** Compares tokens in constant time (hashing first makes the lengths equal). */
function tokenMatches(expected: string, presented: unknown): boolean {
  if (typeof presented !== 'string') return false;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(presented);
  if (!match) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(expected), digest(match[1]!));
}

/** The Authorization value a graphql-ws client sent in connection_init (any letter case, or under `headers`). */
function authorizationParam(params: Readonly<Record<string, unknown>> | undefined): unknown {
  if (!params) return undefined;
  const headers = typeof params.headers === 'object' && params.headers !== null ? (params.headers as Record<string, unknown>) : {};
  for (const source of [params, headers]) {
    for (const [name, value] of Object.entries(source)) if (name.toLowerCase() === 'authorization') return value;
  }
  return undefined;
}

type BodyResult = { body: Buffer } | { tooLarge: true };

/** Reads a request body whole, refusing it as soon as it passes the limit. */
function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve({ tooLarge: true });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        resolve({ tooLarge: true });
      } else chunks.push(chunk);
    });
    req.once('end', () => resolve({ body: Buffer.concat(chunks) }));
    req.once('error', reject);
  });
}

/**
 * Bytes a socket may hold unsent while live results are written to it directly. Past it they
 * take graphql-ws's own path, one message per completed write, and queue in the subscription's
 * bounded buffer (FEED_BUFFER_MAX), then in the fired logs: a slow client holds this much at
 * most, and slows no one else.
 */
const LIVE_SOCKET_BUFFER_BYTES = 64 * 1024;

/**
 * Holds each socket's writes until the event loop's current turn ends, then sends them in one
 * system call per socket. One event to thousands of sockets costs a call per socket however it
 * is batched; but when the process falls behind, the events of a turn (several messages from
 * Redis read at once) leave together, so the cost per event falls as the load rises.
 */
function createTurnWrites(): (socket: Socket) => void {
  const corked = new Set<Socket>();
  const release = () => {
    for (const socket of corked) socket.uncork();
    corked.clear();
  };
  return (socket) => {
    if (corked.has(socket)) return;
    if (corked.size === 0) setImmediate(release);
    socket.cork();
    corked.add(socket);
  };
}

/** A WebSocket text frame as a server sends it (unmasked, one fragment) holding `text`. */
function textFrame(text: string): Buffer {
  const length = Buffer.byteLength(text);
  const header = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x81; // FIN, text
  if (length < 126) frame[1] = length;
  else if (length < 65_536) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  frame.write(text, header, 'utf8');
  return frame;
}

/**
 * The last frame built from each result, with the message head it was built for: clients that
 * number their subscription alike (most send "1") get the very same bytes.
 */
const framesByResult = new WeakMap<SerializedResult, { head: string; frame: Buffer }>();

function frameOf(result: SerializedResult, head: string): Buffer {
  const last = framesByResult.get(result);
  if (last?.head === head) return last.frame;
  const frame = textFrame(`${head}${result.json}}`);
  framesByResult.set(result, { head, frame });
  return frame;
}

/**
 * Writes a graphql-ws subscription's `next` messages itself, byte for byte what graphql-ws and
 * ws would send (`{"id":…,"type":"next","payload":…}` in one text frame), from a result
 * serialized once for every socket. The frame goes straight onto the connection ws took over
 * at the upgrade (the request's socket): ws writes each of its own frames there at once, so
 * frames never interleave. With a WebSocket extension (compression) the frame would differ:
 * then ws sends it.
 */
function liveWriter(ctx: Context<Record<string, unknown> | undefined, Extra>, id: string, holdTurn: (socket: Socket) => void): LiveResultWriter {
  const head = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
  const { socket, request } = ctx.extra;
  const raw = socket.extensions === '' ? request.socket : undefined;
  return {
    write(result) {
      // Completed by the client, closing, or backed up: graphql-ws's path decides what follows.
      if (!(id in ctx.subscriptions) || socket.readyState !== socket.OPEN || socket.bufferedAmount > LIVE_SOCKET_BUFFER_BYTES) return false;
      holdTurn(request.socket);
      if (raw) raw.write(frameOf(result, head));
      else socket.send(`${head}${result.json}}`);
      return true;
    },
  };
}

const tooManyOnSocket = (max: number) =>
  new GraphQLError(`This socket holds ${max} live operations already (MAX_SUBSCRIPTIONS_PER_SOCKET): complete one first, or open another socket.`, {
    extensions: { code: 'BAD_USER_INPUT', reason: 'LIMIT_EXCEEDED' },
  });


export function createServer(settings: ServerSettings, unlimited: ApiContext, log: Logger, mounted?: MountedRoutes, registry?: Registry): ApiServer {
  const apiLog = log.child({ component: 'api' });
  /** Adds codes to errors that carry none (parse and validation errors are requests to fix), and hides the schema when introspection is off. */
  const withCodes = (errors: readonly GraphQLError[]) =>
    errors.map((error) => {
      const coded = clientError(error) ?? maskedError(error);
      return settings.introspection ? coded : concealSchema(coded);
    });
  const withCodesForSocket = (errors: readonly GraphQLError[]) => withCodes(errors).map(socketError);
  const context: ApiContext = unlimited;
  const budget: RequestBudget = { maxCreated: settings.maxBulk, maxListed: settings.maxListedTasks, maxTokens: settings.maxQueryTokens };
  const plugins: Plugin[] = [
    requestLimitsPlugin(budget),
    EnvelopArmorPlugin({
      // Fragments are a way to write a selection, not a level of nesting.
      maxDepth: { n: settings.maxQueryDepth, flattenFragments: true },
      maxAliases: { n: settings.maxAliases },
      maxTokens: { n: settings.maxQueryTokens },
      // Field suggestions would describe the schema to someone who may not introspect it.
      blockFieldSuggestion: { enabled: !settings.introspection },
    }) as Plugin,
  ];
  // Validation errors reach the answer without passing maskError: give them their code here.
  plugins.push({
    onResultProcess({ result, setResult }) {
      const coded = (one: ExecutionResult) => (one.errors?.length ? { ...one, errors: withCodes(one.errors) } : one);
      if (Array.isArray(result)) setResult(result.map(coded));
      else if (!isAsyncIterable(result)) setResult(coded(result));
    },
  });
  if (!settings.introspection) plugins.push({ onValidate: ({ addValidationRule }) => addValidationRule(NoSchemaIntrospectionCustomRule) });
  plugins.push(useSharedSubscriptionResults());

  const yoga = createYoga<Record<string, unknown>, ApiContext>({
    schema,
    graphqlEndpoint: GRAPHQL_PATH,
    context: () => context,
    // With a token, GraphiQL subscribes over SSE: its Headers tab then reaches every request,
    // where a WebSocket from a browser could carry no Authorization header.
    graphiql: settings.graphiql ? { title: 'Punctual', subscriptionsProtocol: settings.apiToken === undefined ? 'WS' : 'SSE' } : false,
    renderGraphiQL,
    landingPage: false,
    // No CORS headers unless origins are listed: a browser then keeps other sites' pages out.
    cors: settings.corsOrigins.length > 0 ? { origin: settings.corsOrigins, credentials: false, methods: ['GET', 'POST'] } : false,
    batching: settings.maxBatchOperations > 1 ? { limit: settings.maxBatchOperations } : false,
    maskedErrors: {
      maskError: (error) => {
        const shown = clientError(error);
        if (shown) return shown;
        apiLog.error({ err: error }, 'unexpected error in a GraphQL operation (masked)');
        return maskedError(error);
      },
    },
    // Yoga logs every error it rewrites, expected ones included; unexpected ones are logged above.
    logging: {
      debug: (...args) => apiLog.debug({ args }, 'yoga'),
      info: (...args) => apiLog.debug({ args }, 'yoga'),
      warn: (...args) => apiLog.warn({ args }, 'yoga'),
      error: (...args) => apiLog.debug({ args }, 'yoga'),
    },
    plugins,
  });

  // Yoga answers such a request with the page only (a query in the URL just fills the editor).
  const isGraphiQLPage = (req: IncomingMessage) =>
    settings.graphiql && req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');

  const handleRest = async (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    if (req.method !== 'POST') return send(res, 405, errorBody('Use POST.', 'BAD_USER_INPUT'), { allow: 'POST' });
    let input: unknown;
    try {
      input = JSON.parse(body.toString('utf8'));
    } catch {
      return send(res, 400, errorBody('The body is not JSON; send {"time": "2026-11-07T22:49:00+02:00", "message": "..."}.', 'BAD_USER_INPUT'));
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      return send(res, 400, errorBody('The body must be a JSON object {"time", "message"}.', 'BAD_USER_INPUT'));
    }
    const { message, time, idempotencyKey } = input as Record<string, unknown>;
    const response = await yoga.fetch(`http://localhost${GRAPHQL_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ query: REST_SCHEDULE_OPERATION, variables: { message, time, idempotencyKey } }),
    });
    const result = (await response.json()) as { data?: { delayedTask?: unknown } | null; errors?: { message: string; extensions?: { code?: string } }[] };
    const [error] = result.errors ?? [];
    if (error) {
      const code = error.extensions?.code ?? 'INTERNAL_SERVER_ERROR';
      return send(res, REST_STATUS[code] ?? 500, JSON.stringify({ errors: result.errors }), code === 'UNAVAILABLE' ? { 'retry-after': '1' } : {});
    }
    send(res, 201, JSON.stringify(result.data?.delayedTask));
  };

  const graphiqlPage = cachedPage(
    async () => (await yoga.fetch(`http://localhost${GRAPHQL_PATH}`, { headers: { accept: 'text/html' } })).text(),
    settings.writeTimeoutMs,
  );

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (mounted?.(req, res)) return;
    if (!connections.admitsApi(req)) return send(res, 503, errorBody(FULL, 'UNAVAILABLE', 'TOO_MANY_CONNECTIONS'), { connection: 'close', 'retry-after': '1' });
    const url = new URL(req.url ?? '/', 'http://localhost');
    const rest = url.pathname === REST_SCHEDULE_PATH;
    if (url.pathname !== GRAPHQL_PATH && !rest) return send(res, 404, errorBody(`Nothing here: the API is at ${GRAPHQL_PATH}.`, 'NOT_FOUND'));
    const refused = refusal(req, settings);
    if (refused) return send(res, 403, errorBody(refused, 'FORBIDDEN'));
    if (isGraphiQLPage(req)) return graphiqlPage(req, res);
    // The GraphiQL page holds no data; the operations it sends carry the token like any other.
    if (settings.apiToken !== undefined && !isGraphiQLPage(req) && !tokenMatches(settings.apiToken, req.headers.authorization)) {
      return send(res, 401, errorBody('Send the API token as Authorization: Bearer <token>.', 'UNAUTHENTICATED'), { 'www-authenticate': 'Bearer' });
    }
    // A form or plain-text POST is one a browser sends cross-site without asking (no CORS
    // preflight): refusing them keeps another site's page from scheduling tasks through a
    // visitor's browser. JSON, which every client sends, needs the preflight.
    if (req.method === 'POST' && !isJson(req)) return send(res, 415, errorBody('Send the request as JSON (content-type: application/json).', 'BAD_USER_INPUT', 'BAD_REQUEST'));
    const read = req.method === 'GET' || req.method === 'HEAD' ? { body: Buffer.alloc(0) } : await readBody(req, settings.maxBodyBytes);
    if ('tooLarge' in read) {
      return send(res, 413, errorBody(`The request body is larger than ${settings.maxBodyBytes} bytes (MAX_BODY_BYTES).`, 'BAD_USER_INPUT'), { connection: 'close' });
    }
    if (rest) return handleRest(req, res, read.body);
    // Yoga takes a body already read from `req.body`, as behind a body parser.
    if (read.body.length > 0) (req as IncomingMessage & { body?: unknown }).body = readBodyOnce(read.body);
    return yoga(req, res);
  };

  const httpServer = createHttpServer(serverTimeouts(settings), (req, res) => {
    handle(req, res).catch((error: unknown) => {
      // A client that went away mid-upload is not the server's failure: no stack, no alarm.
      if (req.destroyed || (error as { code?: string }).code === 'ECONNRESET') return apiLog.debug({ code: (error as { code?: string }).code }, 'client went away mid-request');
      apiLog.error({ err: error }, 'request failed');
      if (!res.headersSent) send(res, 500, errorBody('Unexpected error.', 'INTERNAL_SERVER_ERROR'));
      else res.destroy();
    });
  });

  const connections = limitConnections(httpServer, settings);
  const idleSockets = closeIdleSockets(settings.webSocketIdleMs);
  if (registry) registerApiGauges(registry, { subscriptions: () => context.feed.subscriptions, connections: () => connections.connections, webSockets: () => connections.webSockets });

  // One error shared by every refusal: a client may send thousands, and each new one costs a stack trace.
  const socketFull = [tooManyOnSocket(settings.maxSubscriptionsPerSocket)];
  const operations = new SocketOperations(settings.maxSubscriptionsPerSocket);
  const holdTurn = createTurnWrites();
  const wsServer = new WebSocketServer({
    server: httpServer,
    path: GRAPHQL_PATH,
    maxPayload: settings.maxBodyBytes,
    verifyClient: ({ req }, decide) => {
      const refused = refusal(req, settings);
      if (refused) decide(false, 403, refused);
      else if (!connections.admitsWebSocket(req)) decide(false, 503, FULL);
      else decide(true);
    },
  });
  wsServer.on('connection', (socket, req) => connections.trackWebSocket(req, socket));
  interface Enveloped extends LiveRoot {
    execute: (args: ExecutionArgs) => unknown;
    subscribe: (args: ExecutionArgs) => unknown;
  }
  /** The execution arguments of a graphql-ws operation, or the errors that refuse it. */
  const prepareOperation = async (ctx: Context<Record<string, unknown> | undefined, Extra>, id: string, payload: SubscribePayload): Promise<ExecutionArgs | GraphQLError[]> => {
    const refusal = overBudget(operationCost(payload.query, payload.operationName, payload.variables, settings.maxQueryTokens), budget);
    if (refusal) return withCodesForSocket([refusal]);
    const enveloped = yoga.getEnveloped({ ...ctx, req: ctx.extra.request, socket: ctx.extra.socket, params: payload });
    let document: DocumentNode;
    try {
      document = enveloped.parse(payload.query);
    } catch (error) {
      return withCodesForSocket([error instanceof GraphQLError ? error : new GraphQLError(String(error))]);
    }
    const errors = enveloped.validate(enveloped.schema, document);
    if (errors.length > 0) return withCodesForSocket(errors);
    return {
      schema: enveloped.schema,
      operationName: payload.operationName ?? null,
      document,
      variableValues: payload.variables ?? null,
      contextValue: await enveloped.contextFactory(),
      rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe, liveWriter: liveWriter(ctx, id, holdTurn) } satisfies Enveloped,
    };
  };

  const wsDisposable = useServer(
    {
      execute: (args) => (args.rootValue as Enveloped).execute(args) as never,
      subscribe: (args) => (args.rootValue as Enveloped).subscribe(args) as never,
      // Returning false closes the socket with 4403 Forbidden.
      onConnect: (ctx) => {
        const allowed =
          settings.apiToken === undefined ||
          tokenMatches(settings.apiToken, authorizationParam(ctx.connectionParams)) ||
          tokenMatches(settings.apiToken, ctx.extra.request.headers.authorization);
        if (allowed) idleSockets.track(ctx.extra.socket, () => operations.count(ctx));
        return allowed;
      },
      onSubscribe: async (ctx, id, payload) => {
        const admitted = operations.admit(ctx);
        if (admitted === 'flooding') ctx.extra.socket.close(4429, 'Too many operations on this socket');
        if (admitted !== 'admitted') return socketFull;
        const prepared = await prepareOperation(ctx, id, payload);
        if (Array.isArray(prepared)) operations.release(ctx);
        return prepared;
      },
      // Every operation admitted and prepared ends here, however it ends (the socket closing included).
      onComplete: (ctx) => operations.release(ctx),
    },
    wsServer,
    // graphql-ws pings each socket and terminates one that has not answered by the next ping
    // (a proxy or NAT may drop an idle connection silently): its subscriptions are released.
    settings.wsKeepAliveMs,
  );

  let port = 0;
  return {
    get port() {
      return port;
    },
    async start() {
      port = await listen(httpServer, settings.port);
      apiLog.info({ port, graphiql: settings.graphiql, auth: settings.apiToken !== undefined }, `API listening on http://localhost:${port}${GRAPHQL_PATH}`);
    },
    async stop() {
      idleSockets.stop();
      await wsDisposable.dispose();
      for (const client of wsServer.clients) client.terminate();
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
      await closeServer(httpServer);
    },
  };
}
