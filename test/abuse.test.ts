/**
 * Abuse: 1,000 malformed or hostile requests of 25 kinds sent alongside valid traffic to a
 * real service process, and 1,000 hostile messages scheduled and fired. Every refusal has
 * its documented code, nothing leaks, nothing bad is written, valid traffic is unharmed,
 * the server's memory levels off, and the worker's stdout holds exactly one clean line per task.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { ServiceProcess, connect, deletePrefix, freePort, redisNow, testEnv, uniquePrefix, waitFor } from './helpers.js';
import { scanKeys } from './api-helpers.js';

/**
 * Loaded into the service before its program: on SIGUSR2 it collects garbage and writes the
 * memory still in use (V8's heap and the Buffers outside it) to stderr as a JSON line. After
 * a full collection that is what the server retains; RSS and the live heap also hold what it
 * has not collected yet, and swing by tens of MB on their own.
 */
const HEAP_PROBE = `data:text/javascript,${encodeURIComponent(`
import v8 from 'node:v8';
import vm from 'node:vm';
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
process.on('SIGUSR2', () => {
  gc();
  const { heapUsed, external } = process.memoryUsage();
  process.stderr.write(JSON.stringify({ heapAfterGc: heapUsed + external }) + '\\n');
});
`)}`;

/**
 * How much the memory after GC may grow over the last 500 hostile requests (and their valid
 * neighbours). A steady server grows 0.2 to 0.4 MB there, and less with every further
 * thousand (0.4 MB from the 3,500th to the 6,000th); a leak of 2 KB a request, about one
 * kept request body, grows it by 1 MB.
 */
const HEAP_GROWTH_BOUND = 1_000_000;

const prefix = uniquePrefix('abuse');
let service: ServiceProcess;
let redis: Redis;
let url = '';
/** A task that has fired, and one scheduled under IDEMPOTENCY_KEY: the targets of refusals that need one. */
let firedId = '';
const IDEMPOTENCY_KEY = 'abuse-key';

interface Answer {
  status: number;
  text: string;
}

async function post(body: string, headers: Record<string, string> = { 'content-type': 'application/json' }, path = '/graphql'): Promise<Answer> {
  const response = await fetch(`${url}${path}`, { method: 'POST', headers, body });
  return { status: response.status, text: await response.text() };
}

async function get(path: string): Promise<Answer> {
  const response = await fetch(`${url}${path}`);
  return { status: response.status, text: await response.text() };
}

const gql = (query: string, variables?: Record<string, unknown>) => post(JSON.stringify({ query, variables }));
const MUTATION = 'mutation($m: String!, $t: DateTime!, $k: String) { delayedTask(message: $m, time: $t, idempotencyKey: $k) { id } }';
const BULK = 'mutation($t: [DelayedTaskInput!]!) { delayedTasks(tasks: $t) { id } }';
const future = () => new Date(Date.now() + 3_600_000).toISOString();
/** The largest bulk the service takes; the hostile messages are scheduled in bulks of this size. */
const MAX_BULK = 100;

beforeAll(async () => {
  redis = await connect();
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const env = testEnv(prefix, { ROLE: 'all', PORT: String(port), LOG_LEVEL: 'info', MAX_BODY_BYTES: '65536', MAX_QUERY_DEPTH: '3', MAX_BULK: String(MAX_BULK) });
  service = new ServiceProcess(env, [HEAP_PROBE]);
  await service.started();
  const fired = JSON.parse((await gql(MUTATION, { m: 'fires at once', t: new Date().toISOString() })).text) as { data: { delayedTask: { id: string } } };
  firedId = fired.data.delayedTask.id;
  await gql(MUTATION, { m: 'kept', t: future(), k: IDEMPOTENCY_KEY });
  await waitFor(async () => (await gql('query($id: ID!) { task(id: $id) { status } }', { id: firedId })).text.includes('"FIRED"'), 15_000, 'the first task to fire');
});

afterAll(async () => {
  await service.stop();
  await deletePrefix(redis, prefix);
  await redis.quit();
});

