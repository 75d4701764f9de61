import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import {
  decodeBlock,
  encodeSlot,
  locate,
  originHash,
  originOf,
  PACKED,
  packBlock,
  planBlockWrite,
  type DecodedBlock,
  type PackableValue,
} from '../../lambdas/core/interval-block.ts';
import { blockChange } from '../../lambdas/core/feed/block-change.ts';
import { itemSizeBytes, writeUnitsFor } from '../../lambdas/core/item-size.ts';
import type { Reading } from '../../shared/reading.ts';
import { day, interval, register } from '../support/readings.ts';

const DAY = '2026-03-10T00:00:00Z';
const base = (): Record<string, AttributeValue> => ({
  pk: { S: '10443720004766435#energy.active.import' },
  sk: { S: '2026-03-10' },
  bs: { N: String(Date.parse(DAY) / 1000) },
  u: { S: 'kWh' },
  d: { N: '900' },
  ver: { N: '1' },
  ua: { N: '1773100800' },
});

/** The block in the per-slot form, as the store wrote every block before the packed form. */
function perSlotItem(readings: Reading[]): Record<string, AttributeValue> {
  const item = base();
  for (const reading of readings) {
    item[locate(reading, 'UTC').slot] = encodeSlot(reading);
    item[`o_${originHash(originOf(reading))}`] = { S: originOf(reading) };
  }
  return item;
}

function packedItem(readings: Reading[]): Record<string, AttributeValue> {
  const bytes = packBlock(slotsOf(readings), 900);
  assert.ok(bytes, 'packs');
  return { ...base(), [PACKED]: { B: bytes } };
}

function slotsOf(readings: Reading[]): Map<string, PackableValue> {
  return new Map(readings.map((r) => [locate(r, 'UTC').slot, { value: r.value, revision: r.revision, quality: r.quality, origin: originOf(r) }]));
}

/** A day with gaps, two revisions, two origins, estimates, negative and zero values. */
function mixedDay(): Reading[] {
  return day(DAY, 96, { revision: 1_773_100_000, originId: 'IntervalMeterUsage20260310.csv.asc' }, (i) => Math.round((i - 10) * 137.3) / 1000)
    .filter((_, i) => i % 7 !== 3)
    .map((r, i) => (i % 5 === 0 ? { ...r, quality: 'estimated' as const } : r))
    .map((r, i) => (i > 60 ? { ...r, revision: 1_773_200_000, originId: 'live-gateway' } : r));
}

describe('packed block form', () => {
  it('decodes to exactly what the per-slot form of the same readings decodes to', () => {
    const readings = mixedDay();
    const packed = decodeBlock(packedItem(readings));
    const perSlot = decodeBlock(perSlotItem(readings));
    assert.equal(packed.packed, true);
    assert.equal(perSlot.packed, false);
    assert.equal(packed.slots.size, readings.length);
    assert.deepEqual(new Map([...packed.slots].sort()), new Map([...perSlot.slots].sort()));
  });

  it('keeps a 96-interval kWh day of an ESIID with an SMT file origin under 1 KB: one write unit', () => {
    const readings = day(
      DAY,
      96,
      { revision: 1_773_100_000, originId: 'IntervalMeterUsage20260310.csv.123456789.asc' },
      (i) => Math.round(i * 137.3) / 1000,
    );
    const size = itemSizeBytes(packedItem(readings));
    assert.ok(size < 1024, `a packed day block is ${size} bytes`);
    assert.equal(writeUnitsFor(size), 1);
    assert.ok(itemSizeBytes(perSlotItem(readings)) > 2 * 1024, 'the per-slot form of the same day is 3 write units');
  });

  it('reads the base64 string a Lambda event carries for a binary attribute like the SDK bytes', () => {
    const item = packedItem(mixedDay());
    const asEvent = { ...item, [PACKED]: { B: Buffer.from(item[PACKED]!.B!).toString('base64') as unknown as Uint8Array } };
    assert.deepEqual(decodeBlock(asEvent).slots, decodeBlock(item).slots);
  });

  it('packs no value it cannot give back exactly, no register block and no slot off the grid', () => {
    const one = (value: number) => new Map([['s0', { value, revision: 1, quality: 'actual' as const, origin: 'smt:f' }]]);
    assert.equal(packBlock(one(0.123456789012), 900), undefined, 'more decimals than the scale holds');
    assert.equal(packBlock(one(0.1 + 0.2), 900), undefined, 'a binary fraction with 17 significant digits');
    assert.equal(packBlock(one(3e9), 900), undefined, 'beyond int32');
    assert.equal(packBlock(one(0.25), 0), undefined, 'register reads');
    assert.equal(packBlock(new Map([['s450', one(1).get('s0')!]]), 900), undefined, 'off the 900 s grid');
    for (const value of [0, -2.5, 2147.483647, 123456789, 0.000000001]) {
      const bytes = packBlock(one(value), 900)!;
      assert.equal(decodeBlock({ ...base(), [PACKED]: { B: bytes } }).slots.get('s0')?.value, value, `${value}`);
    }
  });
});

