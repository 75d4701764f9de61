/**
 * The packed block form (interval-block.ts packBlock) on DynamoDB Local: whole-block writes pack,
 * small writes into a packed block take the version path with every write rule intact, racing
 * writers lose and double nothing, old per-slot items stay readable and convert, and a value the
 * packed form cannot hold exactly puts the block back into the per-slot form.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GetItemCommand, PutItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { encodeSlot, isSlotName, locate, originHash, originOf, PACKED } from '../../lambdas/core/interval-block.ts';
import { identityInstant, type IntervalReading, type Reading } from '../../shared/reading.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';
import { day, valuesOf } from '../support/readings.ts';

let dynamo: LocalDynamo;
before(async () => {
  dynamo = await startDynamoDbLocal();
});
after(async () => {
  await dynamo?.stop();
});

const meter = '10443720004766435';
const channel = 'energy.active.import';
const everything = { meterId: meter, channel, from: new Date('2020-01-01T00:00:00Z'), to: new Date('2030-01-01T00:00:00Z') };
const DAY = '2026-03-10T00:00:00Z';

async function freshStore(maxAttempts?: number): Promise<{ store: ReadingStore; table: string }> {
  const tables = await dynamo.freshTables();
  return { store: new ReadingStore({ client: dynamo.client, tableName: tables.readings, maxAttempts }), table: tables.readings };
}

async function blockItem(table: string): Promise<Record<string, AttributeValue>> {
  const { Item } = await dynamo.client.send(
    new GetItemCommand({ TableName: table, Key: { pk: { S: `${meter}#${channel}` }, sk: { S: '2026-03-10' } }, ConsistentRead: true }),
  );
  assert.ok(Item, 'the block exists');
  return Item;
}

function assertPacked(item: Record<string, AttributeValue>): void {
  assert.ok(item[PACKED]?.B, 'the block is packed');
  assert.deepEqual(
    Object.keys(item).filter((name) => isSlotName(name) || name.startsWith('o_')),
    [],
    'a packed block keeps no slot or origin attributes',
  );
}

const key = (reading: Reading) => identityInstant(reading).getTime();

describe('ReadingStore, packed blocks on DynamoDB Local', () => {
  it('writes a whole kWh day packed in one request and one write unit', async () => {
    const { store, table } = await freshStore();
    const readings = day(DAY, 96, { revision: 1_773_100_000, originId: 'IntervalMeterUsage20260310.csv.asc' }, (i) => Math.round(i * 137.3) / 1000);

    const report = await store.write(readings);

    assert.equal(report.requests, 1);
    assert.equal(report.counts.stored, 96);
    assert.equal(report.writeUnits, 1, 'DynamoDB Local bills the packed day as one write unit');
    assertPacked(await blockItem(table));
    assert.deepEqual(await store.query(everything), readings);
  });

  it('classifies hourly writes into a packed day on the version path: duplicate, stale, superseded, conflict, stored', async () => {
    const { store, table } = await freshStore();
    const whole = day(DAY, 80, { revision: 10, originId: 'file-a' });
    await store.write(whole);
    const hour = (h: number, overrides: Partial<IntervalReading>, value = (i: number) => (h * 4 + i) / 100) =>
      day(new Date(Date.parse(DAY) + h * 3_600_000).toISOString(), 4, overrides, value);

    const duplicate = await store.write(hour(0, { revision: 10, originId: 'file-a' }));
    const stale = await store.write(hour(1, { revision: 9, originId: 'file-old' }, () => 5));
    const superseded = await store.write(hour(2, { revision: 11, originId: 'file-b' }, (i) => 7 + i));
    const conflict = await store.write(hour(3, { revision: 10, originId: 'file-c' }, () => 9));
    const fresh = await store.write(hour(20, { revision: 12, originId: 'live' }, (i) => 0.5 + i));

    assert.deepEqual(duplicate.counts, { stored: 0, superseded: 0, duplicate: 4, stale: 0, conflict: 0 });
    assert.equal(duplicate.requests, 1, 'nothing to write after the failed condition');
    assert.deepEqual(stale.counts, { stored: 0, superseded: 0, duplicate: 0, stale: 4, conflict: 0 });
    assert.equal(stale.requests, 1);
    assert.deepEqual(superseded.counts, { stored: 0, superseded: 4, duplicate: 0, stale: 0, conflict: 0 });
    assert.equal(superseded.requests, 2, 'failed per-slot condition, then the write on the version');
    assert.equal(superseded.outcomes[0]!.existing?.value, 0.08);
    assert.equal(superseded.outcomes[0]!.existing?.origin, 'smt:file-a');
    assert.deepEqual(conflict.counts, { stored: 0, superseded: 0, duplicate: 0, stale: 0, conflict: 4 });
    assert.match(conflict.outcomes[0]!.reason ?? '', /already stored with value 0\.12 kWh from smt:file-a; incoming value 9 kWh from smt:file-c/);
    assert.deepEqual(fresh.counts, { stored: 4, superseded: 0, duplicate: 0, stale: 0, conflict: 0 });
    assert.equal(fresh.requests, 2);

    assertPacked(await blockItem(table));
    const stored = await store.query(everything);
    assert.equal(stored.length, 84);
    const expected = new Map(whole.map((r) => [key(r), r]));
    for (const r of [
      ...hour(2, { revision: 11, originId: 'file-b' }, (i) => 7 + i),
      ...hour(20, { revision: 12, originId: 'live' }, (i) => 0.5 + i),
    ]) {
      expected.set(key(r), r);
    }
    assert.deepEqual(
      stored,
      [...expected.values()].sort((a, b) => key(a) - key(b)),
    );
  });
});

describe('ReadingStore, packed blocks under races and old items on DynamoDB Local', () => {
  it('loses and doubles nothing when 24 writers race on one packed block', async () => {
    const { store } = await freshStore(200);
    const base = day(DAY, 48, { revision: 10, originId: 'file-a' });
    await store.write(base);
    // Every writer brings one new hour and a revised hour of the packed half-day; each hour comes
    // from two writers, paired differently for new and revised hours.
    const newHour = (h: number) =>
      day(new Date(Date.parse(DAY) + (12 + h) * 3_600_000).toISOString(), 4, { revision: 10, originId: 'live' }, (i) => 100 + h * 4 + i);
    const revisedHour = (h: number) =>
      day(new Date(Date.parse(DAY) + h * 3_600_000).toISOString(), 4, { revision: 11, originId: 'file-b' }, (i) => 200 + h * 4 + i);
    const batches = Array.from({ length: 24 }, (_, k) => [...newHour(k % 12), ...revisedHour((5 * k + (k < 12 ? 0 : 1)) % 12)]);

    const reports = await Promise.all(batches.map((batch) => store.write(batch)));

    const statuses = new Map<number, string[]>();
    for (const report of reports) for (const o of report.outcomes) statuses.set(key(o.reading), [...(statuses.get(key(o.reading)) ?? []), o.status]);
    for (const h of Array.from({ length: 12 }, (_, i) => i)) {
      for (const r of newHour(h)) assert.deepEqual(statuses.get(key(r))!.sort(), ['duplicate', 'stored'], `new reading ${r.start.toISOString()}`);
      for (const r of revisedHour(h)) {
        assert.deepEqual(statuses.get(key(r))!.sort(), ['duplicate', 'superseded'], `revised reading ${r.start.toISOString()}`);
      }
    }
    const expected = [...Array.from({ length: 12 }, (_, h) => revisedHour(h)).flat(), ...Array.from({ length: 12 }, (_, h) => newHour(h)).flat()];
    assert.deepEqual(await store.query(everything), expected);
  });

  it('reads an old per-slot block, and packs it when a whole day is re-delivered into it', async () => {
    const { store, table } = await freshStore();
    const readings = day(DAY, 96, { revision: 10, originId: 'file-a' });
    // The item as the store wrote it before the packed form: one list attribute per slot.
    const item: Record<string, AttributeValue> = {
      pk: { S: `${meter}#${channel}` },
      sk: { S: '2026-03-10' },
      bs: { N: String(Date.parse(DAY) / 1000) },
      u: { S: 'kWh' },
      d: { N: '900' },
      ver: { N: '3' },
      ua: { N: '1773100800' },
      [`o_${originHash(originOf(readings[0]!))}`]: { S: originOf(readings[0]!) },
    };
    for (const reading of readings.slice(0, 40)) item[locate(reading, 'UTC').slot] = encodeSlot(reading);
    await dynamo.client.send(new PutItemCommand({ TableName: table, Item: item }));
    assert.deepEqual(await store.query(everything), readings.slice(0, 40));

    const revised = readings.map((r, i) => (i < 20 ? { ...r, revision: 11, value: Math.round(r.value * 100 + 100) / 100, originId: 'file-b' } : r));
    const report = await store.write(revised);

    assert.deepEqual(report.counts, { stored: 56, superseded: 20, duplicate: 20, stale: 0, conflict: 0 });
    assert.equal(report.requests, 2);
    assertPacked(await blockItem(table));
    assert.deepEqual(await store.query(everything), revised);
  });

  it('puts a packed block back into slots when a value would not pack exactly', async () => {
    const { store, table } = await freshStore();
    const readings = day(DAY, 96, { revision: 10 });
    await store.write(readings);
    const precise = { ...readings[7]!, revision: 11, value: 0.123456789012 };

    const report = await store.write([precise]);

    assert.equal(report.outcomes[0]!.status, 'superseded');
    const item = await blockItem(table);
    assert.equal(item[PACKED], undefined, 'no packed part left');
    assert.equal(Object.keys(item).filter(isSlotName).length, 96);
    const stored = await store.query(everything);
    assert.deepEqual(stored[7], precise);
    assert.deepEqual(valuesOf(stored), [...valuesOf(readings.slice(0, 7)), 0.123456789012, ...valuesOf(readings.slice(8))]);
    // Back in slots, a small write is one request again.
    const next = await store.write([{ ...readings[9]!, revision: 12, value: 3 }]);
    assert.equal(next.requests, 1);
    assert.equal(next.outcomes[0]!.status, 'superseded');
  });
});
