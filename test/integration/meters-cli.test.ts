/**
 * `meterbridge meters list|show` and `readings query --format`, against DynamoDB Local: the meter
 * catalog makes a reading on any channel findable (issue 13).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { main } from '../../bin/meterbridge.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { CSV_HEADER } from '../../lambdas/core/query/formats.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';
import { readEspi, validateEspi } from '../support/espi.ts';
import { day, interval, register } from '../support/readings.ts';

let dynamo: LocalDynamo;
let readingsTable: string;

before(async () => {
  dynamo = await startDynamoDbLocal();
  readingsTable = (await dynamo.freshTables()).readings;
  const store = new ReadingStore({ client: dynamo.client, tableName: readingsTable, blockTimeZone: 'America/Chicago' });
  await store.write(day('2026-03-10T05:00:00Z', 96, { meterId: 'esiid-1', revision: 7, source: 'smt' }));
  await store.write([register({ meterId: 'kamstrup-1', at: '2026-03-10T12:00:00Z' })]);
  // A channel no adapter uses: only the catalog can tell the CLI it exists.
  await store.write([interval({ meterId: 'gw-1', channel: 'kwh.import', source: 'iot', start: '2026-03-20T10:00:00Z', value: 1.25 })]);
});
after(async () => dynamo?.stop());

async function cli(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { out: (t) => (stdout += t), err: (t) => (stderr += t), env: {} });
  return { code, stdout, stderr };
}
const target = () => ['--table', readingsTable, '--endpoint', dynamo.endpoint];
const jsonLines = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

describe('meterbridge meters', () => {
  it('lists every meter with its channels, sources and exact span', async () => {
    const { code, stdout, stderr } = await cli(['meters', 'list', ...target()]);

    assert.equal(code, 0, stderr);
    const meters = jsonLines(stdout);
    assert.deepEqual(meters.map((m) => m.meterId).sort(), ['esiid-1', 'gw-1', 'kamstrup-1']);
    const esiid = meters.find((m) => m.meterId === 'esiid-1')!;
    assert.deepEqual(esiid, {
      meterId: 'esiid-1',
      sources: ['smt'],
      first: '2026-03-10T05:00:00.000Z',
      last: '2026-03-11T04:45:00.000Z',
      channels: [
        {
          channel: 'energy.active.import',
          units: ['kWh'],
          intervalSeconds: [900],
          sources: ['smt'],
          first: '2026-03-10T05:00:00.000Z',
          last: '2026-03-11T04:45:00.000Z',
        },
      ],
    });
    assert.match(stderr, /3 meter\(s\)/);
  });

  it('filters by source and by the last reading', async () => {
    const iot = jsonLines((await cli(['meters', 'list', '--source', 'iot', ...target()])).stdout);
    const recent = jsonLines((await cli(['meters', 'list', '--since', '2026-03-11T00:00:00Z', ...target()])).stdout);

    assert.deepEqual(
      iot.map((m) => m.meterId),
      ['gw-1'],
    );
    assert.deepEqual(recent.map((m) => m.meterId).sort(), ['esiid-1', 'gw-1']);
  });

  it('shows one meter, and fails for an unknown one', async () => {
    const shown = await cli(['meters', 'show', '--meter', 'gw-1', ...target()]);
    const unknown = await cli(['meters', 'show', '--meter', 'nobody', ...target()]);

    assert.equal(jsonLines(shown.stdout)[0]!.meterId, 'gw-1');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no meter nobody/);
    assert.equal((await cli(['meters', 'list', '--source', 'fax', ...target()])).code, 2);
  });
});

describe('meterbridge readings query through the catalog', () => {
  it('finds a reading on a channel no adapter knows, without --channel', async () => {
    const { code, stdout, stderr } = await cli(['readings', 'query', '--meter', 'gw-1', '--from', '2026-03-20', '--to', '2026-03-21', ...target()]);

    assert.equal(code, 0, stderr);
    assert.deepEqual(
      jsonLines(stdout).map((r) => [r.channel, r.value]),
      [['kwh.import', 1.25]],
    );
  });

  it('prints CSV and a schema-valid Green Button feed of the same readings', async () => {
    const range = ['--meter', 'esiid-1', '--from', '2026-03-10', '--to', '2026-03-12', ...target()];
    const csv = await cli(['readings', 'query', ...range, '--format', 'csv']);
    const espi = await cli(['readings', 'query', ...range, '--format', 'espi']);

    const rows = csv.stdout.trimEnd().split('\r\n');
    assert.equal(rows[0], CSV_HEADER);
    assert.equal(rows.length, 97);
    assert.equal(rows[1], 'esiid-1,energy.active.import,2026-03-10T05:00:00.000Z,2026-03-10T05:15:00.000Z,0,kWh,actual,7,smt');
    const validation = await validateEspi(espi.stdout);
    assert.ok(validation.ok, validation.output);
    assert.equal(readEspi(espi.stdout).blocks[0]!.readings.length, 96);
    assert.equal((await cli(['readings', 'query', ...range, '--format', 'xml'])).code, 2);
  });
});
