/**
 * The cost model of bench/RESULTS.md: list prices times what one reading costs in requests, write
 * units, Lambda GB-seconds, IoT rule actions and storage, per source, at 15-minute data.
 *
 * Measured inputs (write units per reading, CPU per reading) come from the benchmarks of the same
 * run; the shape of the traffic (meters per gateway, readings per delivery, ESIIDs per file) and
 * the I/O time per DynamoDB request are assumptions, listed with the table so they can be argued.
 */

/** us-east-1 list prices as in docs/design.md §7, read on 2026-11-23 (re-check before quoting). */
export const PRICES = {
  readDate: '2026-11-23',
  dynamoWriteUnit: 0.625e-6,
  dynamoStorageGbMonth: 0.25,
  iotRuleTriggered: 0.15e-6,
  iotRuleAction: 0.15e-6,
  iotConnectionMinute: 0.08e-6,
  sqsRequest: 0.4e-6,
  lambdaGbSecond: 0.0000133334,
  lambdaRequest: 0.2e-6,
  putMetricDataRequest: 0.01e-3,
  s3GbMonth: 0.023,
  s3Put: 0.005e-3,
  apiGatewayRequest: 3.5e-6,
  // Readings out (docs/readings-feed.md), list prices read on the same date.
  eventBridgeEvent: 1.0e-6,
  firehoseIngestGb: 0.029,
  firehoseFormatConversionGb: 0.018,
  firehoseDynamicPartitioningGb: 0.02,
  athenaScannedTb: 5,
} as const;

export const READINGS_PER_METER_YEAR = 96 * 365;
/** Assumed Lambda wall time per DynamoDB request (in-region p50 is a few ms; writes run 16 at a time, so this is per request, not per reading). */
const MS_PER_DYNAMO_REQUEST = 8;
/** DynamoDB bills ~100 bytes of overhead per item. */
const ITEM_OVERHEAD = 100;
const GB = 2 ** 30;

export interface CostInputs {
  /** Write units per reading for whole days (SMT) and for hourly blocks of 4 (gateways, READY). */
  writeUnitsPerReadingWholeDay: number;
  writeUnitsPerReadingHourly: number;
  /** Stored bytes per reading in a day block. */
  storedBytesPerReading: number;
  /** IoT ingest CPU per reading (block messages), µs. */
  iotCpuMicrosPerReading: number;
  /** READY mapping CPU per delivery, ms, and readings per delivery. */
  readyCpuMsPerDelivery: number;
  readyReadingsPerDelivery: number;
  /** SMT decrypt+parse throughput of armored input, MB/s, and armored bytes per reading. */
  smtMegabytesPerSecond: number;
  smtArmoredBytesPerReading: number;
}

export interface CostLine {
  item: string;
  perMillion: number;
}

export interface SourceCost {
  source: string;
  shape: string;
  lines: CostLine[];
  perMillion: number;
  perMeterYear: number;
}

function total(source: string, shape: string, lines: CostLine[]): SourceCost {
  const perMillion = lines.reduce((sum, line) => sum + line.perMillion, 0);
  return { source, shape, lines, perMillion, perMeterYear: (perMillion * READINGS_PER_METER_YEAR) / 1e6 };
}

/** Storage kept for 12 months, per reading: bytes x GB-month price x 12. */
const storageYear = (bytes: number, gbMonth: number) => (bytes / GB) * gbMonth * 12;

