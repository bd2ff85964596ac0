/**
 * Abuse: 1,000 malformed or hostile requests of 20 kinds sent alongside valid traffic to a
 * real service process, and 1,000 hostile messages scheduled and fired. Every refusal has
 * its documented code, nothing leaks, nothing bad is written, valid traffic is unharmed,
 * memory stays steady, and the worker's stdout holds exactly one clean line per task.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { ServiceProcess, connect, deletePrefix, freePort, redisNow, testEnv, uniquePrefix, waitFor } from './helpers.js';

const prefix = uniquePrefix('abuse');
let service: ServiceProcess;
let redis: Redis;
let url = '';

beforeAll(async () => {
  redis = await connect();
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  service = new ServiceProcess(testEnv(prefix, { ROLE: 'all', PORT: String(port), LOG_LEVEL: 'info', MAX_BODY_BYTES: '65536', MAX_QUERY_DEPTH: '3' }));
  await service.started();
});

afterAll(async () => {
  await service.stop();
  await deletePrefix(redis, prefix);
  await redis.quit();
});

interface Answer {
  status: number;
  text: string;
}

async function post(body: string, headers: Record<string, string> = { 'content-type': 'application/json' }, path = '/graphql'): Promise<Answer> {
  const response = await fetch(`${url}${path}`, { method: 'POST', headers, body });
  return { status: response.status, text: await response.text() };
}

const gql = (query: string, variables?: Record<string, unknown>) => post(JSON.stringify({ query, variables }));
const MUTATION = 'mutation($m: String!, $t: DateTime!) { delayedTask(message: $m, time: $t) { id } }';
const future = () => new Date(Date.now() + 3_600_000).toISOString();

/** Twenty kinds of bad request, each with the code (or HTTP status) it must get. */
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
  ['REST with bad time', () => post(JSON.stringify({ time: 'tomorrow', message: 'x' }), { 'content-type': 'application/json' }, '/api/tasks/delayedTask'), 'BAD_USER_INPUT'],
  ['introspection of internals', () => gql('{ __type(name: "Redis") { name } task(id: "../../etc/passwd") { id } }'), 'NO_ERROR_NULL_TASK'],
];

/** What a refusal must never show: stack frames, source paths, internal modules. */
const LEAK = /\bat [\w.<>]+ \(|\.ts:\d|node_modules|ioredis|ERR |EVALSHA|\.lua|redis\.call|\{t-abuse/i;

/** The error code of an answer, or HTTP_<status> when its body carries none. */
function codeOf(answer: Answer): string {
  const http = `HTTP_${answer.status}`;
  try {
    const body = JSON.parse(answer.text) as { data?: { task?: unknown }; errors?: { extensions?: { code?: string } }[] } | { extensions?: { code?: string } }[];
    const errors = Array.isArray(body) ? body.flatMap((b) => (b as { errors?: { extensions?: { code?: string } }[] }).errors ?? []) : body.errors;
    if (errors?.length) return errors[0]!.extensions?.code ?? http;
    if (!Array.isArray(body) && body.data && body.data.task === null) return 'NO_ERROR_NULL_TASK';
    return answer.status === 200 ? 'NO_ERROR' : http;
  } catch {
    return http;
  }
}

async function residentBytes(): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^process_resident_memory_bytes (\d+)/m.exec(text)?.[1]);
}

async function taskKeys(): Promise<number> {
  let count = 0;
  for (let p = 0; p < 4; p++) count += await redis.zcard(`{${prefix}:${p}}:schedule`);
  return count;
}

