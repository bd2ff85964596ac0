/** Starting and stopping a node:http server, shared by the API server and the ops-only server. */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Connections the kernel queues for accepting (capped by net.core.somaxconn). Node's default,
 * 511, overflowed under a burst of 1,000 connections while the loop was busy, and a client
 * whose connection found the queue full waited for TCP's 1 s retransmission: /healthz then
 * took over 1 s.
 */
const BACKLOG = 4096;

/** Listens on the port (0 picks a free one) and resolves with the port listened on. */
export async function listen(server: Server, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, backlog: BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

/** Stops accepting and closes every connection: open SSE streams and keep-alive sockets would hold close() forever. */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}