/** Twenty-five kinds of bad request, each with the code it must get. */
const HOSTILE: [string, () => Promise<Answer>, string][] = [
  ['time without offset', () => gql(MUTATION, { m: 'x', t: '2030-01-01T10:00:00' }), 'BAD_USER_INPUT'],
  ['impossible date', () => gql(MUTATION, { m: 'x', t: '2030-02-31T10:00:00Z' }), 'BAD_USER_INPUT'],
  ['leap second', () => gql(MUTATION, { m: 'x', t: '2030-06-30T23:59:60Z' }), 'BAD_USER_INPUT'],
  ['year 275760', () => gql(MUTATION, { m: 'x', t: '275760-09-13T00:00:00Z' }), 'BAD_USER_INPUT'],
  ['past the horizon', () => gql(MUTATION, { m: 'x', t: '9999-01-01T00:00:00Z' }), 'TIME_TOO_FAR'],
  ['empty message', () => gql(MUTATION, { m: '', t: future() }), 'BAD_USER_INPUT'],
  ['oversized body', () => gql(MUTATION, { m: 'x'.repeat(65_537), t: future() }), 'BAD_USER_INPUT'],
  ['lone surrogate', () => gql(MUTATION, { m: 'bad \ud800 text', t: future() }), 'BAD_USER_INPUT'],
  ['wrong types', () => gql(MUTATION, { m: { nested: true }, t: 12 }), 'BAD_USER_INPUT'],
  ['deep query', () => gql('{ tasks(status: SCHEDULED) { edges { node { id } } } }'), 'BAD_USER_INPUT'],
  ['alias flood', () => gql(`{ ${Array.from({ length: 200 }, (_, i) => `a${i}: stats { due }`).join(' ')} }`), 'BAD_USER_INPUT'],
  ['token flood', () => gql(`{ stats { ${'due '.repeat(8000)} } }`), 'BAD_USER_INPUT'],
  ['syntax error', () => gql('mutation { delayedTask(message: "x", time: '), 'BAD_USER_INPUT'],
  ['not JSON', () => post('{"query": "{ stats { due } }"'), 'BAD_USER_INPUT'],
  ['unknown id cancel', () => gql('mutation { cancelTask(id: "0-doesnotexist0000") { id } }'), 'NOT_FOUND'],
  ['injection-looking id', () => gql('mutation { cancelTask(id: "0-x}:task:*\\r\\nFLUSHALL") { id } }'), 'NOT_FOUND'],
  ['batch flood', () => post(JSON.stringify(Array.from({ length: 50 }, () => ({ query: '{ stats { due } }' })))), 'BAD_USER_INPUT'],
  ['form POST', () => post('query=mutation%20%7B%20x%20%7D', { 'content-type': 'application/x-www-form-urlencoded' }), 'BAD_USER_INPUT'],
  ['mutation over GET', () => get(`/graphql?query=${encodeURIComponent(`mutation { cancelTask(id: "${firedId}") { id } }`)}`), 'BAD_USER_INPUT'],
  ['REST with bad time', () => post(JSON.stringify({ time: 'tomorrow', message: 'x' }), { 'content-type': 'application/json' }, '/api/tasks/delayedTask'), 'BAD_USER_INPUT'],
  ['a field of the internals', () => gql(`{ task(id: "${firedId}") { id redisKey partition } }`), 'BAD_USER_INPUT'],
  ['bulk over MAX_BULK', () => gql(BULK, { t: Array.from({ length: MAX_BULK + 1 }, (_, i) => ({ message: `bulk ${i}`, time: future() })) }), 'BAD_USER_INPUT'],
  ['cancel after firing', () => gql('mutation($id: ID!) { cancelTask(id: $id) { id } }', { id: firedId }), 'TOO_LATE'],
  ['reschedule after firing', () => gql('mutation($id: ID!, $t: DateTime!) { rescheduleTask(id: $id, time: $t) { id } }', { id: firedId, t: future() }), 'TOO_LATE'],
  ['idempotency key reused with another message', () => gql(MUTATION, { m: 'another', t: future(), k: IDEMPOTENCY_KEY }), 'IDEMPOTENCY_CONFLICT'],
];