describe('abuse', () => {
  it('refuses 1,000 hostile requests of 20 kinds with their codes, alongside valid traffic that is unharmed', async () => {
    for (const [, send] of HOSTILE) await send();
    const scheduledBefore = await taskKeys();
    // Memory is compared between the middle round (the heap has grown to its working size
    // by then) and the last: a leak keeps growing with the rounds.
    let memoryWarm = 0;

    const valid: Promise<Answer>[] = [];
    const hostile: Promise<{ kind: string; expected: string; answer: Answer }>[] = [];
    for (let round = 0; round < 50; round++) {
      for (const [kind, send, expected] of HOSTILE) hostile.push(send().then((answer) => ({ kind, expected, answer })));
      // Two valid tasks a round, due an hour ahead so they stay in the schedule to be counted.
      for (let i = 0; i < 2; i++) valid.push(gql(MUTATION, { m: `valid ${round}-${i}`, t: future() }));
      await Promise.all(hostile.slice(-HOSTILE.length));
      if (round === 24) memoryWarm = await residentBytes();
    }
    const hostileAnswers = await Promise.all(hostile);
    const validAnswers = await Promise.all(valid);

    expect(hostileAnswers).toHaveLength(1000);
    const wrong = hostileAnswers.filter(({ answer, expected }) => codeOf(answer) !== expected).map(({ kind, answer }) => `${kind}: ${codeOf(answer)} ${answer.text.slice(0, 120)}`);
    expect(wrong).toEqual([]);
    expect(hostileAnswers.filter(({ answer }) => answer.status >= 500)).toEqual([]);
    const leaks = hostileAnswers.filter(({ answer }) => LEAK.test(answer.text)).map(({ kind, answer }) => `${kind}: ${answer.text.slice(0, 200)}`);
    expect(leaks).toEqual([]);

    // Valid traffic: all 100 accepted, and only they were written.
    expect(validAnswers.filter((a) => codeOf(a) !== 'NO_ERROR')).toEqual([]);
    expect((await taskKeys()) - scheduledBefore).toBe(100);

    // The server is up and its memory steady.
    expect(codeOf(await gql('{ stats { due } }'))).toBe('NO_ERROR');
    const growth = (await residentBytes()) - memoryWarm;
    console.log(`abuse: 1,000 hostile requests refused with their codes, 0 5xx, 0 leaks, 100 valid accepted; RSS growth over the last 500 ${(growth / 1e6).toFixed(1)} MB`);
    expect(growth).toBeLessThan(48 * 1024 * 1024);
  });

  it('fires 1,000 hostile messages as exactly one clean line each, on stdout and stderr alike', async () => {
    const pieces = ['\x1b[2J', '\x1b]0;owned\x07', '\r', '\n', '\r\n', '\u2028', '\u2029', '\u0085', '\u202e', '\u2066', '\u200f', '\x00', '\x7f', '\x9b31m', '\b', '\t', '\\n', '\ufeff', '\x1bP+q\x1b\\'];
    const messages = Array.from({ length: 1000 }, (_, i) => `hostile ${i} ${pieces[i % pieces.length]}x${pieces[(i * 7) % pieces.length]}${pieces[(i * 3) % pieces.length]} end`);
    const linesBefore = service.lines.length;
    const now = await redisNow(redis);
    for (let i = 0; i < messages.length; i += 100) {
      const chunk = messages.slice(i, i + 100).map((m) => ({ message: m, time: new Date(now + 500).toISOString() }));
      const answer = await gql('mutation($t: [DelayedTaskInput!]!) { delayedTasks(tasks: $t) { id } }', { t: chunk });
      expect(codeOf(answer)).toBe('NO_ERROR');
    }
    await waitFor(() => service.lines.slice(linesBefore).filter((l) => l.startsWith('hostile ')).length >= 1000, 30_000, '1,000 hostile prints');
    await new Promise((r) => setTimeout(r, 500));
    const printed = service.lines.slice(linesBefore).filter((l) => l.startsWith('hostile '));
    // Exactly one line per task: the number of lines, and each index once.
    expect(printed).toHaveLength(1000);
    expect(new Set(printed.map((l) => l.split(' ')[1])).size).toBe(1000);
    const raw = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f]/;
    expect(printed.filter((l) => raw.test(l))).toEqual([]);
    // stderr: JSON lines only, none carrying a raw control character.
    const stderrLines = service.stderr.join('').split('\n').filter(Boolean);
    expect(stderrLines.filter((l) => raw.test(l))).toEqual([]);
    expect(stderrLines.filter((l) => !l.startsWith('{'))).toEqual([]);
  });
});