describe('planBlockWrite', () => {
  const context = { blockStart: Date.parse(DAY) / 1000, now: 0 };
  const writesOf = (readings: Reading[]) => readings.map((reading) => ({ reading, slot: locate(reading, 'UTC').slot }));
  const image = (item: Record<string, AttributeValue>): DecodedBlock => decodeBlock(item);

  it('guards a small write slot by slot and on the block not being packed', () => {
    const update = planBlockWrite(writesOf(day(DAY, 4)), { kind: 'slots' }, undefined, { ...context, wholeBlock: false });
    assert.match(update.ConditionExpression, /attribute_not_exists\(#p\)/);
    assert.equal(update.ExpressionAttributeNames['#p'], 'p');
    assert.match(update.UpdateExpression, /s0 = :s0/);
  });

  it('packs a whole new day into one attribute, and keeps a small new block per slot', () => {
    const whole = planBlockWrite(writesOf(day(DAY, 96)), { kind: 'new-block' }, undefined, { ...context, wholeBlock: true });
    assert.match(whole.UpdateExpression, /#p = :p/);
    assert.doesNotMatch(whole.UpdateExpression, /\bs\d+ =/);
    assert.match(whole.ConditionExpression, /attribute_not_exists\(#ver\)/);
    const small = planBlockWrite(writesOf(day(DAY, 4)), { kind: 'new-block' }, undefined, { ...context, wholeBlock: false });
    assert.doesNotMatch(small.UpdateExpression, /#p/);
  });

  it('rewrites a per-slot block packed on its version, removing its slot and origin attributes', () => {
    const old = perSlotItem(day(DAY, 10));
    const update = planBlockWrite(writesOf(day(DAY, 96)), { kind: 'version', version: 1 }, image(old), { ...context, wholeBlock: true });
    const removed = Object.entries(update.ExpressionAttributeNames)
      .filter(([placeholder]) => placeholder.startsWith('#x'))
      .map(([, name]) => name);
    assert.deepEqual(
      removed.sort(),
      Object.keys(old)
        .filter((name) => /^(s\d+|o_)/.test(name))
        .sort(),
    );
    assert.match(update.UpdateExpression, /#p = :p .*REMOVE #x0/);
    assert.match(update.ConditionExpression, /#ver = :ver/);
  });

  it('writes a small write into a packed block back packed, and unpacks when a value would not pack', () => {
    const packed = image(packedItem(day(DAY, 96)));
    const fits = planBlockWrite(writesOf([interval({ start: DAY, revision: 2, value: 3 })]), { kind: 'version', version: 1 }, packed, {
      ...context,
      wholeBlock: false,
    });
    assert.match(fits.UpdateExpression, /#p = :p/);
    const precise = planBlockWrite(
      writesOf([interval({ start: DAY, revision: 2, value: 0.123456789012 })]),
      { kind: 'version', version: 1 },
      packed,
      {
        ...context,
        wholeBlock: false,
      },
    );
    assert.equal(precise.ExpressionAttributeNames['#x0'], 'p');
    assert.equal(precise.UpdateExpression.match(/\bs\d+ = :s\d+/g)?.length, 96, 'every reading of the block back in its slot');
    assert.deepEqual(precise.ExpressionAttributeValues[':s95'], encodeSlot(interval({ start: DAY, revision: 2, value: 0.123456789012 })));
  });

  it('keeps a register block per slot on every path', () => {
    const reads = Array.from({ length: 30 }, (_, i) => register({ at: new Date(Date.parse(DAY) + i * 60_000) }));
    const update = planBlockWrite(
      reads.map((reading) => ({ reading, slot: locate(reading, 'UTC').slot })),
      { kind: 'new-block' },
      undefined,
      { ...context, wholeBlock: true },
    );
    assert.doesNotMatch(update.UpdateExpression, /#p/);
  });
});

describe('feed on packed blocks', () => {
  it('reports only the readings a write into a packed block changed', () => {
    const before = day(DAY, 96, { revision: 10, originId: 'file-a' });
    const after = before.map((r, i) => (i >= 8 && i < 12 ? { ...r, revision: 11, value: 5, originId: 'file-b' } : r));
    const change = blockChange({
      eventName: 'MODIFY',
      dynamodb: {
        Keys: { pk: base().pk!, sk: base().sk! },
        OldImage: packedItem(before),
        NewImage: { ...packedItem(after), ver: { N: '2' } },
        SequenceNumber: '1',
      },
    });
    assert.deepEqual(
      change?.changed.map((c) => c.reading),
      after.slice(8, 12),
    );
    assert.deepEqual(
      change?.changed.map((c) => c.previous?.value),
      before.slice(8, 12).map((r) => r.value),
    );
  });
});
