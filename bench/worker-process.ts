/**
 * A worker process of either system. Its work is writing the task's message to a stream
 * that discards it; that stream notes, per line, this process's clock at the moment of the
 * write. Lateness is that moment minus the due time the producer wrote into the message,
 * from the same machine clock, for both systems alike.
 *
 * argv: system, Redis URL, JSON worker options. IPC: sends `ready`, then `progress`
 * (tasks worked so far) while it runs; on `stop` it stops the worker and sends `result`.
 */
import { Writable } from 'node:stream';
import { exitWithRunner, toRunner, type Message } from './children.js';
import { parseTaskMessage, startWorker, type SystemName, type WorkerOptions } from './systems.js';

const PROGRESS_EVERY_MS = 50;

const [system, redisUrl, optionsJson] = process.argv.slice(2) as [SystemName, string, string];
exitWithRunner();

const seqs: number[] = [];
const lateness: number[] = [];
let lastWorkAt = 0;

const recorder = new Writable({
  decodeStrings: false,
  write(chunk: string | Buffer, _encoding, done) {
    const workedAt = Date.now();
    const text = String(chunk);
    for (let start = 0, end = text.indexOf('\n'); end >= 0; start = end + 1, end = text.indexOf('\n', start)) {
      const { seq, due } = parseTaskMessage(text.slice(start, end));
      seqs.push(seq);
      lateness.push(workedAt - due);
    }
    lastWorkAt = workedAt;
    done();
  },
});

const worker = await startWorker(system, redisUrl, recorder, JSON.parse(optionsJson) as WorkerOptions);
// The worker's CPU from here on: the work, not the process start.
const cpuAtReady = process.cpuUsage();
let reported = -1;
const progress = setInterval(() => {
  if (seqs.length === reported) return;
  reported = seqs.length;
  toRunner({ type: 'progress', count: seqs.length });
}, PROGRESS_EVERY_MS);

process.on('message', (message: Message) => {
  if (message.type !== 'stop') return;
  clearInterval(progress);
  void worker
    .stop()
    .catch((error: unknown) => process.stderr.write(`stopping the worker failed: ${String(error)}\n`))
    .then(() => {
      const cpu = process.cpuUsage(cpuAtReady);
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      process.send?.({ type: 'result', cpuSeconds, seqs: Int32Array.from(seqs), lateness: Float64Array.from(lateness), lastWorkAt }, () => process.exit(0));
    });
});
toRunner({ type: 'ready' });
