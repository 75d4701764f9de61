/**
 * Readings out (issue 13): what the meter catalog adds to the store's write cost, and export
 * throughput of a year of one meter in each format. Against DynamoDB Local; printed, not asserted.
 * Run alone: `npx tsx bench/readings-out.bench.ts` (BENCH_METERS, default 40).
 */
import { fileURLToPath } from 'node:url';
import { readingsEspi } from '../lambdas/core/query/espi.ts';
import { readingsCsv, readingsJson } from '../lambdas/core/query/formats.ts';
import { ReadingsQuery } from '../lambdas/core/query/readings-query.ts';
import { ReadingStore, type WriteReport } from '../lambdas/core/reading-store.ts';
import { CLI_LIMITS } from '../bin/commands/readings.ts';
import { addDays, startOfLocalDay } from '../lambdas/core/time.ts';
import { mapWithConcurrency } from '../shared/concurrency.ts';
import type { IntervalReading, Reading } from '../shared/reading.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../test/support/dynamodb-local.ts';
import { day } from '../test/support/readings.ts';
import type { BenchSection } from './section.ts';

const ZONE = 'America/Chicago';
const DAY_MS = 86_400_000;
/** Local midnight in Chicago (CST) of 2026-01-01 plus n days (DST days are cut by count below). */
const FIRST_DAY = Date.parse('2026-01-01T06:00:00Z');

/** One meter's local day n of 2026 in Chicago, with its real interval count (92/96/100). */
function meterDay(meter: string, n: number): IntervalReading[] {
  const date = addDays('2026-01-01', n);
  const midnight = startOfLocalDay(date, ZONE).getTime();
  const next = startOfLocalDay(addDays(date, 1), ZONE).getTime();
  return day(
    new Date(midnight).toISOString(),
    (next - midnight) / 900_000,
    { meterId: meter, revision: 1, originId: `IntervalMeterUsage-${n}.csv` },
    (i) => Math.round((0.1 + ((i * 37 + n * 11) % 100) / 37) * 1000) / 1000,
  );
}

interface Cost {
  scenario: string;
  readings: number;
  block: number;
  catalogWrites: number;
  catalogReads: number;
}

async function measure(scenario: string, batches: IntervalReading[][], store: () => ReadingStore): Promise<Cost> {
  const cost: Cost = { scenario, readings: 0, block: 0, catalogWrites: 0, catalogReads: 0 };
  await mapWithConcurrency(batches, 8, async (batch) => {
    const report: WriteReport = await store().write(batch);
    cost.readings += batch.length;
    cost.block += report.writeUnits;
    cost.catalogWrites += report.catalog.writeUnits;
    cost.catalogReads += report.catalog.readUnits;
  });
  return cost;
}

async function catalogOverhead(dynamo: LocalDynamo, meters: number): Promise<Cost[]> {
  const costs: Cost[] = [];
  const ids = Array.from({ length: meters }, (_, m) => `bench-${String(m).padStart(6, '0')}`);

  const table = (await dynamo.freshTables()).readings;
  const warm = new ReadingStore({ client: dynamo.client, tableName: table, blockTimeZone: ZONE });
  costs.push(
    await measure(
      '(a) whole-day delivery, first day of new meters (catalog entry created)',
      ids.map((id) => meterDay(id, 0)),
      () => warm,
    ),
  );
  const days = (from: number, to: number) => Array.from({ length: to - from }, (_, d) => ids.map((id) => meterDay(id, from + d))).flat();
  costs.push(await measure('(a) whole-day delivery, the next 30 days (steady state, warm process)', days(1, 31), () => warm));
  costs.push(
    await measure(
      '(a) whole-day delivery, 30 more days, cold cache per delivery (a new process each time)',
      days(31, 61),
      () => new ReadingStore({ client: dynamo.client, tableName: table, blockTimeZone: ZONE }),
    ),
  );
  costs.push(await measure('(a) same days re-pulled (all duplicates, warm)', days(31, 61), () => warm));

  const liveTable = (await dynamo.freshTables()).readings;
  const live = new ReadingStore({ client: dynamo.client, tableName: liveTable, blockTimeZone: ZONE });
  const liveIds = ids.slice(0, Math.max(5, Math.floor(meters / 4)));
  const liveDays = liveIds.map((id) => meterDay(id, 40));
  const single: IntervalReading[][] = [];
  for (let i = 0; i < 96; i++) for (const d of liveDays) single.push([d[i]!]);
  costs.push(await measure('(b) one reading per write (live telemetry, first day)', single, () => live));
  const hourlyTable = (await dynamo.freshTables()).readings;
  const hourlyStore = new ReadingStore({ client: dynamo.client, tableName: hourlyTable, blockTimeZone: ZONE });
  const hourly: IntervalReading[][] = [];
  for (let h = 0; h < 24; h++) for (const d of liveDays) hourly.push(d.slice(h * 4, h * 4 + 4));
  costs.push(await measure('(c) four readings per write (hourly batches, first day)', hourly, () => hourlyStore));
  return costs;
}

