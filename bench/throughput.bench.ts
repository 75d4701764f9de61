/**
 * Throughput of one IoT ingest worker: SQS-shaped batches of 10 messages through the ingest core
 * (what the Lambda entry runs: decode, ledger claim, block writes, ledger complete, sequence,
 * metrics flush) with 1, 4 and 16 messages in flight (IotIngestDependencies.concurrency), against
 * DynamoDB Local, and with the store's calls answered by the null loopback endpoint instead (the
 * worker's own limit). Messages are hourly: 100 meters x 4 intervals as blocks (400 readings).
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import { ingestBatch, SqsRejectSink } from '../lambdas/core/iot-ingest.ts';
import { SequenceTracker } from '../lambdas/core/sequence-tracker.ts';
import { wireSource } from '../lambdas/core/wiring.ts';
import { toSqsEvent } from '../local/iot-bridge.ts';
import { startDynamoDbLocal } from '../local/dynamodb-local.ts';
import { silentLog } from '../shared/log.ts';
import { startNullEndpoint } from './floor.bench.ts';
import type { BenchSection } from './section.ts';

const NOW = new Date('2026-11-23T12:00:00Z');
const DAY = Date.parse('2026-11-22T06:00:00Z');
const CREDENTIALS = { accessKeyId: 'bench', secretAccessKey: 'bench' };

function hourlyMessage(gateway: string, seq: number, hour: number): string {
  const payload = {
    v: 1,
    gatewayId: gateway,
    seq,
    sentAt: NOW.toISOString(),
    blocks: Array.from({ length: 100 }, (_, m) => ({
      meterId: `${gateway}-m${m}`,
      channel: 'energy.active.import',
      start: new Date(DAY + hour * 3_600_000).toISOString(),
      intervalSeconds: 900,
      unit: 'kWh',
      values: [0, 1, 2, 3].map((i) => Math.round(((hour * 4 + i + m) % 97) * 13.7) / 1000),
    })),
  };
  return JSON.stringify({
    payload: Buffer.from(JSON.stringify(payload)).toString('base64'),
    topic: `gateways/${gateway}/telemetry`,
    receivedAt: NOW.getTime(),
  });
}

async function readingsPerSecond(
  dynamodb: DynamoDBClient,
  tables: { readings: string; ledger: string },
  endpoint: string,
  concurrency: number,
  batches: number,
): Promise<number> {
  const cloudwatch = new CloudWatchClient({ region: 'us-east-1', endpoint, credentials: CREDENTIALS });
  const wiring = wireSource({ source: 'iot', dynamodb, cloudwatch, tables, blockTimeZone: 'America/Chicago', log: silentLog, clock: () => NOW });
  const store = wiring.store();
  const sequences = new SequenceTracker({ client: dynamodb, tableName: tables.ledger });
  const rejects = new SqsRejectSink(new SQSClient({ region: 'us-east-1', endpoint, credentials: CREDENTIALS }), `${endpoint}/dlq`);
  // Ten gateways, each sending its hours in order: each batch holds one hour of every gateway.
  const events = Array.from({ length: batches }, (_, hour) =>
    toSqsEvent(Array.from({ length: 10 }, (_, g) => hourlyMessage(`gw-${concurrency}-${g}`, hour + 1, hour % 24))),
  );
  const started = performance.now();
  let readings = 0;
  for (const event of events) {
    const metrics = wiring.metrics();
    const { outcomes } = await ingestBatch(event, {
      store,
      ledger: wiring.ledger,
      sequences,
      metrics,
      rejects,
      log: silentLog,
      clock: () => NOW,
      concurrency,
    });
    await metrics.flush();
    for (const outcome of outcomes) {
      if (outcome.status !== 'stored') throw new Error(`throughput bench: a message was ${outcome.status}`);
      readings += outcome.counts.stored + outcome.counts.superseded;
    }
  }
  return readings / ((performance.now() - started) / 1000);
}

export const throughputBench: BenchSection = {
  title: 'IoT ingest worker throughput',
  async run() {
    const batches = Number(process.env.BENCH_THROUGHPUT_BATCHES ?? 4);
    const endpoint = await startNullEndpoint();
    const dynamo = await startDynamoDbLocal();
    const rows: string[] = [];
    try {
      const stub = new DynamoDBClient({ region: 'us-east-1', endpoint: endpoint.url, credentials: CREDENTIALS });
      for (const concurrency of [1, 4, 16]) {
        const local = await readingsPerSecond(dynamo.client, await dynamo.freshTables(), endpoint.url, concurrency, batches);
        const stubbed = await readingsPerSecond(stub, { readings: 'bench-readings', ledger: 'bench-ledger' }, endpoint.url, concurrency, batches);
        rows.push(`| ${concurrency} | ${Math.round(local).toLocaleString('en-US')} | ${Math.round(stubbed).toLocaleString('en-US')} |`);
      }
    } finally {
      await dynamo.stop();
      endpoint.stop();
    }
    return [
      `${batches} SQS batches of 10 hourly messages (10 gateways x 100 meters x 4 intervals as blocks: 4,000 readings a batch) through the ingest core in this process (decode, ledger, block writes, sequence, one metrics flush per batch), one batch at a time; CloudWatch and SQS on the null endpoint.`,
      '',
      '| messages in flight | readings/s, DynamoDB Local | readings/s, store calls on the null endpoint |',
      '| ---: | ---: | ---: |',
      ...rows,
    ];
  },
};
