/**
 * The dashboard and GraphiQL in a real browser: Debian's chromium driven by playwright-core,
 * against real API and worker processes on the shared Redis. The browser is offline but for
 * the service: every request to another origin is aborted. Screenshots go to
 * test-artifacts/ (docs/dashboard-*.png are copies of the dashboard's). Where chromium is
 * missing, scripts/install-chromium.sh installs it first (with apt-get, as root or through
 * sudo). The worker fails to print any message holding POISON (test/chaos/faults.mjs), so a
 * task can end DEAD as it would after a full disk or a closed pipe.
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
import { ROOT, ServiceProcess, connect, deletePrefix, freePort, startRedisServer, testEnv, uniquePrefix, waitFor } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');
const TOKEN = 'browser-token-0123456789abcdef';
const SUBSCRIPTION = 'subscription { taskFired { cursor task { id message status lateByMs } } }';
const MAX_DELIVERIES = 2;
/** Every field of Task, as the details dialog labels them. */
const DETAIL_LABELS = ['Id', 'Status', 'Message', 'Due', 'Created', 'Fired', 'Late by', 'Attempts', 'Fired by', 'Ended', 'Idempotency key'];

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
  /** The origins of the service: the only ones the browser may reach. */
  const origins: string[] = [];
  /** Every URL any page asked for: the pages must load nothing from elsewhere. */
  const requested: string[] = [];
  /** Every request the browser was kept from sending (to an origin not the service's). */
  const blocked: string[] = [];
  /** What the pages said on their consoles that a strict page must not say (CSP refusals, errors thrown). */
  const complaints: string[] = [];

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
    origins.push(base, tokenBase);
    worker = new ServiceProcess(testEnv(prefix, { ROLE: 'worker', PORT: String(await freePort()), LOG_LEVEL: 'info', CHAOS_FAULT: 'poison', MAX_DELIVERIES: String(MAX_DELIVERIES) }), [
      join(ROOT, 'test/chaos/faults.mjs'),
    ]);
    tokenApi = new ServiceProcess(testEnv(prefix, { ROLE: 'api', PORT: String(tokenPort), API_TOKEN: TOKEN, LOG_LEVEL: 'info' }));
    api = await startApi();
    await worker.started(60_000);
    await tokenApi.started(60_000);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
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
    context.on('console', (message) => {
      if (/Content Security Policy|Uncaught/i.test(message.text())) complaints.push(message.text());
    });
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
  const isOwn = (url: string) => origins.some((origin) => [`${origin}/`, `blob:${origin}/`, `${origin.replace(/^http/, 'ws')}/`].some((start) => url.startsWith(start)));
  const foreignRequests = () => requested.filter((url) => !isOwn(url));
  const offlineAndClean = () => {
    expect(blocked).toEqual([]);
    expect(foreignRequests()).toEqual([]);
    expect(complaints).toEqual([]);
  };

  const firedRow = (page: Page, message: string) => page.locator('#fired tr', { has: page.locator('td.message', { hasText: message }) });
  const listed = (page: Page, id: string) => page.locator(`#tasks tbody tr[data-task-id="${id}"]`);
  const counted = async (page: Page, name: string) => Number(((await page.textContent(`#stat-${name}`)) ?? '').replace(/\D/g, '') || Number.NaN);
  const chartFired = async (page: Page) => Number(await page.getAttribute('#chart-fired', 'data-total'));

  /** Schedules `message` from the form, `delay` seconds ahead; answers the new task's id. */
  const scheduleFromForm = async (page: Page, message: string, delay: number) => {
    await page.fill('#message', message);
    await page.fill('#delay', String(delay));
    await page.click('#submit');
    const result = await waitFor(async () => /^Scheduled task (\S+) for \d\d:\d\d:\d\d\.\d{3}\.$/.exec((await page.textContent('#result')) ?? ''), 10_000, `the form to schedule "${message}"`, 50);
    return result[1]!;
  };

  /** The details dialog's fields, once it shows task `id`. */
  const detailsShown = async (page: Page, id: string) => {
    const dialog = page.locator('#details-dialog');
    await dialog.locator('dl[data-status]').waitFor({ timeout: 10_000 });
    expect(await dialog.locator('h2').textContent()).toBe(`Task ${id}`);
    const labels = await dialog.locator('dt').allTextContents();
    const values = await dialog.locator('dd').allTextContents();
    return Object.fromEntries(labels.map((label, i) => [label, values[i]!]));
  };

  /**
   * What a user does on the dashboard, on an API at `origin` the page is already open on: the
   * counts and charts move as tasks fire (with no request per event), the form schedules,
   * the list reschedules and cancels, the details show every field, all from the keyboard too.
   */
  const walkThrough = async (page: Page) => {
    await waitFor(async () => !Number.isNaN(await counted(page, 'fired')), 15_000, 'the counts to be read');
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: 15_000 });
    const firedBefore = await counted(page, 'fired');
    const chartBefore = await chartFired(page);

    // Scheduled from the form, listed, fired on time, shown in the feed, the counts and the charts.
    const message = `from the dashboard ${Date.now()}`;
    const clickedAt = Date.now();
    const id = await scheduleFromForm(page, message, 2);
    await listed(page, id).waitFor({ timeout: 10_000 });
    await firedRow(page, message).waitFor({ timeout: 20_000 });
    expect(Date.now() - clickedAt).toBeGreaterThanOrEqual(1900);
    await expect.poll(() => page.textContent('#result'), { timeout: 10_000 }).toMatch(/^Task \S+ fired at \d\d:\d\d:\d\d\.\d{3}, \d+ ms late\.$/);
    expect(worker.lines).toContain(message);
    await expect.poll(() => counted(page, 'fired'), { timeout: 10_000 }).toBeGreaterThan(firedBefore);
    await expect.poll(() => chartFired(page), { timeout: 10_000 }).toBeGreaterThan(chartBefore);
    await expect.poll(async () => Number(await page.getAttribute('#chart-lateness', 'data-points')), { timeout: 10_000 }).toBeGreaterThan(0);
    expect(await page.locator('#charts canvas').count()).toBe(2);

    // A burst of 40 moves the fired count and the chart by 40, with no request for counts per event.
    const statsReads: number[] = [];
    const onRequest = (request: { postData(): string | null }) => (request.postData() ?? '').includes('query Stats') && statsReads.push(Date.now());
    page.on('request', onRequest);
    const burstFrom = { fired: await counted(page, 'fired'), chart: await chartFired(page), at: Date.now() };
    const burst = await store.scheduleMany(Array.from({ length: 40 }, (_, i) => ({ message: `burst ${burstFrom.at} ${i}`, time: Date.now() + i * 25 })));
    await waitFor(() => burst.every((task) => worker.lines.includes(task.message)), 20_000, 'the burst to fire');
    await expect.poll(() => chartFired(page), { timeout: 10_000 }).toBeGreaterThanOrEqual(burstFrom.chart + 40);
    await expect.poll(() => counted(page, 'fired'), { timeout: 10_000 }).toBeGreaterThanOrEqual(burstFrom.fired + 40);
    page.off('request', onRequest);
    // One read every 5 s, and one after each change made here: far fewer than 40.
    expect(statsReads.length).toBeLessThanOrEqual(Math.ceil((Date.now() - burstFrom.at) / 5000) + 1);

    // Rescheduled from the list to now: it fires.
    const later = `rescheduled from the list ${Date.now()}`;
    const laterId = await scheduleFromForm(page, later, 3600);
    await listed(page, laterId).locator('button[data-action="reschedule"]').click();
    const reschedule = page.locator('#reschedule-dialog');
    await reschedule.getByRole('button', { name: 'Now' }).click();
    await reschedule.getByRole('button', { name: 'Reschedule' }).click();
    await expect.poll(() => page.textContent('#tasks [data-outcome]'), { timeout: 10_000 }).toMatch(new RegExp(`^Rescheduled task ${laterId} to \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.$`));
    await firedRow(page, later).waitFor({ timeout: 15_000 });
    expect(worker.lines).toContain(later);

    // Cancelled from the list, after a second click: it leaves the list and never fires.
    const doomed = `cancelled from the list ${Date.now()}`;
    const doomedId = await scheduleFromForm(page, doomed, 3600);
    const cancel = listed(page, doomedId).locator('button[data-action="cancel"]');
    await cancel.click();
    await expect.poll(() => cancel.textContent()).toBe('Confirm cancel');
    expect((await store.get(doomedId))!.status).toBe('SCHEDULED');
    await cancel.click();
    await expect.poll(() => page.textContent('#tasks [data-outcome]'), { timeout: 10_000 }).toBe(`Cancelled task ${doomedId}.`);
    await listed(page, doomedId).waitFor({ state: 'detached', timeout: 10_000 });
    expect((await store.get(doomedId))!.status).toBe('CANCELLED');

    // Its details, from the keyboard, in the Cancelled list: every field of Task.
    await page.locator('#tasks [data-status="CANCELLED"]').click();
    await listed(page, doomedId).waitFor({ timeout: 10_000 });
    const opener = listed(page, doomedId).locator('td.message button');
    await opener.focus();
    await page.keyboard.press('Enter');
    const fields = await detailsShown(page, doomedId);
    expect(Object.keys(fields)).toEqual(DETAIL_LABELS);
    expect(fields).toMatchObject({ Id: doomedId, Status: 'CANCELLED', Message: doomed, Fired: '—', 'Fired by': '—', Attempts: '0' });
    expect(fields.Ended).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)$/);
    await page.keyboard.press('Escape');
    await page.locator('#details-dialog').waitFor({ state: 'hidden' });
    expect(await opener.evaluate((element) => element === document.activeElement)).toBe(true);

    // And a fired task's, by a click in the live feed.
    await firedRow(page, message).locator('button').click();
    expect(await detailsShown(page, id)).toMatchObject({ Id: id, Status: 'FIRED', Message: message, Attempts: '1' });
    await page.locator('#details-dialog').getByRole('button', { name: 'Close' }).click();
    await page.locator('#tasks [data-status="SCHEDULED"]').click();
    expect(await page.locator('#alert').isHidden()).toBe(true);
  };

  it('the dashboard: counts and charts move as tasks fire; the form schedules; the list reschedules, cancels and shows details', async () => {
    const page = await context.newPage();
    await page.goto(`${base}/`);
    await walkThrough(page);

    // A few tasks ahead, so the list has something to show, then the pictures.
    const now = Date.now();
    await store.scheduleMany(['send the weekly report', 'renew the certificate', 'remind Ada about the review', 'close the sprint'].map((message, i) => ({ message, time: now + (i + 1) * 17 * 60_000 })));
    await page.locator('#tasks [data-status="SCHEDULED"]').click();
    await page.locator('#tasks tbody tr', { hasText: 'close the sprint' }).waitFor({ timeout: 10_000 });
    await expect.poll(() => counted(page, 'scheduled'), { timeout: 10_000 }).toBe(4);
    // Clicking a fired task scrolled the feed to it: back to the newest for the picture.
    await page.locator('.feed').evaluate((feed) => (feed.scrollTop = 0));
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-desktop.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    // Readable at phone width: nothing wider than the screen, so no sideways scrolling.
    await expect.poll(() => page.evaluate(() => document.documentElement.scrollWidth), { timeout: 5000 }).toBeLessThanOrEqual(390);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });
    offlineAndClean();
    await page.close();
  });

  it('with API_TOKEN: says UNAUTHENTICATED until the token is entered, then does all the same', async () => {
    const page = await context.newPage();
    await page.goto(`${tokenBase}/`);
    await page.locator('#alert p[data-code="UNAUTHENTICATED"]').first().waitFor({ timeout: 15_000 });
    await expect.poll(() => page.textContent('#alert'), { timeout: 10_000 }).toContain('Counts: UNAUTHENTICATED: Send the API token as Authorization: Bearer <token>.');
    await page.locator('#connection[data-state="down"]').waitFor({ timeout: 15_000 });
    // The token field is opened for the reader.
    expect(await page.locator('#token-panel').getAttribute('open')).not.toBeNull();
    await page.fill('#token', TOKEN);
    await page.press('#token', 'Enter');
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: 15_000 });
    await page.locator('#alert').waitFor({ state: 'hidden', timeout: 15_000 });
    await walkThrough(page);
    offlineAndClean();
    await page.close();
  });

  it('lists DEAD tasks, counts them, and shows their details', async () => {
    const page = await context.newPage();
    await page.goto(`${base}/`);
    await waitFor(async () => !Number.isNaN(await counted(page, 'dead')), 15_000, 'the counts to be read');
    const deadBefore = await counted(page, 'dead');
    const id = await scheduleFromForm(page, `POISON from the dashboard ${Date.now()}`, 0);
    await page.locator('#tasks [data-status="DEAD"]').click();
    // Each failed print waits RECLAIM_IDLE_MS to be delivered again.
    await waitFor(async () => (await store.get(id))!.status === 'DEAD', 30_000, 'the task to end DEAD', 100);
    // The list reads itself again every few seconds.
    await listed(page, id).waitFor({ timeout: 15_000 });
    await expect.poll(() => counted(page, 'dead'), { timeout: 15_000 }).toBeGreaterThan(deadBefore);
    expect(await listed(page, id).locator('button[data-action]').count()).toBe(0);
    await listed(page, id).locator('td.message button').click();
    const fields = await detailsShown(page, id);
    expect(fields).toMatchObject({ Id: id, Status: 'DEAD', Attempts: String(MAX_DELIVERIES) });
    // A worker started firing it (and its print failed) before it ended.
    expect(fields.Fired).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(/);
    expect(fields.Ended).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(/);
    offlineAndClean();
    await page.close();
  });

  it('resumes the live feed after the API restarts, and says what failed meanwhile', async () => {
    const page = await context.newPage();
    await page.goto(`${base}/`);
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: 15_000 });
    const first = `fired while the page watched ${Date.now()}`;
    await store.schedule({ message: first, time: Date.now() });
    await firedRow(page, first).waitFor({ timeout: 20_000 });

    // The API goes away; a task fires meanwhile; the page reconnects and resumes with its cursor.
    await api.stop();
    await page.locator('#connection[data-state="connecting"]').waitFor({ timeout: 15_000 });
    await expect.poll(() => page.textContent('#alert'), { timeout: 15_000 }).toContain('Counts: NETWORK: The service does not answer.');
    const missed = `fired while the page was disconnected ${Date.now()}`;
    await store.schedule({ message: missed, time: Date.now() });
    await waitFor(() => worker.lines.includes(missed), 15_000, 'the worker to fire the missed task');
    api = await startApi();
    await firedRow(page, missed).waitFor({ timeout: 20_000 });
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: 15_000 });
    expect(await page.locator('#fired tr').count()).toBe(2);
    await page.locator('#alert').waitFor({ state: 'hidden', timeout: 15_000 });
    offlineAndClean();
    await page.close();
  });

  it('says UNAVAILABLE while Redis is unreachable, and that the counts are stale', async () => {
    const ownRedis = await startRedisServer();
    const ownPort = await freePort();
    origins.push(`http://127.0.0.1:${ownPort}`);
    const ownApi = new ServiceProcess(testEnv(uniquePrefix('browser-down'), { ROLE: 'api', PORT: String(ownPort), REDIS_URL: ownRedis.url, LOG_LEVEL: 'info' }));
    try {
      await ownApi.started(60_000);
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${ownPort}/`);
      await waitFor(async () => !Number.isNaN(await counted(page, 'scheduled')), 15_000, 'the counts to be read');
      await ownRedis.stop('SIGKILL');
      await expect.poll(() => page.textContent('#alert'), { timeout: 15_000 }).toContain('Counts: UNAVAILABLE: The task store (Redis) is unreachable.');
      expect(await page.textContent('#stats [data-updated]')).toMatch(/^not updated since \d\d:\d\d:\d\d\.\d{3}$/);
      offlineAndClean();
      await page.close();
    } finally {
      ownApi.kill('SIGKILL');
      await ownRedis.cleanup();
    }
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
