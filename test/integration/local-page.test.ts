/**
 * Local mode's page in a real browser: Debian's Chromium, headless, driven by playwright-core, over
 * the real local stack (DynamoDB Local, moto as CloudWatch, s3rver, the READY webhook) and the query
 * API as local mode serves it (startLocalQueryApi). SMT-like readings go through the real store with
 * the handlers' metrics (an estimate, a correction that supersedes, a re-delivery), READY deliveries
 * through the real webhook (one sent twice, one malformed). The test asserts what the page shows:
 * the meter list, one point per reading for a day (a DST day too) and a week, the estimate and
 * revision markers at the right intervals with their own styling, and counters equal to the
 * tallies, refreshed as the pipeline writes more. Screenshots land in test-artifacts/.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WRITE_STATUSES } from '../../lambdas/core/interval-block.ts';
import { READING_STATUS_METRIC } from '../../lambdas/core/metric-catalog.ts';
import { withInvocationMetrics } from '../../lambdas/core/wiring.ts';
import { LOCAL_BLOCK_TIME_ZONE } from '../../local/defaults.ts';
import { startLocalQueryApi } from '../../local/local-mode.ts';
import { LOCAL_BUCKETS, startLocalPlatform, type LocalPlatform } from '../../local/platform.ts';
import { PROGRESS_METRICS, PROGRESS_SOURCES, tallyMetrics } from '../../local/progress.ts';
import { localReadyDependencies, sendReadyDeliveries, startReadyHttp, type ReadyHttp } from '../../local/ready-http.ts';
import { silentLog } from '../../shared/log.ts';
import type { IntervalReading } from '../../shared/reading.ts';
import { day } from '../support/readings.ts';
import { freeLocalPorts } from '../support/local-ports.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const SMT_METER = 'esiid-page-1';
const READY_METER = 'kamstrup-page-1';
// In America/Chicago (the local block zone): 2026-11-01 is the DST fall-back day (25 hours, 100
// quarter hours from 05:00Z), 2026-11-02 an ordinary one (96 from 06:00Z).
const DST_DAY = day('2026-11-01T05:00:00Z', 100, { meterId: SMT_METER, originId: 'smt-2026-11-01.csv' }, (i) => 0.2 + (i % 12) / 100);
const ESTIMATED = [10, 11, 12, 13];
const REVISED = [40, 41, 42, 43];
const PLAIN_DAY = day('2026-11-02T06:00:00Z', 96, { meterId: SMT_METER, originId: 'smt-2026-11-02.csv' }, (i) => 0.1 + (i % 24) / 50).map(
  (reading, i): IntervalReading => (ESTIMATED.includes(i) ? { ...reading, quality: 'estimated' } : reading),
);
const CORRECTION = REVISED.map((i): IntervalReading => ({ ...PLAIN_DAY[i]!, value: 2.5, revision: 2, originId: 'smt-2026-11-02-rev2.csv' }));
const iso = (reading: IntervalReading) => reading.start.toISOString();

let stateDir: string;
let platform: LocalPlatform;
let ready: ReadyHttp;
let queryApi: { url: string; pageUrl: string; stop(): Promise<void> };
let printed = '';
let browser: Browser;

/** Writes through the real store and counts the outcomes as the SMT handler does, flushed to the metrics sink. */
async function writeSmt(readings: IntervalReading[]): Promise<void> {
  const wiring = platform.wiringFor('smt');
  await withInvocationMetrics(wiring, async (metrics) => {
    const report = await wiring.store().write(readings);
    for (const status of WRITE_STATUSES) metrics.count(READING_STATUS_METRIC[status], report.counts[status]);
  });
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: scripts/setup.sh installs Debian's chromium (or set CHROMIUM_PATH)`);
  stateDir = await mkdtemp(join(tmpdir(), 'mb-page-'));
  platform = await startLocalPlatform({ ports: await freeLocalPorts(), stateDir });
  ready = await startReadyHttp({
    handlerDeps: localReadyDependencies({
      dynamodb: platform.dynamo.client,
      tables: platform.tables,
      blockTimeZone: LOCAL_BLOCK_TIME_ZONE,
      s3: platform.s3.client,
      archiveBucket: LOCAL_BUCKETS.readyArchive,
      cloudwatch: platform.cloudwatch.client(),
      log: silentLog,
    }),
  });
  await writeSmt(DST_DAY);
  await writeSmt(PLAIN_DAY);
  await writeSmt(CORRECTION);
  await writeSmt(PLAIN_DAY.slice(0, 8)); // re-delivered: duplicates
  const sent = await sendReadyDeliveries(ready.dataUrl, {
    meters: [{ meterId: READY_METER }],
    deliveries: 2,
    repeat: 2,
    start: new Date('2026-11-02T15:00:00Z'),
  });
  assert.ok(
    sent.every((s) => s.status === 200),
    JSON.stringify(sent.map((s) => s.status)),
  );
  const malformed = await fetch(ready.dataUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"deliveryId": ' });
  assert.equal(malformed.status, 400);
  queryApi = await startLocalQueryApi(platform, { port: 0, out: (text) => void (printed += text), pageRefreshMs: 1000 });
  browser = await chromium.launch({ executablePath: CHROMIUM });
});

