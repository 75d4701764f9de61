/**
 * The query API's handler served on loopback by the local API Gateway adapter (as local mode
 * serves it), over DynamoDB Local: refusals, pagination, and one test that drives the API, the
 * CLI and every format over the same readings and checks they agree.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { main } from '../../bin/meterbridge.ts';
import { CSV_HEADER } from '../../lambdas/core/query/formats.ts';
import { API_LIMITS } from '../../lambdas/core/query/readings-query.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { startQueryHttp } from '../../local/query-http.ts';
import { silentLog } from '../../shared/log.ts';
import { readingToJson, type Reading } from '../../shared/reading.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';
import { readEspi, validateEspi } from '../support/espi.ts';
import { day, interval, register } from '../support/readings.ts';

const ZONE = 'America/Chicago';
let dynamo: LocalDynamo;
let table: string;
let api: { url: string; stop(): Promise<void> };
const written: Reading[] = [];

before(async () => {
  dynamo = await startDynamoDbLocal();
  table = (await dynamo.freshTables()).readings;
  const store = new ReadingStore({ client: dynamo.client, tableName: table, blockTimeZone: ZONE });
  // DST days in Chicago: 2026-03-08 has 92 intervals, 2026-11-01 has 100.
  written.push(
    ...day('2026-03-08T06:00:00Z', 92, { meterId: 'esiid-dst', quality: 'estimated', revision: 2 }, (i) => Math.round(i * 12.5) / 1000),
    ...day('2026-11-01T05:00:00Z', 100, { meterId: 'esiid-dst', revision: 3 }, (i) => i / 4),
    ...day('2026-11-01T05:00:00Z', 8, { meterId: 'esiid-dst', channel: 'energy.active.export', source: 'iot', originId: 'gw/1' }),
    register({ meterId: 'esiid-dst', at: '2026-11-01T12:00:00Z', value: 1234.567 }),
  );
  await store.write(written);
  for (let m = 0; m < 5; m++) await store.write([interval({ meterId: `page-meter-${m}`, source: 'iot', start: '2026-11-02T10:00:00Z' })]);
  api = await startQueryHttp({ store, timeZone: ZONE, log: silentLog, clock: () => new Date('2026-11-30T00:00:00Z') });
});
after(async () => {
  await api?.stop();
  await dynamo?.stop();
});

async function get(path: string): Promise<{ status: number; headers: Headers; text: string; json: () => Record<string, unknown> }> {
  const response = await fetch(`${api.url}${path}`);
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

async function cli(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main([...args, '--table', table, '--endpoint', dynamo.endpoint, '--time-zone', ZONE], {
    out: (t) => (stdout += t),
    err: (t) => (stderr += t),
    env: {},
  });
  return { code, stdout, stderr };
}

describe('query API refusals', () => {
  it('refuses bad and oversized ranges, oversized pages, bad formats, cursors and parameters with 400 and a code', async () => {
    const base = '/meters/esiid-dst/readings';
    const cases: Array<[string, string]> = [
      [`${base}?from=2026-03-10&to=2026-03-09`, 'bad_range'],
      [`${base}?from=yesterday`, 'bad_range'],
      [`${base}?from=2026-01-01&to=2026-03-01`, 'range_too_large'],
      [`${base}?from=2026-03-08&limit=${API_LIMITS.maxReadingPage + 1}`, 'page_too_large'],
      [`${base}?from=2026-03-08&limit=0`, 'bad_request'],
      [`${base}?from=2026-03-08&format=xml`, 'bad_format'],
      [`${base}?from=2026-03-08&cursor=bm90LWEtY3Vyc29y`, 'bad_cursor'],
      [`${base}?form=2026-03-08`, 'bad_request'],
      [`/meters?limit=${API_LIMITS.maxMeterPage + 1}`, 'page_too_large'],
      ['/meters?source=fax', 'bad_request'],
    ];
    for (const [path, code] of cases) {
      const response = await get(path);
      assert.equal(response.status, 400, path);
      assert.equal((response.json().error as { code: string }).code, code, path);
    }
  });

  it('answers 404 for an unknown meter and an unknown resource', async () => {
    for (const path of ['/meters/nobody', '/meters/nobody/readings?from=2026-03-08', '/readings', '/meters/esiid-dst/other']) {
      assert.equal((await get(path)).status, 404, path);
    }
    assert.equal(((await get('/meters/nobody')).json().error as { code: string }).code, 'unknown_meter');
  });
});

describe('query API pages', () => {
  it('pages meters with an opaque cursor, each meter once', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = (await get(`/meters?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json() as {
        meters: Array<{ meterId: string }>;
        nextCursor?: string;
      };
      seen.push(...page.meters.map((m) => m.meterId));
      cursor = page.nextCursor;
      pages += 1;
    } while (cursor && pages < 10);
    assert.deepEqual(seen.sort(), ['esiid-dst', 'page-meter-0', 'page-meter-1', 'page-meter-2', 'page-meter-3', 'page-meter-4']);
    assert.ok(pages >= 3);
    const iot = (await get('/meters?source=iot')).json() as { meters: Array<{ meterId: string }> };
    assert.equal(iot.meters.length, 6); // esiid-dst has an iot channel too
  });

  it('pages readings across channels without repeats or gaps, cursor in body and header', async () => {
    const all: unknown[] = [];
    let cursor: string | undefined;
    do {
      const response = await get(
        `/meters/esiid-dst/readings?from=2026-11-01T05:00:00Z&to=2026-11-02T06:00:00Z&limit=30${cursor ? `&cursor=${cursor}` : ''}`,
      );
      const page = response.json() as { readings: unknown[]; nextCursor?: string };
      assert.equal(response.headers.get('x-next-cursor') ?? undefined, page.nextCursor);
      all.push(...page.readings);
      cursor = page.nextCursor;
    } while (cursor);
    assert.equal(all.length, 109); // 100 + 8 + 1 register
    assert.equal(new Set(all.map((r) => JSON.stringify(r))).size, 109);
  });
});

describe('API, CLI and every format agree', () => {
  it('returns the same readings as JSON, CSV and Green Button, through the API and the CLI', async () => {
    const range = { from: '2026-03-08', to: '2026-11-30' };
    // The CLI allows a longer range than the API; the API is asked per 31-day window containing data.
    // Local days in Chicago: [06:00Z, 05:00Z next day) in March, [05:00Z, 06:00Z next day) on 2026-11-01.
    const windows = [
      ['2026-03-08T06:00:00Z', '2026-03-09T05:00:00Z'],
      ['2026-11-01T05:00:00Z', '2026-11-02T06:00:00Z'],
    ];
    const apiJson: unknown[] = [];
    const apiCsv: string[] = [];
    const apiEspi: string[] = [];
    for (const [from, to] of windows) {
      const q = `/meters/esiid-dst/readings?from=${from}&to=${to}&limit=50000`;
      apiJson.push(...((await get(q)).json().readings as unknown[]));
      const csv = await get(`${q}&format=csv`);
      assert.match(csv.headers.get('content-type') ?? '', /^text\/csv/);
      apiCsv.push(...csv.text.trimEnd().split('\r\n').slice(1));
      const espi = await get(`${q}&format=espi`);
      assert.equal(espi.headers.get('content-type'), 'application/atom+xml');
      apiEspi.push(espi.text);
    }
    const cliJson = (await cli(['readings', 'query', '--meter', 'esiid-dst', '--from', range.from, '--to', range.to])).stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as unknown);
    const cliCsv = (await cli(['readings', 'query', '--meter', 'esiid-dst', '--from', range.from, '--to', range.to, '--format', 'csv'])).stdout
      .trimEnd()
      .split('\r\n');
    const cliEspi = (await cli(['readings', 'query', '--meter', 'esiid-dst', '--from', range.from, '--to', range.to, '--format', 'espi'])).stdout;

    // What was written, as JSON, in the core's order (channel, then time).
    const expected = [...written]
      .sort(
        (a, b) =>
          a.channel.localeCompare(b.channel) ||
          (a.kind === 'interval' ? a.start : a.at).getTime() - (b.kind === 'interval' ? b.start : b.at).getTime(),
      )
      .map(readingToJson);
    const byKey = (list: unknown[]) => [...list].map((r) => JSON.stringify(r)).sort();
    assert.deepEqual(byKey(apiJson), byKey(expected));
    assert.deepEqual(cliJson, expected);

    assert.equal(cliCsv[0], CSV_HEADER);
    assert.deepEqual([...apiCsv].sort(), cliCsv.slice(1).sort());
    assert.deepEqual(
      cliCsv.slice(1).map((row) => row.split(',')),
      expected.map((r) => [r.meterId, r.channel, r.start ?? r.at, r.end ?? '', String(r.value), r.unit, r.quality, String(r.revision), r.source]),
    );

    for (const xml of [...apiEspi, cliEspi]) {
      const validation = await validateEspi(xml);
      assert.ok(validation.ok, validation.output);
    }
    // Green Button values, scaled back, equal the JSON values; DST blocks are 23 h / 92 and 25 h / 100.
    const { blocks, readingTypes } = readEspi(cliEspi);
    const energy = blocks.filter((b) => b.readings[0]?.duration === 900 && b.readings.length > 8);
    assert.deepEqual(
      energy.map((b) => [b.duration, b.readings.length]),
      [
        [82_800, 92],
        [90_000, 100],
      ],
    );
    const type = [...readingTypes.entries()].find(([title]) => title.startsWith('energy.active.import'))![1];
    const espiValues = energy.flatMap((b) => b.readings.map((r) => (r.value * 10 ** type.powerOfTenMultiplier!) / 1000));
    const jsonValues = expected.filter((r) => r.channel === 'energy.active.import').map((r) => r.value);
    assert.deepEqual(
      espiValues.map((v) => Math.round(v * 1e9) / 1e9),
      jsonValues,
    );
    assert.ok(energy[0]!.readings.every((r) => r.quality === 8) && energy[1]!.readings.every((r) => r.quality === undefined));
  });
});
