import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';
import { day, interval, register, valuesOf } from '../support/readings.ts';

let dynamo: LocalDynamo;
before(async () => {
  dynamo = await startDynamoDbLocal();
});
after(async () => {
  await dynamo?.stop();
});

async function freshStore(blockTimeZone = 'UTC'): Promise<ReadingStore> {
  const tables = await dynamo.freshTables();
  return new ReadingStore({ client: dynamo.client, tableName: tables.readings, blockTimeZone });
}

const meter = '10443720004766435';
const channel = 'energy.active.import';
const everything = { meterId: meter, channel, from: new Date('2020-01-01T00:00:00Z'), to: new Date('2030-01-01T00:00:00Z') };

describe('ReadingStore on DynamoDB Local', () => {
  it('stores the first write of a reading and returns it from a query', async () => {
    const store = await freshStore();
    const reading = interval({ value: 1.5 });

    const report = await store.write([reading]);

    assert.equal(report.outcomes[0]?.status, 'stored');
    assert.equal(report.requests, 1);
    const stored = await store.query(everything);
    assert.equal(stored.length, 1);
    assert.deepEqual(stored[0], reading);
  });

  it('keeps one value after 1,000 replays of one reading and counts 999 duplicates', async () => {
    const store = await freshStore();
    const reading = interval({ value: 2.25 });
    const statuses: string[] = [];
    for (let wave = 0; wave < 50; wave++) {
      const reports = await Promise.all(Array.from({ length: 20 }, () => store.write([reading])));
      for (const report of reports) statuses.push(report.outcomes[0]!.status);
    }

    assert.equal(statuses.length, 1000);
    assert.equal(statuses.filter((s) => s === 'stored').length, 1);
    assert.equal(statuses.filter((s) => s === 'duplicate').length, 999);
    assert.deepEqual(valuesOf(await store.query(everything)), [2.25]);
  });

  it('lets exactly one of 32 concurrent writers of the same reading store it', async () => {
    const store = await freshStore();
    const reading = interval({ value: 7 });

    const reports = await Promise.all(Array.from({ length: 32 }, () => store.write([reading])));

    const statuses = reports.map((report) => report.outcomes[0]!.status);
    assert.equal(statuses.filter((s) => s === 'stored').length, 1);
    assert.equal(statuses.filter((s) => s === 'duplicate').length, 31);
  });

  it('orders revisions: a lower one never overwrites, a higher one always does, whatever the arrival order', async () => {
    const orders = [
      [1, 2, 3],
      [1, 3, 2],
      [2, 1, 3],
      [2, 3, 1],
      [3, 1, 2],
      [3, 2, 1],
    ];
    for (const order of orders) {
      const store = await freshStore();
      let highestSoFar = 0;
      for (const revision of order) {
        const report = await store.write([interval({ revision, value: revision * 10 })]);
        const expected = highestSoFar === 0 ? 'stored' : revision > highestSoFar ? 'superseded' : 'stale';
        assert.equal(report.outcomes[0]!.status, expected, `order ${order.join(',')}, revision ${revision}`);
        highestSoFar = Math.max(highestSoFar, revision);
      }
      assert.deepEqual(valuesOf(await store.query(everything)), [30], `order ${order.join(',')}`);
    }
  });

  it('ends with the highest revision when revisions race', async () => {
    const store = await freshStore();
    const revisions = Array.from({ length: 24 }, (_, i) => ((i * 7) % 24) + 1);

    const reports = await Promise.all(revisions.map((revision) => store.write([interval({ revision, value: revision })])));

    assert.deepEqual(valuesOf(await store.query(everything)), [24]);
    const statuses = reports.map((report) => report.outcomes[0]!.status);
    assert.equal(statuses.filter((s) => s === 'stored').length, 1);
    assert.ok(statuses.every((s) => s === 'stored' || s === 'superseded' || s === 'stale'));
  });

  it('replaces an estimate with an actual of the same revision, but not the other way round', async () => {
    const store = await freshStore();
    await store.write([interval({ quality: 'estimated', value: 1 })]);

    const actual = await store.write([interval({ quality: 'actual', value: 1.2 })]);
    const estimateAgain = await store.write([interval({ quality: 'estimated', value: 1 })]);

    assert.equal(actual.outcomes[0]!.status, 'superseded');
    assert.equal(actual.outcomes[0]!.existing?.quality, 'estimated');
    assert.equal(estimateAgain.outcomes[0]!.status, 'stale');
    const [stored] = await store.query(everything);
    assert.equal(stored?.quality, 'actual');
    assert.equal(stored?.value, 1.2);
  });

  it('reports a conflict with both values and keeps the first', async () => {
    const store = await freshStore();
    await store.write([interval({ value: 3.5, originId: 'file-a' })]);

    const report = await store.write([interval({ value: 4.75, originId: 'file-b' })]);

    const outcome = report.outcomes[0]!;
    assert.equal(outcome.status, 'conflict');
    assert.equal(outcome.existing?.value, 3.5);
    assert.equal(outcome.existing?.origin, 'smt:file-a');
    assert.equal(outcome.reading.value, 4.75);
    assert.match(outcome.reason ?? '', /3\.5.*4\.75/);
    assert.deepEqual(valuesOf(await store.query(everything)), [3.5]);
  });

  it('treats a reading in another unit than its block as a conflict', async () => {
    const store = await freshStore();
    await store.write([interval({ unit: 'kWh', start: '2026-03-10T06:00:00Z' })]);

    const report = await store.write([interval({ unit: 'Wh', value: 250, start: '2026-03-10T06:15:00Z' })]);

    assert.equal(report.outcomes[0]!.status, 'conflict');
    assert.match(report.outcomes[0]!.reason ?? '', /unit Wh differs from the block's unit kWh/);
    assert.equal((await store.query(everything)).length, 1);
  });

  it('writes a day of 96 readings as one delivery in one request, and a replay of it in one request', async () => {
    const store = await freshStore();
    const readings = day('2026-03-10T00:00:00Z', 96);

    const first = await store.write(readings);
    const replay = await store.write(readings);

    assert.equal(first.requests, 1);
    assert.equal(first.counts.stored, 96);
    assert.equal(replay.requests, 1);
    assert.equal(replay.counts.duplicate, 96);
    const stored = await store.query(everything);
    assert.equal(stored.length, 96);
    assert.deepEqual(stored, readings);
  });

  it('supersedes a whole day re-delivered with a later revision, estimates included', async () => {
    const store = await freshStore();
    const firstDelivery = day('2026-03-10T00:00:00Z', 96, { revision: 100, quality: 'estimated' });
    const revised = day('2026-03-10T00:00:00Z', 96, { revision: 200, quality: 'actual' }, (i) => i / 10);

    await store.write(firstDelivery);
    const report = await store.write(revised);
    const staleAgain = await store.write(firstDelivery);

    assert.equal(report.counts.superseded, 96);
    assert.equal(staleAgain.counts.stale, 96);
    const stored = await store.query(everything);
    assert.deepEqual(
      valuesOf(stored),
      revised.map((r) => r.value),
    );
    assert.ok(stored.every((r) => r.quality === 'actual' && r.revision === 200));
  });

  it('fills the gaps of a block that single readings already started, and counts those as duplicates', async () => {
    const store = await freshStore();
    const readings = day('2026-03-10T00:00:00Z', 96);
    await store.write([readings[5]!]);
    await store.write([readings[50]!]);

    const report = await store.write(readings);

    assert.equal(report.counts.stored, 94);
    assert.equal(report.counts.duplicate, 2);
    assert.equal((await store.query(everything)).length, 96);
  });

  it('writes the same identity twice in one batch in order: the later one is a duplicate', async () => {
    const store = await freshStore();
    const reading = interval({ value: 9 });

    const report = await store.write([reading, reading, interval({ value: 9, start: '2026-03-10T06:15:00Z' })]);

    assert.deepEqual(
      report.outcomes.map((o) => o.status),
      ['stored', 'duplicate', 'stored'],
    );
  });

  it('keeps a Chicago fall-back day of 100 intervals in one block written by one request', async () => {
    const store = await freshStore('America/Chicago');
    // 2026-11-01 is the fall-back Sunday: local midnight is 05:00Z (CDT) and the day has 25 hours.
    const readings = day('2026-11-01T05:00:00Z', 100);

    const report = await store.write(readings);

    assert.equal(report.requests, 1);
    assert.equal(report.counts.stored, 100);
    assert.equal((await store.query(everything)).length, 100);
  });

  it('stores register reads and answers a query for a time range only', async () => {
    const store = await freshStore();
    const reads = ['2026-03-09T23:00:00Z', '2026-03-10T00:00:00Z', '2026-03-10T12:34:56Z', '2026-03-11T00:00:00Z'].map((at, i) =>
      register({ at, value: 100 + i }),
    );
    await store.write(reads);

    const inRange = await store.query({
      meterId: 'kamstrup-71234567',
      channel: 'water.volume',
      from: new Date('2026-03-10T00:00:00Z'),
      to: new Date('2026-03-11T00:00:00Z'),
    });

    assert.deepEqual(inRange, [reads[1], reads[2]]);
  });
});
