/**
 * `meterbridge readings query` through the CLI entry against DynamoDB Local: what the store holds
 * comes back as JSON lines, in time order, filtered by channel and time range.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { main } from '../../bin/meterbridge.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';
import { day, register } from '../support/readings.ts';

let dynamo: LocalDynamo;
let readingsTable: string;

before(async () => {
  dynamo = await startDynamoDbLocal();
  readingsTable = (await dynamo.freshTables()).readings;
  const store = new ReadingStore({ client: dynamo.client, tableName: readingsTable, blockTimeZone: 'America/Chicago' });
  // 2026-03-10 local midnight in Chicago is 05:00Z (CDT).
  await store.write(day('2026-03-10T05:00:00Z', 96, { meterId: 'esiid-1', revision: 7 }));
  await store.write([register({ meterId: 'esiid-1', at: '2026-03-10T12:00:00Z', channel: 'water.volume' })]);
});
after(async () => dynamo?.stop());

async function cli(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { out: (t) => (stdout += t), err: (t) => (stderr += t), env: {} });
  return {
    code,
    stdout,
    stderr,
    lines: stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

const target = () => ['--table', readingsTable, '--endpoint', dynamo.endpoint];

describe('meterbridge readings query', () => {
  it('prints one JSON line per stored reading of the meter, across channels, in time order', async () => {
    const { code, lines, stderr } = await cli(['readings', 'query', '--meter', 'esiid-1', '--from', '2026-03-10', '--to', '2026-03-12', ...target()]);
    assert.equal(code, 0, stderr);
    assert.equal(lines.length, 97);
    const energy = lines.filter((line) => line.channel === 'energy.active.import');
    assert.equal(energy.length, 96);
    assert.deepEqual(energy[0], {
      meterId: 'esiid-1',
      channel: 'energy.active.import',
      kind: 'interval',
      start: '2026-03-10T05:00:00.000Z',
      end: '2026-03-10T05:15:00.000Z',
      value: 0,
      unit: 'kWh',
      quality: 'actual',
      revision: 7,
      source: 'smt',
      originId: 'test-file',
    });
    assert.equal(energy[95]!.start, '2026-03-11T04:45:00.000Z');
    const water = lines.find((line) => line.channel === 'water.volume');
    assert.equal(water?.at, '2026-03-10T12:00:00.000Z');
    assert.match(stderr, /97 reading\(s\) of esiid-1/);
  });

  it('narrows to one channel and a time range', async () => {
    const { lines } = await cli([
      'readings',
      'query',
      '--meter',
      'esiid-1',
      '--channel',
      'energy.active.import',
      '--from',
      '2026-03-10T06:00:00Z',
      '--to',
      '2026-03-10T07:00:00Z',
      ...target(),
    ]);
    assert.deepEqual(
      lines.map((line) => line.start),
      ['2026-03-10T06:00:00.000Z', '2026-03-10T06:15:00.000Z', '2026-03-10T06:30:00.000Z', '2026-03-10T06:45:00.000Z'],
    );
  });

  it('prints nothing for an unknown meter', async () => {
    const { code, lines } = await cli(['readings', 'query', '--meter', 'nobody', ...target()]);
    assert.equal(code, 0);
    assert.equal(lines.length, 0);
  });

  it('explains a missing table and an unreachable local store, with exit 1', async () => {
    const missing = await cli(['readings', 'query', '--meter', 'esiid-1', '--table', 'no-such-table', '--endpoint', dynamo.endpoint]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no table no-such-table/);
    const down = await cli(['readings', 'query', '--meter', 'esiid-1', '--endpoint', 'http://127.0.0.1:9']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /start local mode with npm start/);
  });

  it('refuses bad time arguments as usage errors', async () => {
    assert.equal((await cli(['readings', 'query', '--meter', 'm', '--from', 'yesterday'])).code, 2);
    assert.equal((await cli(['readings', 'query', '--meter', 'm', '--from', '2026-03-11', '--to', '2026-03-10'])).code, 2);
    assert.equal((await cli(['readings', 'query'])).code, 2);
  });
});
