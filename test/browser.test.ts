/**
 * The live page and GraphiQL in a real browser: Debian's chromium driven by playwright-core,
 * against real API and worker processes on the shared Redis. The browser is offline but for
 * the service: every request to another origin is aborted. Screenshots go to
 * test-artifacts/. Where chromium is missing, scripts/install-chromium.sh installs it first
 * (with apt-get, as root or through sudo).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { Redis } from 'ioredis';
import { createKeys } from '../src/scheduler/keys.js';
import { createTaskStore, type TaskStore } from '../src/scheduler/tasks.js';
import { loadConfig } from '../src/config.js';
import { defineScripts } from '../src/scheduler/scripts.js';
import { ROOT, ServiceProcess, connect, deletePrefix, freePort, testEnv, uniquePrefix, waitFor } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');
const TOKEN = 'browser-token-0123456789abcdef';
const SUBSCRIPTION = 'subscription { taskFired { cursor task { id message status lateByMs } } }';

describe('in a browser', () => {
  const prefix = uniquePrefix('browser');
  const profile = mkdtempSync(join(tmpdir(), 'punctual-chromium-'));
  let redis: Redis;
  let store: TaskStore;
  let port: number;
  let base: string;
  let api: ServiceProcess;
  /** An API process that needs API_TOKEN, on its own port. */
  let tokenApi: ServiceProcess;
  let tokenBase: string;
  let worker: ServiceProcess;
  let context: BrowserContext;
  /** Every URL any page asked for: the pages must load nothing from elsewhere. */
  const requested: string[] = [];
  /** Every request the browser was kept from sending (to an origin not the service's). */
  const blocked: string[] = [];

  const startApi = async () => {
    const apiProcess = new ServiceProcess(testEnv(prefix, { ROLE: 'api', PORT: String(port), LOG_LEVEL: 'info' }));
    await apiProcess.started(60_000);
    return apiProcess;
  };

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) execFileSync('bash', [join(ROOT, 'scripts', 'install-chromium.sh')], { stdio: 'inherit' });
    mkdirSync(ARTIFACTS, { recursive: true });
    redis = await connect();
    defineScripts(redis);
    const config = loadConfig(testEnv(prefix));
    store = createTaskStore(redis, createKeys(prefix, config.partitions), config);
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const tokenPort = await freePort();
    tokenBase = `http://127.0.0.1:${tokenPort}`;
    worker = new ServiceProcess(testEnv(prefix, { ROLE: 'worker', PORT: String(await freePort()), LOG_LEVEL: 'info' }));
    tokenApi = new ServiceProcess(testEnv(prefix, { ROLE: 'api', PORT: String(tokenPort), API_TOKEN: TOKEN, LOG_LEVEL: 'info' }));
    api = await startApi();
    await worker.started(60_000);
    await tokenApi.started(60_000);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1200, height: 800 },
    });
    // Offline but for the service: anything else, WebSockets included, is aborted.
    await context.route(
      (url) => !isOwn(url.href),
      (route) => {
        blocked.push(route.request().url());
        return route.abort('internetdisconnected');
      },
    );
    await context.routeWebSocket(
      (url) => !isOwn(url.href),
      (socket) => {
        blocked.push(socket.url());
        socket.close();
      },
    );
    const probe = await context.newPage();
    expect(await probe.evaluate(() => fetch('https://cdn.jsdelivr.net/npm/graphiql').then(() => 'loaded', () => 'failed'))).toBe('failed');
    expect(blocked).toEqual(['https://cdn.jsdelivr.net/npm/graphiql']);
    blocked.length = 0;
    await probe.close();
    context.on('request', (request) => requested.push(request.url()));
    context.on('weberror', (error) => requested.push(`page error: ${error.error().message}`));
  }, 420_000); // three processes and a browser start (slow on a loaded 2-core box), after installing chromium where it is missing

  afterAll(async () => {
    await context?.close();
    await api?.stop();
    await tokenApi?.stop();
    await worker?.stop();
    await deletePrefix(redis, prefix);
    await redis.quit();
    rmSync(profile, { recursive: true, force: true });
  });

  // GraphiQL runs its editor's workers from blob: URLs of the page's own origin.
  const isOwn = (url: string) => [base, tokenBase].some((origin) => [`${origin}/`, `blob:${origin}/`, `${origin.replace(/^http/, 'ws')}/`].some((start) => url.startsWith(start)));
  const foreignRequests = () => requested.filter((url) => !isOwn(url));

  const firedRow = (page: Page, message: string) => page.locator('#fired tr', { has: page.locator('td.message', { hasText: message }) });

  it('the live page schedules a task 2 s ahead, shows it fired, and resumes after a reconnect', async () => {
    const page = await context.newPage();
    await page.goto(`${base}/`);
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: 15_000 });

    const message = `from the browser ${Date.now()}`;
    await page.fill('#message', message);
    await page.fill('#delay', '2');
    const clickedAt = Date.now();
    await page.click('#submit');
    await expect.poll(() => page.textContent('#result'), { timeout: 10_000 }).toMatch(/^Scheduled task \d+-\w+ for /);

    const row = firedRow(page, message);
    await row.waitFor({ timeout: 20_000 });
    // Not before its time: the row appears at least ~2 s after the click.
    expect(Date.now() - clickedAt).toBeGreaterThanOrEqual(1900);
    // The line below the form watched that one task (taskFired with ids) and says when it fired.
    await expect.poll(() => page.textContent('#result'), { timeout: 10_000 }).toMatch(/^Task \d+-\w+ fired at \d\d:\d\d:\d\d\.\d{3}, \d+ ms late\.$/);
    const cells = await row.locator('td').allTextContents();
    expect(cells[0]).toBe(message);
    expect(cells[1]).toMatch(/^\d\d:\d\d:\d\d\.\d{3}$/);
    expect(cells[2]).toMatch(/^\d\d:\d\d:\d\d\.\d{3}$/);
    expect(cells[3]).toMatch(/^\d+ ms$|^\d+\.\d\d s$/);
    expect(worker.lines).toContain(message);
    await page.screenshot({ path: join(ARTIFACTS, 'live-page.png'), fullPage: true });

    // The API goes away; a task fires meanwhile; the page reconnects and resumes with its cursor.
    await api.stop();
    await page.locator('#connection[data-state="connecting"]').waitFor({ timeout: 15_000 });
    const missed = `fired while the page was disconnected ${Date.now()}`;
    await store.schedule({ message: missed, time: Date.now() });
    await waitFor(() => worker.lines.includes(missed), 15_000, 'the worker to fire the missed task');
    api = await startApi();
    await firedRow(page, missed).waitFor({ timeout: 20_000 });
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: 15_000 });
    expect(await page.locator('#fired tr').count()).toBe(2);
    await page.screenshot({ path: join(ARTIFACTS, 'live-page-resumed.png'), fullPage: true });

    expect(blocked).toEqual([]);
    expect(foreignRequests()).toEqual([]);
    await page.close();
  });

  /**
   * Runs the subscription GraphiQL opened with until it shows a fired task: clicks Execute
   * until `subscribed` (the page sent the subscription), then schedules until the event shows.
   */
  const graphiqlShowsEvent = async (page: Page, subscribed: () => boolean, screenshot: string) => {
    const execute = page.locator('.graphiql-execute-button');
    // A click before GraphiQL has finished loading does nothing: click until it subscribes.
    await waitFor(
      async () => {
        if (!subscribed()) await execute.click();
        return subscribed();
      },
      20_000,
      'GraphiQL to send the subscription',
      1000,
    );

    // The subscription is live only once Redis confirms it; schedule until GraphiQL shows an event.
    const message = `seen in GraphiQL ${Date.now()}`;
    // The result editor (Monaco) renders spaces as no-break spaces.
    const shownResult = async () => ((await page.locator('.graphiql-response').textContent()) ?? '').replace(/\u00a0/g, ' ');
    await waitFor(
      async () => {
        if ((await shownResult()).includes(message)) return true;
        await store.schedule({ message, time: Date.now() });
        return false;
      },
      30_000,
      'GraphiQL to show a taskFired event',
      1000,
    );
    const shown = await shownResult();
    expect(shown).toContain('taskFired');
    expect(shown).toContain('FIRED');
    expect(shown).toMatch(/"cursor": "f1\./);
    await page.screenshot({ path: join(ARTIFACTS, screenshot), fullPage: true });
    expect(blocked).toEqual([]);
    expect(foreignRequests()).toEqual([]);
  };

  it('GraphiQL at /graphql runs a taskFired subscription over WebSocket and shows an event, offline', async () => {
    const page = await context.newPage();
    await page.goto(`${base}/graphql?query=${encodeURIComponent(SUBSCRIPTION)}`);
    await page.locator('.graphiql-execute-button').waitFor({ timeout: 20_000 });
    let subscribed = false;
    page.on('websocket', (socket) => socket.on('framesent', (frame) => (subscribed ||= String(frame.payload).includes('"type":"subscribe"'))));
    await graphiqlShowsEvent(page, () => subscribed, 'graphiql-subscription.png');
    await page.close();
  });

  it('GraphiQL with API_TOKEN loads without the token and, with it in the Headers tab, subscribes over SSE', async () => {
    const page = await context.newPage();
    let subscribed = false;
    const sockets: string[] = [];
    page.on('websocket', (socket) => sockets.push(socket.url()));
    page.on('response', (response) => {
      const request = response.request();
      const sse = (request.headers().accept ?? '').includes('text/event-stream');
      if (sse && response.status() === 200 && request.headers().authorization === `Bearer ${TOKEN}`) subscribed = true;
    });
    const loaded = await page.goto(`${tokenBase}/graphql?query=${encodeURIComponent(SUBSCRIPTION)}`);
    expect(loaded!.status()).toBe(200);
    await page.locator('.graphiql-execute-button').waitFor({ timeout: 20_000 });

    await page.locator('.graphiql-editor-tools [data-name="headers"]').click();
    const headers = page.locator('.monaco-editor[data-uri$="headers.json"]');
    await headers.click();
    await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${TOKEN}` }));
    await expect.poll(() => headers.locator('.view-lines').textContent(), { timeout: 10_000 }).toContain(TOKEN);

    await graphiqlShowsEvent(page, () => subscribed, 'graphiql-subscription-token.png');
    expect(sockets).toEqual([]);
    await page.close();
  });
});