export function costModel(input: CostInputs): SourceCost[] {
  const M = 1e6;
  const dynamoStorage = storageYear(input.storedBytesPerReading + ITEM_OVERHEAD / 96, PRICES.dynamoStorageGbMonth);

  // Gateways: 100 meters each, one message an hour with 4 intervals per meter (400 readings),
  // Lambda batches of 50 messages, one connection per gateway all year.
  const iotReadingsPerMessage = 400;
  const iotMessagesPerBatch = 50;
  const iotWritesPerMessage = 100 + 3; // one block write per meter, ledger claim + complete, sequence
  const iotSeconds = (input.iotCpuMicrosPerReading * iotReadingsPerMessage) / 1e6 + (iotWritesPerMessage * MS_PER_DYNAMO_REQUEST) / 1000 / 16;
  const iot = total('IoT gateways', '100 meters per gateway, hourly messages of 4 intervals per meter (400 readings), Lambda batches of 50', [
    { item: 'DynamoDB writes (readings)', perMillion: M * input.writeUnitsPerReadingHourly * PRICES.dynamoWriteUnit },
    { item: 'DynamoDB writes (ledger, sequence)', perMillion: (M / iotReadingsPerMessage) * 3 * PRICES.dynamoWriteUnit },
    {
      item: 'IoT rule triggered + 1 action (Basic Ingest: no messaging charge)',
      perMillion: (M / iotReadingsPerMessage) * (PRICES.iotRuleTriggered + PRICES.iotRuleAction),
    },
    {
      item: 'IoT connectivity (1 connection per gateway, all year)',
      perMillion: (M / (100 * READINGS_PER_METER_YEAR)) * 525_600 * PRICES.iotConnectionMinute,
    },
    {
      item: 'SQS (send by the rule; receive + delete per batch)',
      perMillion: (M / iotReadingsPerMessage) * (1 + 2 / iotMessagesPerBatch) * PRICES.sqsRequest,
    },
    {
      item: 'Lambda (256 MB; requests + GB-seconds)',
      perMillion: (M / iotReadingsPerMessage) * (PRICES.lambdaRequest / iotMessagesPerBatch + 0.25 * iotSeconds * PRICES.lambdaGbSecond),
    },
    {
      item: 'CloudWatch PutMetricData (1 per invocation)',
      perMillion: (M / (iotReadingsPerMessage * iotMessagesPerBatch)) * PRICES.putMetricDataRequest,
    },
    { item: 'DynamoDB storage, 12 months', perMillion: M * dynamoStorage },
  ]);

  // SMT: one daily file of 10,000 ESIIDs (960,000 readings), processed by one 1769 MB Lambda.
  const smtReadingsPerFile = 10_000 * 96;
  const smtSecondsPerReading = input.smtArmoredBytesPerReading / (input.smtMegabytesPerSecond * 1e6) + MS_PER_DYNAMO_REQUEST / 1000 / 96 / 16;
  const smt = total('SMT files', 'a daily file of 10,000 ESIIDs (960,000 readings), armored PGP, archived 12 months in S3 Standard', [
    { item: 'DynamoDB writes (whole days)', perMillion: M * input.writeUnitsPerReadingWholeDay * PRICES.dynamoWriteUnit },
    { item: 'Lambda process (1769 MB; decrypt + parse + store)', perMillion: M * 1.769 * smtSecondsPerReading * PRICES.lambdaGbSecond },
    {
      item: 'Lambda fetch, S3 PUT, SQS, ledger (per file)',
      perMillion:
        (M / smtReadingsPerFile) *
        (2 * PRICES.lambdaRequest + 3 * PRICES.s3Put + 3 * PRICES.sqsRequest + 6 * PRICES.dynamoWriteUnit + 0.5 * 30 * PRICES.lambdaGbSecond),
    },
    {
      item: 'S3 raw archive, 12 months Standard (upper bound: lifecycle moves it to cheaper classes)',
      perMillion: M * storageYear(input.smtArmoredBytesPerReading, PRICES.s3GbMonth),
    },
    { item: 'DynamoDB storage, 12 months', perMillion: M * dynamoStorage },
  ]);

  // READY: hourly deliveries (4 intervals + 1 register per meter), as the bench's deliveries.
  const perDelivery = input.readyReadingsPerDelivery;
  const readySeconds = input.readyCpuMsPerDelivery / 1000 + (((perDelivery / 5) * 2 + 3) * MS_PER_DYNAMO_REQUEST) / 1000;
  const ready = total('READY webhooks', `hourly deliveries of ${perDelivery} readings (4 intervals + 1 register per meter)`, [
    { item: 'API Gateway REST request', perMillion: (M / perDelivery) * PRICES.apiGatewayRequest },
    { item: 'DynamoDB writes (readings)', perMillion: M * input.writeUnitsPerReadingHourly * PRICES.dynamoWriteUnit },
    { item: 'DynamoDB writes (ledger)', perMillion: (M / perDelivery) * 2 * PRICES.dynamoWriteUnit },
    {
      item: 'Lambda (256 MB; request + GB-seconds)',
      perMillion: (M / perDelivery) * (PRICES.lambdaRequest + 0.25 * readySeconds * PRICES.lambdaGbSecond),
    },
    {
      item: 'S3 PUT of the raw delivery (+ 12 months storage, ~200 B per reading)',
      perMillion: (M / perDelivery) * PRICES.s3Put + M * storageYear(200, PRICES.s3GbMonth),
    },
    { item: 'CloudWatch PutMetricData (1 per delivery)', perMillion: (M / perDelivery) * PRICES.putMetricDataRequest },
    { item: 'DynamoDB storage, 12 months', perMillion: M * dynamoStorage },
  ]);
  return [iot, smt, ready, feedCost()];
}

