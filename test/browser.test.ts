/**
 * The live page and GraphiQL in a real browser: Debian's chromium driven by playwright-core,
 * against real API and worker processes on the shared Redis. Screenshots go to
 * test-artifacts/ (scripts/install-chromium.sh installs chromium where it is missing).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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

describe('in a browser', () => {
  const prefix = uniquePrefix('browser');
  const profile = mkdtempSync(join(tmpdir(), 'punctual-chromium-'));
  let redis: Redis;
  let store: TaskStore;
  let port: number;
  let base: string;
  let api: ServiceProcess;
  let worker: ServiceProcess;
  let context: BrowserContext;
  /** Every URL any page asked for: the pages must load nothing from elsewhere. */
  const requested: string[] = [];

  const startApi = async () => {
    const apiProcess = new ServiceProcess(testEnv(prefix, { ROLE: 'api', PORT: String(port), LOG_LEVEL: 'info' }));
    await apiProcess.started(60_000);
    return apiProcess;
  };

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    redis = await connect();
    defineScripts(redis);
    const config = loadConfig(testEnv(prefix));
    store = createTaskStore(redis, createKeys(prefix, config.partitions), config);
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    worker = new ServiceProcess(testEnv(prefix, { ROLE: 'worker', PORT: String(await freePort()), LOG_LEVEL: 'info' }));
    api = await startApi();
    await worker.started(60_000);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1200, height: 800 },
    });
    context.on('request', (request) => requested.push(request.url()));
    context.on('weberror', (error) => requested.push(`page error: ${error.error().message}`));
  }, 150_000); // two processes and a browser start; slow on a loaded 2-core box

  afterAll(async () => {
    await context?.close();
    await api?.stop();
    await worker?.stop();
    await deletePrefix(redis, prefix);
    await redis.quit();
    rmSync(profile, { recursive: true, force: true });
  });

  // GraphiQL runs its editor's workers from blob: URLs of the page's own origin.
  const foreignRequests = () => requested.filter((url) => ![`${base}/`, `blob:${base}/`, `ws://127.0.0.1:${port}/`].some((origin) => url.startsWith(origin)));

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

    expect(foreignRequests()).toEqual([]);
    await page.close();
  });

  it('GraphiQL at /graphql runs a taskFired subscription and shows an event', async () => {
    const page = await context.newPage();
    const query = 'subscription { taskFired { cursor task { id message status lateByMs } } }';
    await page.goto(`${base}/graphql?query=${encodeURIComponent(query)}`);
    const execute = page.locator('.graphiql-execute-button');
    await execute.waitFor({ timeout: 20_000 });
    let subscribed = false;
    page.on('websocket', (socket) => socket.on('framesent', (frame) => (subscribed ||= String(frame.payload).includes('"type":"subscribe"'))));
    // A click before GraphiQL has finished loading the schema does nothing: click until it subscribes.
    await waitFor(
      async () => {
        if (!subscribed) await execute.click();
        return subscribed;
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
    await page.screenshot({ path: join(ARTIFACTS, 'graphiql-subscription.png'), fullPage: true });
    expect(foreignRequests()).toEqual([]);
    await page.close();
  });
});
