import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CATALOG_SPAN_STEP_SECONDS } from '../../lambdas/core/meter-catalog.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';
import { day, interval, register } from '../support/readings.ts';

let dynamo: LocalDynamo;
before(async () => {
  dynamo = await startDynamoDbLocal();
});
after(async () => {
  await dynamo?.stop();
});

async function freshTable(): Promise<string> {
  return (await dynamo.freshTables()).readings;
}

const store = (tableName: string) => new ReadingStore({ client: dynamo.client, tableName, blockTimeZone: 'America/Chicago' });
const DAY_MS = 86_400_000;
/** Local midnight in Chicago (CDT) of 2026-04-01 plus n days. */
const dayStart = (n: number) => new Date(Date.parse('2026-04-01T05:00:00Z') + n * DAY_MS).toISOString();

describe('meter catalog maintained by the store', () => {
  it('records a meter on any channel with its unit, interval length, source and span', async () => {
    const s = store(await freshTable());
    await s.write([interval({ meterId: 'gw-meter-7', channel: 'kwh.import', source: 'iot', start: '2026-04-01T10:00:00Z', value: 1 })]);
    await s.write([register({ meterId: 'gw-meter-7', channel: 'water.volume', at: '2026-04-02T10:00:00Z' })]);

    const channels = await s.catalog.channels('gw-meter-7');

    assert.deepEqual(
      channels.map((c) => [c.channel, c.units, c.intervalSeconds, c.sources]),
      [
        ['kwh.import', ['kWh'], [900], ['iot']],
        ['water.volume', ['m3'], [0], ['ready']],
      ],
    );
    assert.equal(channels[0]!.first.toISOString(), '2026-04-01T10:00:00.000Z');
    assert.equal(channels[0]!.last.toISOString(), '2026-04-01T10:00:00.000Z');
    assert.deepEqual(await s.catalog.channels('another-meter'), []);
  });

  it('writes nothing to the catalog when a write or its replay says nothing new, warm or cold', async () => {
    const table = await freshTable();
    const first = await store(table).write(day(dayStart(0), 96, { meterId: 'm-1' }));
    assert.equal(first.catalog.writes, 1);

    const warmReplay = await store(table).write(day(dayStart(0), 96, { meterId: 'm-1' }));
    const warm = store(table);
    await warm.write(day(dayStart(1), 96, { meterId: 'm-1' }));
    const warmNextDay = await warm.write(day(dayStart(2), 96, { meterId: 'm-1' }));

    assert.deepEqual(warmReplay.catalog, { writes: 0, writeUnits: 0, reads: 1, readUnits: warmReplay.catalog.readUnits });
    assert.deepEqual({ writes: warmNextDay.catalog.writes, reads: warmNextDay.catalog.reads }, { writes: 0, reads: 0 });
  });

  it('rewrites the span only when it widens by the step: 2 catalog writes for 12 consecutive days', async () => {
    const s = store(await freshTable());
    let writes = 0;
    for (let n = 0; n < 12; n++) writes += (await s.write(day(dayStart(n), 96, { meterId: 'm-2' }))).catalog.writes;

    assert.equal(CATALOG_SPAN_STEP_SECONDS, 10 * 86_400);
    assert.equal(writes, 2); // day 0 (first sighting) and day 10 (span widened by 10 days)
    const [entry] = await s.catalog.channels('m-2');
    assert.equal(entry!.last.toISOString(), new Date(Date.parse(dayStart(10)) + 95 * 900_000).toISOString());
    const exact = await s.catalog.exactSpan('m-2', 'energy.active.import');
    assert.equal(exact!.first.toISOString(), new Date(dayStart(0)).toISOString());
    assert.equal(exact!.last.toISOString(), new Date(Date.parse(dayStart(11)) + 95 * 900_000).toISOString());
  });

  it('re-reads a stale view before writing: a process behind another pays a read, not a failed write', async () => {
    const table = await freshTable();
    const a = store(table);
    await a.write(day(dayStart(0), 4, { meterId: 'm-7' }));
    await store(table).write(day(dayStart(20), 4, { meterId: 'm-7' }));

    const behind = await a.write(day(dayStart(25), 4, { meterId: 'm-7' }));

    assert.deepEqual({ writes: behind.catalog.writes, reads: behind.catalog.reads }, { writes: 0, reads: 1 });
  });

  it('adds a new source, unit set member or interval length at once', async () => {
    const s = store(await freshTable());
    await s.write([interval({ meterId: 'm-3', source: 'smt', start: '2026-04-01T10:00:00Z' })]);
    const report = await s.write([interval({ meterId: 'm-3', source: 'iot', start: '2026-04-01T10:15:00Z' })]);
    await s.write([interval({ meterId: 'm-3', source: 'iot', minutes: 5, start: '2026-04-03T10:00:00Z' })]);

    assert.equal(report.catalog.writes, 1);
    const [entry] = await s.catalog.channels('m-3');
    assert.deepEqual(entry!.sources, ['iot', 'smt']);
    assert.deepEqual(entry!.intervalSeconds, [300, 900]);
  });

  it('keeps the widest span when writers with cold caches race (guarded on the entry they saw)', async () => {
    const table = await freshTable();
    const days = [0, 20, 40, 60, 80, 100, 120, 140];

    await Promise.all(days.map((n) => store(table).write(day(dayStart(n), 4, { meterId: 'm-4' }))));

    const [entry] = await store(table).catalog.channels('m-4');
    assert.equal(entry!.first.toISOString(), new Date(dayStart(0)).toISOString());
    assert.equal(entry!.last.toISOString(), new Date(Date.parse(dayStart(140)) + 3 * 900_000).toISOString());
  });

  it('does not record a reading that the store refused as a conflict', async () => {
    const s = store(await freshTable());
    await s.write([interval({ meterId: 'm-5', start: '2026-04-01T10:00:00Z' })]);
    const report = await s.write([interval({ meterId: 'm-5', unit: 'Wh', start: '2026-04-01T10:15:00Z' })]);

    assert.equal(report.outcomes[0]!.status, 'conflict');
    const [entry] = await s.catalog.channels('m-5');
    assert.deepEqual(entry!.units, ['kWh']);
  });

  it('leaves block queries untouched (catalog items live under their own partitions)', async () => {
    const s = store(await freshTable());
    const readings = day(dayStart(0), 96, { meterId: 'm-6' });
    await s.write(readings);

    const found = await s.query({
      meterId: 'm-6',
      channel: 'energy.active.import',
      from: new Date('2026-01-01T00:00:00Z'),
      to: new Date('2027-01-01T00:00:00Z'),
    });
    assert.equal(found.length, 96);
  });
});