/**
 * The readings feed and the lake, on top of whichever source stored the readings: hourly blocks
 * of 4 readings per block write (the dearer case: whole days put 96 readings in one event).
 * Lambda's GetRecords on a DynamoDB stream is free; Firehose bills each record rounded up to 5 KB.
 */
function feedCost(): SourceCost {
  const M = 1e6;
  const readingsPerBlockWrite = 4;
  const recordsPerBatch = 100;
  const batchSeconds = 0.2; // one PutEvents per 10 block writes, one PutRecordBatch, assumed 20 ms each
  const billedGb = (M * 5 * 1024) / GB;
  const rowBytes = 300;
  const parquetBytesPerReading = 40;
  const invocations = M / readingsPerBlockWrite / recordsPerBatch;
  return total(
    'Readings feed + lake',
    `per stored reading, on top of its source: block writes of ${readingsPerBlockWrite} readings, stream batches of ${recordsPerBatch}`,
    [
      { item: 'DynamoDB Streams reads (free when Lambda reads them)', perMillion: 0 },
      {
        item: 'Lambda feed (256 MB; requests + GB-seconds)',
        perMillion: invocations * (PRICES.lambdaRequest + 0.25 * batchSeconds * PRICES.lambdaGbSecond),
      },
      { item: 'EventBridge custom events (1 per block write)', perMillion: (M / readingsPerBlockWrite) * PRICES.eventBridgeEvent },
      { item: 'Firehose ingestion (1 record per reading, billed as 5 KB)', perMillion: billedGb * PRICES.firehoseIngestGb },
      { item: 'Firehose Parquet conversion (same billed GB)', perMillion: billedGb * PRICES.firehoseFormatConversionGb },
      { item: 'Firehose dynamic partitioning (~300 B per row)', perMillion: ((M * rowBytes) / GB) * PRICES.firehoseDynamicPartitioningGb },
      { item: 'S3 lake, 12 months Standard (~40 B per reading in Parquet)', perMillion: M * storageYear(parquetBytesPerReading, PRICES.s3GbMonth) },
      { item: 'Athena, one full scan of the million readings', perMillion: ((M * parquetBytesPerReading) / 1024 ** 4) * PRICES.athenaScannedTb },
      { item: 'CloudWatch PutMetricData (1 per batch)', perMillion: invocations * PRICES.putMetricDataRequest },
    ],
  );
}

const money = (value: number) => (value >= 1 ? value.toFixed(2) : value >= 0.01 ? value.toFixed(3) : value.toPrecision(2));

export function costTable(costs: SourceCost[], input: CostInputs): string[] {
  const lines = [
    `List prices: us-east-1, from docs/design.md §7, read ${PRICES.readDate}. Measured in this run: write units per reading (${input.writeUnitsPerReadingWholeDay.toFixed(3)} whole day, ${input.writeUnitsPerReadingHourly.toFixed(3)} hourly blocks), ${input.storedBytesPerReading.toFixed(1)} stored bytes per reading, IoT CPU ${input.iotCpuMicrosPerReading.toFixed(1)} µs per reading; SMT and READY CPU figures from their sections. Assumed: ${MS_PER_DYNAMO_REQUEST} ms of Lambda time per DynamoDB request (16 in flight), and the traffic shapes below.`,
    '',
  ];
  lines.push('| source | $ per million readings | $ per meter-year (15-min data, 35,040 readings) | traffic shape |', '| --- | ---: | ---: | --- |');
  for (const cost of costs) lines.push(`| ${cost.source} | ${money(cost.perMillion)} | ${money(cost.perMeterYear)} | ${cost.shape} |`);
  lines.push('', '| source | item | $ per million readings |', '| --- | --- | ---: |');
  for (const cost of costs) for (const line of cost.lines) lines.push(`| ${cost.source} | ${line.item} | ${money(line.perMillion)} |`);
  return lines;
}