interface Throughput {
  format: string;
  readings: number;
  formatPerSecond: number;
  endToEndPerSecond: number;
  bytes: number;
}

async function exportThroughput(dynamo: LocalDynamo): Promise<{ readSeconds: number; figures: Throughput[] }> {
  const table = (await dynamo.freshTables()).readings;
  const store = new ReadingStore({ client: dynamo.client, tableName: table, blockTimeZone: ZONE });
  const year = Array.from({ length: 365 }, (_, n) => meterDay('bench-year', n));
  await mapWithConcurrency(year, 8, (d) => store.write(d));
  const core = new ReadingsQuery(store, CLI_LIMITS);
  const from = new Date(FIRST_DAY - DAY_MS);
  const to = new Date(FIRST_DAY + 366 * DAY_MS);

  const started = process.hrtime.bigint();
  const readings: Reading[] = [];
  let cursor: string | undefined;
  do {
    const page = await core.readings({ meterId: 'bench-year', from, to, ...(cursor ? { cursor } : {}) });
    readings.push(...page.readings);
    cursor = page.nextCursor;
  } while (cursor);
  const readSeconds = Number(process.hrtime.bigint() - started) / 1e9;

  const formats: Array<[string, () => string]> = [
    ['json', () => readingsJson({ meterId: 'bench-year', from, to, readings })],
    ['csv', () => readingsCsv(readings)],
    ['espi (Green Button)', () => readingsEspi('bench-year', readings, { timeZone: ZONE, generatedAt: new Date() })],
  ];
  const figures: Throughput[] = [];
  for (const [format, render] of formats) {
    render(); // warm-up
    const t0 = process.hrtime.bigint();
    const text = render();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    figures.push({
      format,
      readings: readings.length,
      formatPerSecond: readings.length / seconds,
      endToEndPerSecond: readings.length / (seconds + readSeconds),
      bytes: Buffer.byteLength(text),
    });
  }
  return { readSeconds, figures };
}

const fmt = (value: number, digits = 2) => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

export const readingsOutBench: BenchSection = {
  title: 'Readings out (meter catalog, export)',
  async run() {
    const meters = Number(process.env.BENCH_METERS ?? 40);
    const dynamo = await startDynamoDbLocal();
    try {
      const costs = await catalogOverhead(dynamo, meters);
      const { readSeconds, figures } = await exportThroughput(dynamo);
      const lines = [
        `Meter catalog overhead (${meters} meters, America/Chicago days). Write units as DynamoDB Local reports them (failed conditions estimated from size); catalog reads are eventually consistent GetItems on a cache miss.`,
        '',
        '| scenario | readings | block write units / reading | catalog write units / reading | catalog overhead (write units) | catalog read units / reading |',
        '| --- | ---: | ---: | ---: | ---: | ---: |',
        ...costs.map(
          (c) =>
            `| ${c.scenario} | ${c.readings} | ${fmt(c.block / c.readings, 4)} | ${fmt(c.catalogWrites / c.readings, 4)} | ${fmt((100 * c.catalogWrites) / c.block, 1)} % | ${fmt(c.catalogReads / c.readings, 4)} |`,
        ),
        '',
        `Export of one meter's year of 15-minute data (${figures[0]?.readings ?? 0} readings). Store read through the query core (pages of 50,000): ${fmt(readSeconds, 2)} s = ${fmt((figures[0]?.readings ?? 0) / readSeconds, 0)} readings/s.`,
        '',
        '| format | readings/s (formatting) | readings/s (store read + formatting) | bytes | bytes / reading |',
        '| --- | ---: | ---: | ---: | ---: |',
        ...figures.map(
          (f) => `| ${f.format} | ${fmt(f.formatPerSecond, 0)} | ${fmt(f.endToEndPerSecond, 0)} | ${f.bytes} | ${fmt(f.bytes / f.readings, 1)} |`,
        ),
      ];
      return lines;
    } finally {
      await dynamo.stop();
    }
  },
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const lines = await readingsOutBench.run();
  process.stdout.write(`## ${readingsOutBench.title}\n\n${lines.join('\n')}\n`);
}
