/**
 * `npm run bench`: runs every benchmark, prints one table and writes it to bench/RESULTS.md.
 * Figures are measured on this machine against local stand-ins; prices are list prices (see
 * PRICES) multiplied by what was counted.
 */
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { runIotBench } from './iot.bench.ts';
import { runStoreBench } from './store.bench.ts';
import { readyBench } from './ready.bench.ts';
import { gatewayBench } from './gateway.bench.ts';
import { smtBench } from './smt.bench.ts';
import { readingsOutBench } from './readings-out.bench.ts';
import type { BenchSection } from './section.ts';
import { costModel, costTable } from './cost.ts';
import { runFloorBench } from './floor.bench.ts';
import { encodingLines } from './encoding.bench.ts';
import { throughputBench } from './throughput.bench.ts';
import { latencyBench } from './latency.bench.ts';

/**
 * Benchmarks of the ingestion paths, each a module exporting a BenchSection (see section.ts).
 * Each prints its own markdown (figures, and the figures it is compared against) after the store
 * and IoT sections below. Add a path's benchmark here.
 */
const SECTIONS: BenchSection[] = [throughputBench, readyBench, gatewayBench, smtBench, readingsOutBench, latencyBench];

/** us-east-1 list prices, as read on 2026-11-23 from docs/design.md §7 (re-check before quoting). */
const PRICES = {
  dynamoWriteUnitPerMillion: 0.625,
  dynamoStorageGbMonth: 0.25,
};
const READINGS_PER_METER_YEAR = 96 * 365;
/** Each stored item carries ~100 bytes of overhead in DynamoDB's storage billing. */
const ITEM_OVERHEAD = 100;

