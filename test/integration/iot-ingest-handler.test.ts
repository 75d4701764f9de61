/**
 * The IoT ingest Lambda entry (lambdas/iot-ingest.ts) as deployed, given hostile SQS batches:
 * environment as the CDK construct sets it, DynamoDB Local for store and ledger, moto for SQS (the
 * dead-letter queue) and CloudWatch (metrics read back from what it stored). One bad record must never
 * fail its batch: it goes to the DLQ with its reason and a metric, its neighbours are stored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CreateQueueCommand, ReceiveMessageCommand, SQSClient, type Message } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { toSqsEvent } from '../../local/iot-bridge.ts';
import { startLocalCloudWatch, type LocalCloudWatch } from '../support/cloudwatch.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';
import { metricSum } from '../support/ready-webhook.ts';

let dynamo: LocalDynamo;
let cloudwatch: LocalCloudWatch;
let sqs: SQSClient;
let dlqUrl: string;
let store: ReadingStore;
let handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;
const saved = { ...process.env };

before(async () => {
  [dynamo, cloudwatch] = await Promise.all([startDynamoDbLocal(), startLocalCloudWatch()]);
  sqs = new SQSClient({ endpoint: cloudwatch.endpoint, region: cloudwatch.moto.region, credentials: cloudwatch.moto.credentials });
  const tables = await dynamo.freshTables();
  ({ QueueUrl: dlqUrl } = (await sqs.send(new CreateQueueCommand({ QueueName: 'meterbridge-test-iot-dlq' }))) as { QueueUrl: string });
  Object.assign(process.env, {
    AWS_REGION: 'us-east-1',
    // DynamoDB Local keeps one database per access key and region: the key the tables were made with.
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_ENDPOINT_URL_SQS: cloudwatch.endpoint,
    AWS_ENDPOINT_URL_CLOUDWATCH: cloudwatch.endpoint,
    // moto 5.2 cannot read gzip-compressed PutMetricData bodies (local/cloudwatch.ts).
    AWS_DISABLE_REQUEST_COMPRESSION: 'true',
    STAGE: 'test',
    READINGS_TABLE: tables.readings,
    LEDGER_TABLE: tables.ledger,
    BLOCK_TIME_ZONE: 'America/Chicago',
    DEAD_LETTER_QUEUE_URL: dlqUrl,
    POWERTOOLS_LOG_LEVEL: 'CRITICAL',
  });
  store = new ReadingStore({ client: dynamo.client, tableName: tables.readings, blockTimeZone: 'America/Chicago' });
  ({ handler } = (await import('../../lambdas/iot-ingest.ts')) as unknown as { handler: typeof handler });
});
after(async () => {
  process.env = saved;
  sqs?.destroy();
  await Promise.all([dynamo?.stop(), cloudwatch?.stop()]);
});

const context = { getRemainingTimeInMillis: () => 60_000, functionName: 'iot-ingest', awsRequestId: 'aws-1' } as unknown as Context;
const TOPIC = '$aws/rules/meterbridge_test_telemetry/gateways/gw-0001/telemetry';

function ruleBody(payload: string): string {
  return JSON.stringify({ payload: Buffer.from(payload).toString('base64'), topic: TOPIC, receivedAt: Date.now() });
}

function message(seq: number, fields: Record<string, unknown>): string {
  return JSON.stringify({ v: 1, gatewayId: 'gw-0001', seq, sentAt: '2026-11-23T11:59:00Z', ...fields });
}

const block = (meterId: string, start: string, values: number[]) => ({
  meterId,
  channel: 'energy.active.import',
  start,
  intervalSeconds: 900,
  unit: 'kWh',
  values,
});

async function dlqMessages(): Promise<Message[]> {
  const received: Message[] = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: dlqUrl, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], VisibilityTimeout: 600 }),
    );
    received.push(...Messages);
    if (Messages.length === 0) break;
  }
  return received;
}

describe('lambdas/iot-ingest.ts handler with hostile records in a batch', () => {
  it('stores the good message and dead-letters, each with a reason and a metric, a 40 KB unit of 20,000 nested arrays, a body `null`, a duplicate identity and a block off the 15-minute grid', async () => {
    const nested = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    const hostile = `{"v":1,"gatewayId":"gw-0001","seq":2,"sentAt":"2026-11-23T11:59:00Z","readings":[{"meterId":"meter-x","channel":"water.volume","at":"2026-11-23T11:00:00Z","value":1,"unit":${nested}}]}`;
    assert.ok(hostile.length > 40_000);
    const bodies = [
      ruleBody(message(1, { blocks: [block('meter-good', '2026-11-23T10:00:00Z', [1, 1, 1, 1])] })),
      ruleBody(hostile),
      'null',
      // The same identity twice, values 1 and 2: it could only be stored in part.
      ruleBody(
        message(3, {
          readings: [1, 2].map((value) => ({ meterId: 'meter-dup', channel: 'water.volume', at: '2026-11-23T11:00:00Z', value, unit: 'm3' })),
        }),
      ),
      // 10:07 beside 10:00 in 15-minute data: stored, the hour would hold 8 kWh of 4.
      ruleBody(
        message(4, {
          blocks: [block('meter-grid', '2026-11-23T10:00:00Z', [1, 1, 1, 1]), block('meter-grid', '2026-11-23T10:07:00Z', [1, 1, 1, 1])],
        }),
      ),
      ruleBody(message(5, { blocks: [block('meter-grid', '2026-11-23T10:07:00Z', [1, 1, 1, 1])] })),
    ];
    const event = toSqsEvent(bodies);

    const response = await handler(event, context);

    assert.deepEqual(response.batchItemFailures, [], 'no record is left for SQS to retry: every one has its outcome');
    const day = { from: new Date('2026-11-23T00:00:00Z'), to: new Date('2026-11-24T00:00:00Z') };
    assert.equal((await store.query({ meterId: 'meter-good', channel: 'energy.active.import', ...day })).length, 4);
    for (const meterId of ['meter-x', 'meter-grid'])
      assert.equal((await store.query({ meterId, channel: 'energy.active.import', ...day })).length, 0, meterId);
    for (const meterId of ['meter-x', 'meter-dup'])
      assert.equal((await store.query({ meterId, channel: 'water.volume', ...day })).length, 0, meterId);

    const parked = await dlqMessages();
    const byBody = new Map(parked.map((m) => [m.Body, m.MessageAttributes?.rejectReason?.StringValue ?? '']));
    assert.equal(parked.length, 5);
    assert.match(byBody.get(bodies[1]!)!, /nests deeper than \d+ levels/);
    assert.match(byBody.get('null')!, /envelope is null/);
    assert.match(byBody.get(bodies[3]!)!, /meter-dup water\.volume 2026-11-23T11:00:00\.000Z: the same reading twice \(values 1 and 2\)/);
    assert.match(byBody.get(bodies[4]!)!, /meter-grid .*lies inside an earlier interval/);
    assert.match(byBody.get(bodies[5]!)!, /meter-grid .*900 s interval 420 s off its day's grid/);
    for (const reason of byBody.values()) assert.ok(reason.length <= 1024);

    const rejected = (reason: string) => metricSum(cloudwatch, 'MessagesRejected', { name: 'Reason', value: reason });
    assert.equal(await rejected('too-deep'), 1);
    assert.equal(await rejected('envelope'), 1);
    assert.equal(await rejected('inconsistent'), 2);
    assert.equal(await rejected('misaligned'), 1);
    assert.equal(await metricSum(cloudwatch, 'ReadingsStored'), 4);
  });
});
