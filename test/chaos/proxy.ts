/**
 * A small TCP proxy between one worker and Redis, to cut that worker's connection the ways
 * networks do: reset every connection, blackhole (hold all traffic, as a partition does
 * while TCP retransmits, then let it through), or add latency to every chunk.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/** latency: every chunk held `ms`, then up to `jitterMs` more at random, order kept. */
export type ProxyMode = { kind: 'pass' } | { kind: 'blackhole' } | { kind: 'latency'; ms: number; jitterMs: number };

interface Pipe {
  client: Socket;
  upstream: Socket;
}

export interface Proxy {
  readonly port: number;
  setMode(mode: ProxyMode): void;
  /** Resets every open connection (RST), as a dropped NAT entry or a restarted middlebox does. */
  resetAll(): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<Proxy> {
  let mode: ProxyMode = { kind: 'pass' };
  const pipes = new Set<Pipe>();
  const held: (() => void)[] = [];

  const forward = (from: Socket, to: Socket) => {
    // A chunk never overtakes the one before it: TCP keeps order, so must the proxy.
    let releaseAt = 0;
    from.on('data', (chunk: Buffer) => {
      const send = () => {
        if (!to.destroyed) to.write(chunk);
      };
      if (mode.kind === 'blackhole' || held.length > 0) held.push(send);
      else if (mode.kind === 'latency') {
        releaseAt = Math.max(releaseAt, Date.now() + mode.ms + Math.random() * mode.jitterMs);
        setTimeout(send, releaseAt - Date.now());
      } else if (releaseAt > Date.now()) setTimeout(send, releaseAt - Date.now());
      else send();
    });
  };

  const server: Server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    const pipe = { client, upstream };
    pipes.add(pipe);
    const close = () => {
      pipes.delete(pipe);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    port,
    setMode(next) {
      mode = next;
      if (mode.kind !== 'blackhole') for (const send of held.splice(0)) send();
    },
    resetAll() {
      held.length = 0;
      for (const { client, upstream } of pipes) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      pipes.clear();
    },
    async close() {
      for (const { client, upstream } of pipes) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
