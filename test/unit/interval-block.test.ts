import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildBlockUpdate,
  classify,
  decodeBlock,
  encodeSlot,
  gridProblems,
  initialGuard,
  locate,
  MAX_SLOT_GUARDS,
  roundsOfDistinctSlots,
  type StoredValue,
} from '../../lambdas/core/interval-block.ts';
import { itemSizeBytes, writeUnitsFor } from '../../lambdas/core/item-size.ts';
import { day, interval, register } from '../support/readings.ts';

const stored = (overrides: Partial<StoredValue> = {}): StoredValue => ({
  value: 0.25,
  revision: 1,
  quality: 'actual',
  unit: 'kWh',
  durationSeconds: 900,
  ...overrides,
});

/** DynamoDB counts comparators, functions and logical operators towards its 300-operator limit. */
function operatorCount(expression: string): number {
  return (expression.match(/\b(AND|OR|NOT)\b|attribute_not_exists|attribute_exists|if_not_exists|<>|<=|>=|[<>=]/g) ?? []).length;
}

const block = { unit: 'kWh', durationSeconds: 900 } as const;

describe('classify', () => {
  it('stores a new identity', () => assert.equal(classify(interval(), undefined, {}), 'stored'));
  it('calls the same revision and value a duplicate', () => assert.equal(classify(interval(), stored(), block), 'duplicate'));
  it('lets a higher revision supersede', () => assert.equal(classify(interval({ revision: 2, value: 9 }), stored(), block), 'superseded'));
  it('calls a lower revision stale', () => assert.equal(classify(interval({ revision: 0 }), stored(), block), 'stale'));
  it('calls the same revision with another value a conflict', () => assert.equal(classify(interval({ value: 0.3 }), stored(), block), 'conflict'));
  it('ranks an actual above an estimate of the same revision', () => {
    assert.equal(classify(interval({ value: 0.3 }), stored({ quality: 'estimated' }), block), 'superseded');
    assert.equal(classify(interval({ quality: 'estimated' }), stored(), block), 'stale');
  });
  it('calls another unit than the block holds a conflict, even for a new slot', () =>
    assert.equal(classify(interval({ unit: 'Wh' }), undefined, block), 'conflict'));
  it('calls another interval length than the block holds a conflict', () => {
    assert.equal(classify(interval({ minutes: 30 }), undefined, block), 'conflict');
    assert.equal(classify(register({ unit: 'kWh' }), undefined, block), 'conflict');
  });
});

describe('locate', () => {
  it('derives block and slot from the identity only', () => {
    const a = locate(interval({ start: '2026-03-10T06:15:00Z', revision: 1, originId: 'a' }), 'UTC');
    const b = locate(interval({ start: '2026-03-10T06:15:00Z', revision: 9, originId: 'b', value: 7 }), 'UTC');
    assert.deepEqual(a, b);
    assert.deepEqual(a, {
      key: { pk: '10443720004766435#energy.active.import', sk: '2026-03-10' },
      blockStart: Date.parse('2026-03-10T00:00:00Z') / 1000,
      slot: 's22500',
    });
  });

  it('cuts blocks at local midnight in the block zone', () => {
    // 2026-03-10 is a CDT day: local midnight is 05:00Z.
    const before = locate(interval({ start: '2026-03-10T04:45:00Z' }), 'America/Chicago');
    const after = locate(interval({ start: '2026-03-10T05:00:00Z' }), 'America/Chicago');
    assert.equal(before.key.sk, '2026-03-09');
    assert.equal(after.key.sk, '2026-03-10');
    assert.equal(after.slot, 's0');
  });
});

describe('slot encoding', () => {
  it('round-trips a slot through decodeBlock, origin included', () => {
    const reading = interval({ quality: 'estimated', value: 1.234, revision: 1732300000, originId: 'file-a' });
    const { slot } = locate(reading, 'UTC');
    const update = buildBlockUpdate([{ reading, slot }], { kind: 'slots' }, { blockStart: 0, now: 0 });
    const originName = Object.entries(update.ExpressionAttributeNames).find(([, name]) => name.startsWith('o_'))![1];
    const decoded = decodeBlock({
      pk: { S: 'p' },
      sk: { S: 's' },
      u: { S: 'kWh' },
      d: { N: '900' },
      ver: { N: '1' },
      bs: { N: '0' },
      [slot]: encodeSlot(reading),
      [originName]: { S: 'smt:file-a' },
    });
    assert.deepEqual(decoded.slots.get(slot), {
      value: 1.234,
      revision: 1732300000,
      quality: 'estimated',
      unit: 'kWh',
      durationSeconds: 900,
      origin: 'smt:file-a',
    });
  });

  it('keeps an actual without a quality flag and an estimate with one', () => {
    assert.equal(encodeSlot(register()).L?.length, 3);
    assert.equal(encodeSlot(register({ quality: 'estimated' })).L?.length, 4);
  });

  it('keeps a full 96-interval day within 3 KB (3 write units)', () => {
    const readings = day('2026-03-10T00:00:00Z', 96, { revision: 1732300000 }, (i) => Math.round(i * 137.3) / 1000);
    const item: Record<string, import('@aws-sdk/client-dynamodb').AttributeValue> = {
      pk: { S: '10443720004766435#energy.active.import' },
      sk: { S: '2026-03-10' },
      bs: { N: '1773100800' },
      u: { S: 'kWh' },
      d: { N: '900' },
      ver: { N: '1' },
      ua: { N: '1773100800' },
      o_abcdef: { S: 'smt:IntervalMeterUsage20260310.csv.123456789.asc' },
    };
    for (const reading of readings) item[locate(reading, 'UTC').slot] = encodeSlot(reading);
    const size = itemSizeBytes(item);
    assert.ok(size < 3 * 1024, `a day block is ${size} bytes`);
    assert.equal(writeUnitsFor(size), 3);
  });
});