/** What a refusal must never show: stack frames, source paths, internal modules. */
const LEAK = /\bat [\w.<>]+ \(|\.ts:\d|node_modules|ioredis|ERR |EVALSHA|\.lua|redis\.call|\{t-abuse/i;

/** The error code of an answer, or HTTP_<status> when its body carries none. */
function codeOf(answer: Answer): string {
  const http = `HTTP_${answer.status}`;
  try {
    const body = JSON.parse(answer.text) as { errors?: { extensions?: { code?: string } }[] } | { errors?: { extensions?: { code?: string } }[] }[];
    const errors = Array.isArray(body) ? body.flatMap((b) => b.errors ?? []) : body.errors;
    if (errors?.length) return errors[0]!.extensions?.code ?? http;
    return answer.status === 200 ? 'NO_ERROR' : http;
  } catch {
    return http;
  }
}

/** The service's memory in use after a full collection, in bytes (see HEAP_PROBE). */
async function heapAfterGc(): Promise<number> {
  const readings = () => [...service.stderr.join('').matchAll(/\{"heapAfterGc":(\d+)\}/g)].map((m) => Number(m[1]));
  const before = readings().length;
  service.kill('SIGUSR2');
  const after = await waitFor(() => (readings().length > before ? readings() : undefined), 10_000, 'the heap reading');
  return after[after.length - 1]!;
}

/** Tasks that ended FIRED, by the partitions' running totals. */
async function firedTotal(): Promise<number> {
  let fired = 0;
  for (let p = 0; p < 4; p++) fired += Number(await redis.hget(`{${prefix}:${p}}:totals`, 'fired'));
  return fired;
}

/** What is stored: the schedules' sizes, and how many task hashes and idempotency keys exist. */
async function stored(): Promise<{ scheduled: number; tasks: number; idempotencyKeys: number }> {
  let scheduled = 0;
  for (let p = 0; p < 4; p++) scheduled += await redis.zcard(`{${prefix}:${p}}:schedule`);
  const tasks = (await scanKeys(redis, `{${prefix}:*}:task:*`)).length;
  const idempotencyKeys = (await scanKeys(redis, `{${prefix}:*}:idem:*`)).length;
  return { scheduled, tasks, idempotencyKeys };
}

describe('abuse', () => {
  it(`refuses 1,000 hostile requests of ${HOSTILE.length} kinds with their codes, alongside valid traffic that is unharmed, in steady memory`, async () => {
    expect(HOSTILE.length).toBeGreaterThanOrEqual(20);
    const rounds = 1000 / HOSTILE.length;
    expect(Number.isInteger(rounds)).toBe(true);
    // One of each first, so the server has compiled and cached what every kind needs.
    for (const [, send] of HOSTILE) await send();
    const before = await stored();

    // The memory the server retains (after a full collection), every few rounds. A leak grows
    // it with every request; a server in steady state settles once warm and stays there.
    const SAMPLE_EVERY = 4;
    const heap: { requests: number; bytes: number }[] = [{ requests: 0, bytes: await heapAfterGc() }];
    const valid: Answer[] = [];
    const hostile: { kind: string; expected: string; answer: Answer }[] = [];
    for (let round = 0; round < rounds; round++) {
      const sent = HOSTILE.map(([kind, send, expected]) => send().then((answer) => ({ kind, expected, answer })));
      // Two valid tasks a round, due an hour ahead so they stay in the schedule to be counted.
      const accepted = [0, 1].map((i) => gql(MUTATION, { m: `valid ${round}-${i}`, t: future() }));
      hostile.push(...(await Promise.all(sent)));
      valid.push(...(await Promise.all(accepted)));
      if ((round + 1) % SAMPLE_EVERY === 0) heap.push({ requests: hostile.length, bytes: await heapAfterGc() });
    }

    expect(hostile).toHaveLength(1000);
    const wrong = hostile.filter(({ answer, expected }) => codeOf(answer) !== expected).map(({ kind, answer }) => `${kind}: ${codeOf(answer)} ${answer.text.slice(0, 120)}`);
    expect(wrong).toEqual([]);
    expect(hostile.filter(({ answer }) => answer.status >= 500)).toEqual([]);
    const leaks = hostile.filter(({ answer }) => LEAK.test(answer.text)).map(({ kind, answer }) => `${kind}: ${answer.text.slice(0, 200)}`);
    expect(leaks).toEqual([]);

    // Valid traffic: all accepted, and only they were written.
    expect(valid).toHaveLength(2 * rounds);
    expect(valid.filter((a) => codeOf(a) !== 'NO_ERROR')).toEqual([]);
    expect(await stored()).toEqual({ scheduled: before.scheduled + valid.length, tasks: before.tasks + valid.length, idempotencyKeys: before.idempotencyKeys });

    // The server is up and its memory steady over the second half.
    expect(codeOf(await gql('{ stats { due } }'))).toBe('NO_ERROR');
    const half = heap.findIndex(({ requests }) => requests >= 500);
    const secondHalf = heap.slice(half).map(({ bytes }) => bytes);
    const growth = Math.max(...secondHalf) - secondHalf[0]!;
    const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
    console.log(
      `abuse: 1,000 hostile requests of ${HOSTILE.length} kinds refused with their codes, 0 5xx, 0 leaks, ${valid.length} valid accepted; ` +
        `memory after GC ${heap.map(({ bytes }) => mb(bytes)).join(', ')} MB, growth over the last ${1000 - heap[half]!.requests} ${mb(growth)} MB`,
    );
    expect(growth).toBeLessThan(HEAP_GROWTH_BOUND);
  });

  it('fires 1,000 hostile messages as exactly one clean line each, on stdout and stderr alike', async () => {
    const pieces = ['\x1b[2J', '\x1b]0;owned\x07', '\r', '\n', '\r\n', '\u2028', '\u2029', '\u0085', '\u202e', '\u2066', '\u061c', '\u200f', '\x00', '\x7f', '\x9b31m', '\b', '\t', '\\n', '\ufeff', '\x1bP+q\x1b\\'];
    const messages = Array.from({ length: 1000 }, (_, i) => `hostile ${i} ${pieces[i % pieces.length]}x${pieces[(i * 7) % pieces.length]}${pieces[(i * 3) % pieces.length]} end`);
    const linesBefore = service.lines.length;
    const firedBefore = await firedTotal();
    const now = await redisNow(redis);
    for (let i = 0; i < messages.length; i += MAX_BULK) {
      const chunk = messages.slice(i, i + MAX_BULK).map((m) => ({ message: m, time: new Date(now + 500).toISOString() }));
      expect(codeOf(await gql(BULK, { t: chunk }))).toBe('NO_ERROR');
    }
    // A task is printed before it is committed FIRED: once all 1,000 are, every print is out.
    await waitFor(async () => (await firedTotal()) - firedBefore >= 1000 && service.lines.length - linesBefore >= 1000, 30_000, '1,000 hostile tasks fired and printed');
    // Every line stdout received in this phase: exactly one per task, each index once.
    const printed = service.lines.slice(linesBefore);
    expect(printed).toHaveLength(1000);
    expect(printed.filter((l) => !l.startsWith('hostile '))).toEqual([]);
    expect(new Set(printed.map((l) => l.split(' ')[1])).size).toBe(1000);
    const raw = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
    expect(printed.filter((l) => raw.test(l))).toEqual([]);
    // stderr: JSON lines only, none carrying a raw control character.
    const stderrLines = service.stderr.join('').split('\n').filter(Boolean);
    expect(stderrLines.filter((l) => raw.test(l))).toEqual([]);
    expect(stderrLines.filter((l) => !l.startsWith('{'))).toEqual([]);
  });
});
