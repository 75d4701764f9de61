/**
 * Would a denser block encoding bring a 96-interval kWh day under 1 KB (1 write unit), and what
 * would it cost the write rules? Item sizes by DynamoDB's billing formula (lambdas/core/item-size.ts)
 * of the same day in today's layout (one list attribute per slot, interval-block.ts) and in a
 * packed layout (values as scaled integers in one binary attribute, presence and estimate flags
 * as bitmaps, revision and origin once per run), and the requests and write units each scenario
 * takes under the guards each layout can express. docs/performance.md draws the conclusion.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { encodeSlot, locate, originHash, originOf } from '../lambdas/core/interval-block.ts';
import { itemSizeBytes, writeUnitsFor } from '../lambdas/core/item-size.ts';
import { toReading, type Reading } from '../shared/reading.ts';

const ZONE = 'America/Chicago';
const DAY = Date.parse('2026-11-22T06:00:00Z');

function day(meterId: string): Reading[] {
  return Array.from({ length: 96 }, (_, i) =>
    toReading({
      kind: 'interval',
      meterId,
      channel: 'energy.active.import',
      start: new Date(DAY + i * 900_000),
      end: new Date(DAY + (i + 1) * 900_000),
      value: Math.round(((i * 31 + 7) % 97) * 13.7) / 1000,
      unit: 'kWh',
      quality: 'actual',
      revision: 1_764_000_000,
      source: 'smt',
      originId: 'IntervalMeterUsage_20261123_0700.csv.asc',
    }),
  );
}

/** The block item as today's layout stores it after one whole-day write. */
function todaysItem(readings: Reading[]): Record<string, AttributeValue> {
  const { key, blockStart } = locate(readings[0]!, ZONE);
  const item: Record<string, AttributeValue> = {
    pk: { S: key.pk },
    sk: { S: key.sk },
    bs: { N: String(blockStart) },
    u: { S: 'kWh' },
    d: { N: '900' },
    ver: { N: '1' },
    ua: { N: '1764000000' },
    [`o_${originHash(originOf(readings[0]!))}`]: { S: originOf(readings[0]!) },
  };
  for (const reading of readings) item[locate(reading, ZONE).slot] = encodeSlot(reading);
  return item;
}

/**
 * The same day packed: `v` the values as int32 scaled by 10^`x` (kWh to the Wh), `p` and `e`
 * bitmaps of present and estimated slots, one run [first slot, revision, origin] in `r`.
 */
function packedItem(readings: Reading[]): Record<string, AttributeValue> {
  const { key, blockStart } = locate(readings[0]!, ZONE);
  const values = Buffer.alloc(readings.length * 4);
  readings.forEach((reading, i) => values.writeInt32BE(Math.round(reading.value * 1000), i * 4));
  return {
    pk: { S: key.pk },
    sk: { S: key.sk },
    bs: { N: String(blockStart) },
    u: { S: 'kWh' },
    d: { N: '900' },
    ver: { N: '1' },
    ua: { N: '1764000000' },
    x: { N: '3' },
    v: { B: values },
    p: { B: Buffer.alloc(12, 0xff) },
    e: { B: Buffer.alloc(12) },
    r: { L: [{ L: [{ N: '0' }, { N: String(readings[0]!.revision) }, { S: originOf(readings[0]!) }] }] },
  };
}

export interface EncodingFigures {
  todayBytes: number;
  packedBytes: number;
  todayUnits: number;
  packedUnits: number;
}

export function encodingFigures(): EncodingFigures {
  const readings = day('10443720004766435');
  const todayBytes = itemSizeBytes(todaysItem(readings));
  const packedBytes = itemSizeBytes(packedItem(readings));
  return { todayBytes, packedBytes, todayUnits: writeUnitsFor(todayBytes), packedUnits: writeUnitsFor(packedBytes) };
}

export function encodingLines(store: { wholeDay: number; hourly: number; single: number }): string[] {
  const f = encodingFigures();
  // A packed block has no per-slot attributes, so no write can be guarded slot by slot: a write to
  // an existing block learns it from a failed "new block" condition (billed by the returned item's
  // size) and writes on its version. Whole days stay one request when new.
  const fmt = (n: number) => n.toFixed(3);
  return [
    `A 96-interval kWh day (ESIID meter id, SMT file origin) by DynamoDB's size formula: today's layout ${f.todayBytes} B (${f.todayUnits} WU per whole-day write), packed ${f.packedBytes} B (${f.packedUnits} WU).`,
    '',
    '| scenario | today: requests / WU per reading (measured above) | packed: requests / WU per reading (by rule) |',
    '| --- | ---: | ---: |',
    `| whole-day delivery, new day | 0.010 / ${fmt(store.wholeDay)} | 0.010 / ${fmt(f.packedUnits / 96)} |`,
    `| same day re-pulled (duplicates) | 0.010 / ${fmt(store.wholeDay)} | 0.010 / ${fmt(f.packedUnits / 96)} |`,
    `| day re-delivered, later revision | 0.021 / ${fmt(store.wholeDay * 2)} | 0.021 / ${fmt((2 * f.packedUnits) / 96)} |`,
    `| four readings per write into an existing block (hourly) | 0.250 / ${fmt(store.hourly)} | 0.500 / ${fmt((2 * 1) / 4)} |`,
    `| one reading per write into an existing block | 1.000 / ${fmt(store.single)} | 2.000 / ${fmt(2)} |`,
  ];
}
