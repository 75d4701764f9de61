/**
 * The size of a 96-interval kWh day block in the store's two forms, by DynamoDB's billing formula
 * (lambdas/core/item-size.ts): one list attribute per slot (small writes into an unpacked block)
 * and the packed form whole-block writes produce (interval-block.ts packBlock: values as scaled
 * int32 in one binary attribute, presence and estimate bitmaps, revision and origin once per run).
 * The requests and write units per scenario are measured by bench/store.bench.ts on DynamoDB Local;
 * docs/performance.md has the before/after.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { encodeSlot, locate, originHash, originOf, PACKED, packBlock } from '../lambdas/core/interval-block.ts';
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

/** The block item in the per-slot form (how every block was stored before the packed form). */
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

/** The same day as the store packs it when written whole (interval-block.ts packBlock). */
function packedItem(readings: Reading[]): Record<string, AttributeValue> {
  const { key, blockStart } = locate(readings[0]!, ZONE);
  const slots = new Map(
    readings.map((r) => [locate(r, ZONE).slot, { value: r.value, revision: r.revision, quality: r.quality, origin: originOf(r) }] as const),
  );
  const packed = packBlock(slots, 900);
  if (!packed) throw new Error('the bench day does not pack exactly');
  return {
    pk: { S: key.pk },
    sk: { S: key.sk },
    bs: { N: String(blockStart) },
    u: { S: 'kWh' },
    d: { N: '900' },
    ver: { N: '1' },
    ua: { N: '1764000000' },
    [PACKED]: { B: packed },
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

/** The encoding's sizes; the store's requests and write units per scenario are measured in the store section (bench/store.bench.ts). */
export function encodingLines(store: { wholeDay: number; hourly: number; single: number }): string[] {
  const f = encodingFigures();
  const fmt = (n: number) => n.toFixed(4);
  return [
    `A 96-interval kWh day (ESIID meter id, SMT file origin) by DynamoDB's size formula: per-slot form ${f.todayBytes} B (${f.todayUnits} WU per whole-day write), packed form ${f.packedBytes} B (${f.packedUnits} WU).`,
    `The store writes whole days packed and small writes into unpacked blocks per slot (docs/performance.md): measured above, whole-day delivery ${fmt(store.wholeDay)} WU per reading ` +
      `(floor 1/96 = 0.0104), four readings per write ${fmt(store.hourly)}, one reading per write ${fmt(store.single)}.`,
  ];
}
