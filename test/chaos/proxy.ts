/**
 * A small TCP proxy between one worker and Redis, to cut that worker's connection the ways
 * networks do: reset every connection, blackhole (hold all traffic, as a partition does
 * while TCP retransmits, then let it through), or add latency to every chunk.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * latency: every reply chunk held `ms`, then up to `jitterMs` more at random, order kept.
 * late-after: when a command carrying `pattern` goes through (at most once per `everyMs`),
 * the replies that follow are held `ms`: the command runs, its answer comes too late.
 * cut-after: when a command carrying `pattern` goes through, its connection answers nothing
 * more and is reset 20 ms later: the command runs, its answer is lost with the connection.
 * late-pipe: once a connection sent `pattern` (its CLIENT SETNAME, say `:blocking`), every
 * reply on it is held `ms`, order kept; other connections are untouched. One connection of a
 * client answered late while its others answer at once, as a lossy path with retransmits does.
 */
export type ProxyMode =
  | { kind: 'pass' }
  | { kind: 'blackhole' }
  | { kind: 'latency'; ms: number; jitterMs: number }
  | { kind: 'late-after'; pattern: string; ms: number; everyMs: number }
  | { kind: 'cut-after'; pattern: string }
  | { kind: 'late-pipe'; pattern: string; ms: number };

interface Pipe {
  client: Socket;
  upstream: Socket;
  /** Cut by cut-after: nothing more goes back to the client. */
  cut?: boolean;
  /** Matched by late-pipe: its replies are held. */
  late?: boolean;
}

export interface TcpProxy {
  readonly port: number;
  /** How many times a late-after pattern went through and held the replies after it. */
  readonly lateAfterTriggers: number;
  /** How many connections a cut-after pattern cut. */
  readonly cuts: number;
  /** Reply chunks late-pipe holds right now. */
  readonly lateHeld: number;
  /** Reply chunks late-pipe held, in all. */
  readonly lateChunks: number;
  setMode(mode: ProxyMode): void;
  /** Resets every open connection (RST), as a dropped NAT entry or a restarted middlebox does. */
  resetAll(): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<TcpProxy> {
  let mode: ProxyMode = { kind: 'pass' };
  const pipes = new Set<Pipe>();
  const held: (() => void)[] = [];

  /** `delayed`: latency applies to this direction (replies only: commands run, answers come late). */
  let lastTrigger = 0;
  let holdRepliesUntil = 0;
  let lateAfterTriggers = 0;
  let cuts = 0;
  let lateHeld = 0;
  let lateChunks = 0;
  const forward = (pipe: Pipe, from: Socket, to: Socket, replies: boolean) => {
    // A chunk never overtakes the one before it: TCP keeps order, so must the proxy. Held
    // chunks wait in one queue per direction, let go in order by one timer: a timer per chunk
    // could fire out of order (two set in one turn for the same instant), and a client would
    // then match a reply to another command (a claim answered with a heartbeat's reply).
    let releaseAt = 0;
    const queue: { at: number; send: () => void }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const pump = () => {
      timer = undefined;
      while (queue.length > 0 && queue[0]!.at <= Date.now()) queue.shift()!.send();
      if (queue.length > 0) timer = setTimeout(pump, Math.max(1, queue[0]!.at - Date.now()));
    };
    const sendAt = (at: number, send: () => void) => {
      if (queue.length === 0 && at <= Date.now()) return send();
      queue.push({ at, send });
      if (!timer) timer = setTimeout(pump, Math.max(0, queue[0]!.at - Date.now()));
    };
    from.on('data', (chunk: Buffer) => {
      const send = () => {
        if (!to.destroyed && !(replies && pipe.cut)) to.write(chunk);
      };
      if (!replies && mode.kind === 'cut-after' && !pipe.cut && chunk.includes(mode.pattern)) {
        pipe.cut = true;
        cuts += 1;
        setTimeout(() => {
          pipe.client.resetAndDestroy();
          pipe.upstream.resetAndDestroy();
        }, 20);
      }
      if (!replies && mode.kind === 'late-pipe' && chunk.includes(mode.pattern)) pipe.late = true;
      if (replies && mode.kind === 'late-pipe' && pipe.late) {
        releaseAt = Math.max(releaseAt, Date.now() + mode.ms);
        lateHeld += 1;
        lateChunks += 1;
        sendAt(releaseAt, () => {
          lateHeld -= 1;
          send();
        });
        return;
      }
      if (!replies && mode.kind === 'late-after' && Date.now() - lastTrigger >= mode.everyMs && chunk.includes(mode.pattern)) {
        lastTrigger = Date.now();
        holdRepliesUntil = lastTrigger + mode.ms;
        lateAfterTriggers += 1;
      }
      if (mode.kind === 'blackhole' || held.length > 0) held.push(send);
      else if (replies && mode.kind === 'latency') releaseAt = Math.max(releaseAt, Date.now() + mode.ms + Math.random() * mode.jitterMs);
      else if (replies) releaseAt = Math.max(releaseAt, holdRepliesUntil);
      if (mode.kind === 'blackhole' || held.includes(send)) return;
      sendAt(releaseAt, send);
    });
  };

  const server: Server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    const pipe: Pipe = { client, upstream };
    pipes.add(pipe);
    const close = () => {
      pipes.delete(pipe);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    forward(pipe, client, upstream, false);
    forward(pipe, upstream, client, true);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    port,
    get lateAfterTriggers() {
      return lateAfterTriggers;
    },
    get cuts() {
      return cuts;
    },
    get lateHeld() {
      return lateHeld;
    },
    get lateChunks() {
      return lateChunks;
    },
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
