/**
 * Store figures against DynamoDB Local: requests, write units and bytes per reading for the
 * ways readings arrive, and throughput. Printed, not asserted (see docs/store.md and bench/RESULTS.md).
 */
import { ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { ReadingStore } from '../lambdas/core/reading-store.ts';
import { itemSizeBytes } from '../lambdas/core/item-size.ts';
import { mapWithConcurrency } from '../shared/concurrency.ts';
import type { IntervalReading } from '../shared/reading.ts';
import { startDynamoDbLocal } from '../test/support/dynamodb-local.ts';
import { day } from '../test/support/readings.ts';

export interface StoreFigure {
  scenario: string;
  readings: number;
  requestsPerReading: number;
  writeUnitsPerReading: number;
  readingsPerSecond: number;
}

export interface StoreBenchResult {
  figures: StoreFigure[];
  bytesPerReadingBlock: number;
  bytesPerReadingItem: number;
  dayBlockBytes: number;
}

const DAY_START = '2026-03-10T05:00:00Z'; // local midnight in Chicago (CDT)

function meterDay(meter: number, revision: number, quality: 'actual' | 'estimated' = 'actual'): IntervalReading[] {
  return day(
    DAY_START,
    96,
    { meterId: `bench-${String(meter).padStart(6, '0')}`, revision, quality, originId: `IntervalMeterUsage20260310.csv.${revision}.asc` },
    (i) => Math.round((0.1 + ((i * 37 + meter * 11) % 100) / 37) * 1000) / 1000,
  );
}

async function measure(scenario: string, batches: IntervalReading[][], store: ReadingStore, concurrency: number): Promise<StoreFigure> {
  let requests = 0;
  let writeUnits = 0;
  let readings = 0;
  const started = process.hrtime.bigint();
  await mapWithConcurrency(batches, concurrency, async (batch) => {
    const report = await store.write(batch);
    requests += report.requests;
    writeUnits += report.writeUnits;
    readings += batch.length;
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    scenario,
    readings,
    requestsPerReading: requests / readings,
    writeUnitsPerReading: writeUnits / readings,
    readingsPerSecond: readings / seconds,
  };
}

export async function runStoreBench(options: { meters?: number } = {}): Promise<StoreBenchResult> {
  const meters = options.meters ?? 200;
  const dynamo = await startDynamoDbLocal();
  try {
    const figures: StoreFigure[] = [];
    const dayTables = await dynamo.freshTables();
    const dayStore = new ReadingStore({ client: dynamo.client, tableName: dayTables.readings, blockTimeZone: 'America/Chicago' });
    const firstDays = Array.from({ length: meters }, (_, m) => meterDay(m, 1_773_100_000, 'estimated'));
    figures.push(await measure('(a) whole-day delivery, new day (SMT file)', firstDays, dayStore, 16));
    figures.push(await measure('(a) same day re-pulled (all duplicates)', firstDays, dayStore, 16));
    const revised = Array.from({ length: meters }, (_, m) => meterDay(m, 1_773_200_000));
    figures.push(await measure('(a) day re-delivered, later revision (supersedes)', revised, dayStore, 16));

    // Late corrections into days delivered whole (re-read hours): into a packed block each takes the
    // version path (a failed condition, then the write), into a per-slot one a single request.
    const corrections: IntervalReading[][] = [];
    for (let h = 0; h < 24; h += 6) for (let m = 0; m < meters; m++) corrections.push(meterDay(m, 1_773_300_000).slice(h * 4, h * 4 + 4));
    figures.push(await measure('(d) four readings per write into whole days (corrections)', corrections, dayStore, 16));

    const singleTables = await dynamo.freshTables();
    const singleStore = new ReadingStore({ client: dynamo.client, tableName: singleTables.readings, blockTimeZone: 'America/Chicago' });
    const singleMeters = Math.max(10, Math.floor(meters / 4));
    // Time order: every meter's 00:00 reading, then every meter's 00:15 reading, ... like live telemetry.
    const oneAtATime: IntervalReading[][] = [];
    const days = Array.from({ length: singleMeters }, (_, m) => meterDay(m, 0));
    for (let i = 0; i < 96; i++) for (const d of days) oneAtATime.push([d[i]!]);
    figures.push(await measure('(b) one reading per write (live telemetry)', oneAtATime, singleStore, 16));

    const hourlyTables = await dynamo.freshTables();
    const hourlyStore = new ReadingStore({ client: dynamo.client, tableName: hourlyTables.readings, blockTimeZone: 'America/Chicago' });
    const hourly: IntervalReading[][] = [];
    for (let h = 0; h < 24; h++) for (const d of days) hourly.push(d.slice(h * 4, h * 4 + 4));
    figures.push(await measure('(c) four readings per write (hourly batches)', hourly, hourlyStore, 16));

    const items = await scanAll(dynamo.client, dayTables.readings);
    const blockBytes = items.reduce((sum, item) => sum + itemSizeBytes(item), 0);
    return {
      figures,
      bytesPerReadingBlock: blockBytes / (items.length * 96),
      dayBlockBytes: blockBytes / items.length,
      bytesPerReadingItem: oneItemPerReadingBytes(),
    };
  } finally {
    await dynamo.stop();
  }
}

/**
 * What the naive layout (one item per reading) would store for the same reading, for comparison:
 * kept as lean as that layout allows (epoch-second sort key, one-letter names, no origin).
 */
function oneItemPerReadingBytes(): number {
  return (
    itemSizeBytes({
      pk: { S: '10443720004766435#energy.active.import' },
      sk: { N: '1773120600' },
      v: { N: '0.731' },
      r: { N: '1773200000' },
      q: { S: 'A' },
    }) + 100
  ); // DynamoDB's per-item overhead for storage billing
}

async function scanAll(client: import('@aws-sdk/client-dynamodb').DynamoDBClient, table: string): Promise<Record<string, AttributeValue>[]> {
  const items: Record<string, AttributeValue>[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
    items.push(...(page.Items ?? []));
    start = page.LastEvaluatedKey;
  } while (start);
  return items;
}