const fmt = (value: number, digits = 2) => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function main(): Promise<void> {
  const meters = Number(process.env.BENCH_METERS ?? 200);
  const store = await runStoreBench({ meters });
  const lines: string[] = [];
  lines.push('# meterbridge bench results', '');
  lines.push(
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${fmt(totalmem() / 2 ** 30, 0)} GiB, Node ${process.version}. Date: ${new Date().toISOString().slice(0, 10)}.`,
  );
  lines.push(
    'Store: DynamoDB Local (official jar) on loopback; write units as DynamoDB reports them (estimated from item size for failed conditions).',
    '',
  );
  lines.push('## Reading store', '');
  lines.push('| scenario | readings | requests / reading | write units / reading | $ per million readings (writes) | readings/s (DynamoDB Local) |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const f of store.figures) {
    lines.push(
      `| ${f.scenario} | ${f.readings} | ${fmt(f.requestsPerReading, 3)} | ${fmt(f.writeUnitsPerReading, 3)} | ${fmt(f.writeUnitsPerReading * PRICES.dynamoWriteUnitPerMillion, 3)} | ${fmt(f.readingsPerSecond, 0)} |`,
    );
  }
  const perReadingBlock = store.bytesPerReadingBlock + ITEM_OVERHEAD / 96;
  const storageYear = (bytes: number) => ((bytes * READINGS_PER_METER_YEAR) / 2 ** 30) * PRICES.dynamoStorageGbMonth * 12;
  lines.push('');
  lines.push('| storage | bytes / reading (incl. item overhead) | $ per meter-year stored (1 year of 15-min data kept 12 months) |');
  lines.push('| --- | ---: | ---: |');
  lines.push(
    `| interval block (one item per meter, channel, day; day block ${fmt(store.dayBlockBytes, 0)} B) | ${fmt(perReadingBlock, 1)} | ${fmt(storageYear(perReadingBlock), 5)} |`,
  );
  lines.push(`| one item per reading (for comparison) | ${fmt(store.bytesPerReadingItem, 1)} | ${fmt(storageYear(store.bytesPerReadingItem), 5)} |`);
  const day = store.figures[0]!;
  const single = store.figures.find((f) => f.scenario.startsWith('(b)'))!;
  lines.push('');
  lines.push(
    `At 1,000,000 meters of 15-minute data (35.04 billion readings a year): whole-day deliveries cost ` +
      `$${fmt(35.04e3 * day.writeUnitsPerReading * PRICES.dynamoWriteUnitPerMillion, 0)} a year in writes; ` +
      `one reading per write costs $${fmt(35.04e3 * single.writeUnitsPerReading * PRICES.dynamoWriteUnitPerMillion, 0)} ` +
      `(one item per reading: $${fmt(35.04e3 * 1 * PRICES.dynamoWriteUnitPerMillion, 0)}).`,
  );
  const iot = await runIotBench();
  lines.push('', '## IoT ingest', '');
  lines.push('| figure | value |', '| --- | ---: |');
  lines.push(`| CPU per reading, decode + validate + block encoding (interval blocks of 96) | ${fmt(iot.cpuMicrosPerReadingBlocks, 1)} µs |`);
  lines.push(`| CPU per reading, same for flat readings (one per meter per message) | ${fmt(iot.cpuMicrosPerReadingFlat, 1)} µs |`);
  lines.push(`| write units per reading, one reading per meter per message | ${fmt(iot.writeUnitsPerReadingOnePerMessage, 3)} |`);
  lines.push(`| write units per reading, 96-interval block per meter per message | ${fmt(iot.writeUnitsPerReadingBlockOf96, 3)} |`);
  lines.push(`| bytes of a one-meter 96-interval block message (JSON) | ${iot.messageBytesBlockOf96} |`);
  lines.push('', '## Ingest CPU against the floor (shipped bundles)', '');
  lines.push(
    "The Lambda bundles `cdk synth` produces, on Node 22 with the template's environment, every AWS call answered by a null loopback endpoint " +
      '(bench/null-endpoint.mjs, its own process). Floor, measured in the same process on the same events: JSON.parse of the payloads plus one plain ' +
      'UpdateItem per block carrying its values, through the same SDK to the same endpoint. CPU = user + system of the process (the SDK, logging and GC included).',
    '',
  );
  lines.push(
    '| source | events | readings | bundle µs / reading | floor µs / reading | ratio | goal |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const f of await runFloorBench()) {
    const ratio = f.handlerMicrosPerReading / f.floorMicrosPerReading;
    lines.push(
      `| ${f.source} | ${f.shape} | ${f.readings.toLocaleString('en-US')} | ${fmt(f.handlerMicrosPerReading, 1)} | ${fmt(f.floorMicrosPerReading, 1)} | ${fmt(ratio, 2)}x | ≤ ${f.goal}x ${ratio <= f.goal ? '(met)' : '(not met)'} |`,
    );
  }
  lines.push('', '## Denser block encoding', '');
  lines.push(
    ...encodingLines({
      wholeDay: day.writeUnitsPerReading,
      hourly: store.figures.find((f) => f.scenario.startsWith('(c)'))!.writeUnitsPerReading,
      single: single.writeUnitsPerReading,
    }),
  );
  for (const section of SECTIONS) {
    process.stderr.write(`bench: ${section.title}...\n`);
    lines.push('', `## ${section.title}`, '', ...(await section.run()));
  }
  const hourly = store.figures.find((f) => f.scenario.startsWith('(c)'))!;
  const costInputs = {
    writeUnitsPerReadingWholeDay: day.writeUnitsPerReading,
    writeUnitsPerReadingHourly: hourly.writeUnitsPerReading,
    storedBytesPerReading: store.bytesPerReadingBlock,
    iotCpuMicrosPerReading: iot.cpuMicrosPerReadingBlocks,
    // From the READY and SMT sections' figures of 2026-11-23 (they print their own, above).
    readyCpuMsPerDelivery: 1.2,
    readyReadingsPerDelivery: 50,
    // Conservative: measured before the byte parser and native dearmor (53 MB/s). The process
    // step decrypts once and parses twice: now ~75 MB/s (5.7 s + 2 x 3.8 s per GB, see above).
    smtMegabytesPerSecond: 53,
    // A CSV row (~75 B) per reading, armored (x 4/3), before gpg's compression: an upper bound.
    smtArmoredBytesPerReading: 100,
  };
  lines.push('', '## Cost model', '', ...costTable(costModel(costInputs), costInputs));
  const text = `${lines.join('\n')}\n`;
  process.stdout.write(text);
  writeFileSync(new URL('./RESULTS.md', import.meta.url), text);
}

await main();