describe('buildBlockUpdate', () => {
  it('guards each slot of a small write, within DynamoDB expression limits', () => {
    const writes = day('2026-03-10T00:00:00Z', MAX_SLOT_GUARDS).map((reading) => ({ reading, slot: locate(reading, 'UTC').slot }));
    assert.deepEqual(initialGuard(writes), { kind: 'slots' });
    const update = buildBlockUpdate(writes, initialGuard(writes), { blockStart: 0, now: 0 });
    assert.ok(operatorCount(update.ConditionExpression) <= 300, `condition has ${operatorCount(update.ConditionExpression)} operators`);
    assert.ok(update.ConditionExpression.length <= 4096);
    assert.match(update.ConditionExpression, /\(attribute_not_exists\(s0\) OR s0\[1\] < :r0 OR \(s0\[1\] = :r0 AND attribute_exists\(s0\[3\]\)\)\)/);
  });

  it('guards a whole day on the block not existing, and a retry on the version seen', () => {
    const writes = day('2026-03-10T00:00:00Z', 96).map((reading) => ({ reading, slot: locate(reading, 'UTC').slot }));
    assert.deepEqual(initialGuard(writes), { kind: 'new-block' });
    const fresh = buildBlockUpdate(writes, { kind: 'new-block' }, { blockStart: 0, now: 0 });
    const retry = buildBlockUpdate(writes, { kind: 'version', version: 4 }, { blockStart: 0, now: 0 });
    assert.match(fresh.ConditionExpression, /attribute_not_exists\(#ver\)/);
    assert.match(retry.ConditionExpression, /#ver = :ver/);
    assert.deepEqual(retry.ExpressionAttributeValues[':ver'], { N: '4' });
    for (const update of [fresh, retry]) {
      assert.ok(update.UpdateExpression.length <= 4096, `update expression is ${update.UpdateExpression.length} bytes`);
      assert.ok(operatorCount(update.UpdateExpression) <= 300);
    }
  });

  it('declares only placeholders its expressions use (DynamoDB rejects the others)', () => {
    const estimated = interval({ quality: 'estimated' });
    const update = buildBlockUpdate([{ reading: estimated, slot: 's0' }], { kind: 'slots' }, { blockStart: 0, now: 0 });
    const text = `${update.UpdateExpression} ${update.ConditionExpression}`;
    for (const placeholder of [...Object.keys(update.ExpressionAttributeNames), ...Object.keys(update.ExpressionAttributeValues)]) {
      assert.ok(text.includes(placeholder), `${placeholder} is declared but unused`);
    }
    assert.doesNotMatch(update.ConditionExpression, /attribute_exists\(s0\[3\]\)/, 'an estimate never replaces at the same revision');
  });
});

describe('roundsOfDistinctSlots', () => {
  it('puts a repeated identity, another unit and another interval length into later rounds, keeping order', () => {
    const a = { reading: interval(), slot: 's0' };
    const b = { reading: interval({ value: 2 }), slot: 's0' };
    const c = { reading: interval({ start: '2026-03-10T06:15:00Z' }), slot: 's900' };
    const d = { reading: interval({ unit: 'Wh', start: '2026-03-10T06:30:00Z' }), slot: 's1800' };
    const e = { reading: interval({ minutes: 30, start: '2026-03-10T07:00:00Z' }), slot: 's3600' };
    assert.deepEqual(roundsOfDistinctSlots([a, b, c, d, e]), [[a, c], [b], [d], [e]]);
  });
});

describe('gridProblems', () => {
  const zone = 'America/Chicago';
  it('accepts intervals a whole number of intervals after local midnight, of one length and unit per day', () => {
    // 05:00Z is local midnight in Chicago on 2026-03-10 (CDT since 2026-03-08).
    assert.deepEqual(
      gridProblems(
        [
          interval({ start: '2026-03-10T05:00:00Z' }),
          interval({ start: '2026-03-10T05:15:00Z' }),
          interval({ start: '2026-03-11T06:00:00Z', minutes: 60 }),
        ],
        zone,
      ),
      [],
    );
  });

  it('refuses a 15-minute interval starting at 10:07, naming how far off the grid it is', () => {
    const problems = gridProblems([interval({ start: '2026-03-10T10:00:00Z' }), interval({ start: '2026-03-10T10:07:00Z' })], zone);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /2026-03-10T10:07:00\.000Z: a 900 s interval 420 s off its day's grid/);
  });

  it('refuses an interval running past its local day, and two lengths or units in one day block', () => {
    // 2026-03-08 has 23 hours in Chicago: a 24-hour interval from its midnight ends in the next day.
    assert.match(gridProblems([interval({ start: '2026-03-08T06:00:00Z', minutes: 1440 })], zone)[0]!, /runs past the end of its day 2026-03-08/);
    assert.deepEqual(gridProblems([interval({ start: '2026-03-10T05:00:00Z', minutes: 1440 })], zone), []);
    assert.match(
      gridProblems([interval({ start: '2026-03-10T10:00:00Z' }), interval({ start: '2026-03-10T12:00:00Z', minutes: 60 })], zone)[0]!,
      /interval length 3600 s differs from the block's 900 s .*in the same message/,
    );
    assert.match(
      gridProblems([interval({ start: '2026-03-10T10:00:00Z' }), interval({ start: '2026-03-10T12:00:00Z', unit: 'Wh' })], zone)[0]!,
      /unit Wh differs/,
    );
    assert.deepEqual(gridProblems([register({ at: '2026-03-10T10:07:13Z' })], zone), []);
  });
});