after(async () => {
  await browser?.close();
  await queryApi?.stop();
  await ready?.stop();
  await platform?.stop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

async function openPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  page.on('console', (message) => void (message.type() === 'error' && errors.push(`console: ${message.text()}`)));
  page.on('requestfailed', (request) => errors.push(`request failed: ${request.url()}`));
  await page.goto(queryApi.pageUrl);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  return { page, errors };
}

async function screenshot(page: Page, name: string, diagnostic: (text: string) => void): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `page-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  diagnostic(`screenshot: ${path}`);
}

/** What the callbacks below use of the browser's window (the project compiles without the DOM library). */
type BrowserWindow = { getComputedStyle(element: unknown): { fill: string } };

/** The markers the chart drew, with what they say about their reading. */
async function markers(page: Page, selector = '#chart .pt') {
  return page.$$eval(selector, (elements) =>
    elements.map((e) => ({
      at: e.getAttribute('data-at')!,
      value: Number(e.getAttribute('data-value')),
      classes: e.getAttribute('class')!,
      fill: (globalThis as unknown as BrowserWindow).getComputedStyle(e).fill,
    })),
  );
}

async function showing(page: Page, span: 'day' | 'week', shownDay: string): Promise<void> {
  await page.waitForSelector(`body[data-chart="${SMT_METER}|energy.active.import|${span}|${shownDay}"]`, { timeout: 30_000 });
}

describe('local mode page: serving', () => {
  it('prints the page URL and serves the page, its script and style from loopback only', async () => {
    assert.match(printed, new RegExp(`Open the page: ${queryApi.pageUrl.replace(/[.]/g, '\\.')}\\n`));
    const html = await fetch(queryApi.pageUrl);
    assert.equal(html.status, 200);
    assert.match(html.headers.get('content-type') ?? '', /text\/html/);
    assert.match(html.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    const text = await html.text();
    assert.doesNotMatch(text, /https?:\/\//, 'the page loads nothing from elsewhere');
    assert.equal((await fetch(new URL('/page/page.js', queryApi.pageUrl))).status, 200);
    // The API is still the API beside it.
    assert.equal((await fetch(`${queryApi.url}/meters`)).status, 200);
    assert.equal((await fetch(new URL('/page/nothing.js', queryApi.pageUrl))).status, 404);
  });
});

describe('local mode page in headless Chromium: meters and readings', () => {
  it('lists the meters, charts a day with estimates and revisions marked, a DST day and a week', { timeout: 180_000 }, async (t) => {
    const { page, errors } = await openPage();
    const listed = await page.$$eval('#meters button', (buttons) => buttons.map((b) => b.getAttribute('data-meter')));
    assert.deepEqual(listed.sort(), [READY_METER, SMT_METER].sort());
    assert.match((await page.textContent(`#meters button[data-meter="${SMT_METER}"]`)) ?? '', /smt · energy\.active\.import/);

    await page.click(`#meters button[data-meter="${SMT_METER}"]`);
    await showing(page, 'day', '2026-11-02');
    assert.equal(await page.getAttribute(`#meters button[data-meter="${SMT_METER}"]`, 'aria-pressed'), 'true');
    const dayMarkers = await markers(page);
    assert.deepEqual(
      dayMarkers.map((m) => m.at),
      PLAIN_DAY.map(iso),
      'one point per stored reading of 2026-11-02, in order',
    );
    const estimated = dayMarkers.filter((m) => m.classes.split(' ').includes('estimated'));
    assert.deepEqual(
      estimated.map((m) => m.at),
      ESTIMATED.map((i) => iso(PLAIN_DAY[i]!)),
    );
    const revised = dayMarkers.filter((m) => m.classes.split(' ').includes('revised'));
    assert.deepEqual(
      revised.map((m) => [m.at, m.value]),
      CORRECTION.map((r) => [iso(r), 2.5]),
      'the superseding values are charted and marked',
    );
    const actual = dayMarkers.find((m) => m.classes === 'pt')!;
    assert.notEqual(estimated[0]!.fill, actual.fill, 'estimates look different from actual readings');
    assert.notEqual(revised[0]!.fill, actual.fill, 'revised readings look different from actual readings');
    assert.deepEqual(
      (await markers(page, '#legend .pt')).map((m) => m.classes),
      ['pt', 'pt estimated', 'pt revised'],
    );
    assert.equal(await page.locator('#readings-table tbody tr').count(), 96, 'the table fallback holds every value');
    assert.equal(await page.locator('#readings-table tbody tr.estimated').count(), ESTIMATED.length);
    assert.equal(await page.locator('#readings-table tbody tr.revised').count(), REVISED.length);
    assert.match(
      (await page.textContent('#chart-summary')) ?? '',
      /96 readings of esiid-page-1 energy\.active\.import, 2026-11-02 .*4 estimated, 4 revised/,
    );
    await screenshot(page, 'day', t.diagnostic.bind(t));

    await page.click('#previous');
    await showing(page, 'day', '2026-11-01');
    assert.deepEqual(
      (await markers(page)).map((m) => m.at),
      DST_DAY.map(iso),
      'the fall-back day has 100 quarter hours',
    );

    await page.click('#next');
    await showing(page, 'day', '2026-11-02');
    await page.check('input[name="span"][value="week"]');
    await showing(page, 'week', '2026-11-02');
    const week = await markers(page);
    assert.deepEqual(
      week.map((m) => m.at),
      [...DST_DAY, ...PLAIN_DAY].map(iso),
      'the week ending 2026-11-02 holds both days',
    );
    assert.equal(week.filter((m) => m.classes.includes('revised')).length, REVISED.length);
    assert.equal(await page.locator('#chart text', { hasText: 'Mon 11-02' }).count(), 1, 'the week axis names its days');
    await screenshot(page, 'week', t.diagnostic.bind(t));
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe('local mode page in headless Chromium: counters', () => {
  it(
    'shows per-source counters equal to the tallies, and refreshes them and the meter list as the pipeline writes',
    { timeout: 120_000 },
    async (t) => {
      const { page, errors } = await openPage();
      await page.waitForSelector('body[data-counters]');
      const tallies = tallyMetrics(await platform.cloudwatch.totals(undefined, PROGRESS_METRICS));
      assert.deepEqual(
        { stored: tallies.smt.stored, superseded: tallies.smt.superseded, duplicate: tallies.smt.duplicate },
        { stored: DST_DAY.length + PLAIN_DAY.length, superseded: CORRECTION.length, duplicate: 8 },
      );
      assert.ok(tallies.ready.stored > 0 && tallies.ready.resent === 2 && tallies.ready.rejected === 1, JSON.stringify(tallies.ready));
      const shown = async () =>
        page.$$eval('#counters tbody tr', (rows) =>
          Object.fromEntries(
            rows.map((row) => [
              row.getAttribute('data-source'),
              Object.fromEntries([...row.querySelectorAll('td')].map((cell) => [cell.getAttribute('data-field'), Number(cell.textContent)])),
            ]),
          ),
        );
      assert.deepEqual(await shown(), Object.fromEntries(PROGRESS_SOURCES.map((source) => [source, tallies[source]])));

      const more = day('2026-11-03T06:00:00Z', 4, { meterId: 'esiid-page-2', originId: 'smt-2026-11-03.csv' });
      await writeSmt(more);
      const storedNow = tallies.smt.stored + more.length;
      await page.waitForSelector(`#counters tr[data-source="smt"] td[data-field="stored"]:text-is("${storedNow}")`, { timeout: 30_000 });
      await page.click('#meters-refresh');
      await page.waitForSelector('#meters button[data-meter="esiid-page-2"]', { timeout: 30_000 });
      await screenshot(page, 'counters', t.diagnostic.bind(t));
      assert.deepEqual(errors, []);
      await page.close();
    },
  );
});
