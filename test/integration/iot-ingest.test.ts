import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mockClient } from 'aws-sdk-client-mock';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { ingestBatch, SqsRejectSink, type IotIngestDependencies } from '../../lambdas/core/iot-ingest.ts';
import { silentLog } from '../../shared/log.ts';
import { wireSource } from '../../lambdas/core/wiring.ts';
import { SequenceTracker } from '../../lambdas/core/sequence-tracker.ts';
import { decodeTelemetry } from '../../shared/telemetry.ts';
import { toSqsEvent } from '../../local/iot-bridge.ts';
import { startLocalCloudWatch, type LocalCloudWatch } from '../support/cloudwatch.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';

let dynamo: LocalDynamo;
let cloudwatch: LocalCloudWatch;
const sqs = mockClient(SQSClient);
const DLQ = 'https://sqs.us-east-1.amazonaws.com/000000000000/meterbridge-dev-iot-dlq';

before(async () => {
  [dynamo, cloudwatch] = await Promise.all([startDynamoDbLocal(), startLocalCloudWatch()]);
});
after(async () => {
  await Promise.all([dynamo?.stop(), cloudwatch?.stop()]);
});
beforeEach(async () => {
  sqs.reset();
  sqs.on(SendMessageCommand).resolves({ MessageId: randomUUID() });
  await cloudwatch.reset();
});

const NOW = new Date('2026-11-23T12:00:00Z');

async function setup(clock: { now: Date } = { now: NOW }) {
  const tables = await dynamo.freshTables();
  const wiring = wireSource({
    source: 'iot',
    dynamodb: dynamo.client,
    cloudwatch: cloudwatch.client(),
    tables,
    blockTimeZone: 'America/Chicago',
    log: silentLog,
    clock: () => clock.now,
  });
  const store = wiring.store();
  const ledger = wiring.ledger;
  const deps = (): IotIngestDependencies => ({
    store,
    ledger,
    sequences: new SequenceTracker({ client: dynamo.client, tableName: tables.ledger }),
    metrics: wiring.metrics(),
    rejects: new SqsRejectSink(new SQSClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } }), DLQ),
    log: silentLog,
    clock: () => clock.now,
  });
  return { store, ledger, deps, clock };
}

/** One invocation as the Lambda entry runs it: the middleware flushes its metrics at the end. */
async function ingest(event: SQSEvent, deps: IotIngestDependencies): ReturnType<typeof ingestBatch> {
  try {
    return await ingestBatch(event, deps);
  } finally {
    await deps.metrics.flush();
  }
}

function message(seq: number, overrides: Record<string, unknown> = {}) {
  return {
    v: 1,
    gatewayId: 'gw-0001',
    seq,
    sentAt: '2026-11-23T11:59:00Z',
    blocks: [
      {
        meterId: 'meter-1',
        channel: 'energy.active.import',
        start: '2026-11-23T10:00:00Z',
        intervalSeconds: 900,
        unit: 'kWh',
        values: [0.1, 0.2, null, 0.4],
      },
    ],
    readings: [{ meterId: 'meter-2', channel: 'water.volume', at: '2026-11-23T11:00:00Z', value: 12.5, unit: 'm3' }],
    ...overrides,
  };
}

/** The SQS body the Basic Ingest rule produces: the exact published bytes, base64, plus topic and time. */
function ruleBody(payload: unknown, thingName = 'gw-0001'): string {
  const bytes = Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
  return JSON.stringify({
    payload: bytes.toString('base64'),
    topic: `$aws/rules/meterbridge_dev_telemetry/gateways/${thingName}/telemetry`,
    receivedAt: NOW.getTime(),
  });
}

const sqsEvent = (bodies: string[]) => toSqsEvent(bodies, { now: () => NOW.getTime() });

const range = { from: new Date('2026-11-23T00:00:00Z'), to: new Date('2026-11-24T00:00:00Z') };

/** What CloudWatch (moto) stored for a metric, optionally for one Reason. */
function sentMetric(name: string, reason?: string): Promise<number> {
  return cloudwatch.sum(name, reason === undefined ? undefined : { name: 'Reason', value: reason });
}

describe('IoT ingest over SQS-shaped events into DynamoDB Local', () => {
  it('stores the readings and interval blocks of a message, skipping null intervals', async () => {
    const { store, deps } = await setup();

    const response = await ingest(sqsEvent([ruleBody(message(1))]), deps());

    assert.deepEqual(response.batchItemFailures, []);
    const energy = await store.query({ meterId: 'meter-1', channel: 'energy.active.import', ...range });
    assert.deepEqual(
      energy.map((r) => [r.kind === 'interval' && r.start.toISOString(), r.value]),
      [
        ['2026-11-23T10:00:00.000Z', 0.1],
        ['2026-11-23T10:15:00.000Z', 0.2],
        ['2026-11-23T10:45:00.000Z', 0.4],
      ],
    );
    assert.equal(energy[0]?.originId, 'gw-0001/1');
    const water = await store.query({ meterId: 'meter-2', channel: 'water.volume', ...range });
    assert.equal(water[0]?.kind, 'register');
    assert.equal(await sentMetric('ReadingsStored'), 4);
  });

  it('stores a message published 10 times once', async () => {
    const { store, deps } = await setup();
    const body = ruleBody(message(7));

    const inOneBatch = await ingest(sqsEvent(Array.from({ length: 5 }, () => body)), deps());
    for (let i = 0; i < 5; i++) await ingest(sqsEvent([body]), deps());

    const stored = inOneBatch.outcomes.filter((o) => o.status === 'stored').length;
    assert.equal(stored, 1, 'one of the five copies in one batch is stored');
    const copiesRetried = inOneBatch.outcomes.filter((o) => o.status === 'retry').length;
    for (let i = 0; i < copiesRetried; i++) await ingest(sqsEvent([body]), deps()); // SQS redelivers those
    assert.equal((await store.query({ meterId: 'meter-1', channel: 'energy.active.import', ...range })).length, 3);
    assert.equal(await sentMetric('ReadingsStored'), 4);
    assert.equal(await sentMetric('MessagesDuplicate'), 9);
  });

  it('rejects a message claiming another gateway to the dead-letter queue, and stores nothing', async () => {
    const { store, deps } = await setup();
    const forged = ruleBody(message(1, { gatewayId: 'gw-0002' }), 'gw-0001');

    const response = await ingest(sqsEvent([forged, ruleBody(message(2))]), deps());

    assert.deepEqual(response.batchItemFailures, [], 'a rejected message does not fail the batch');
    assert.deepEqual(
      response.outcomes.map((o) => o.status),
      ['rejected', 'stored'],
    );
    const sent = sqs.commandCalls(SendMessageCommand);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.args[0].input.QueueUrl, DLQ);
    assert.equal(sent[0]!.args[0].input.MessageBody, forged, 'the original body is kept for replay');
    assert.match(
      sent[0]!.args[0].input.MessageAttributes?.rejectReason?.StringValue ?? '',
      /gatewayId "gw-0002" does not match the thing name "gw-0001"/,
    );
    assert.equal(await sentMetric('MessagesRejected', 'gateway-mismatch'), 1);
    assert.equal((await store.query({ meterId: 'meter-2', channel: 'water.volume', ...range })).length, 1, 'only the honest message was stored');
  });

  it('rejects malformed and invalid messages with a reason each, without failing the batch', async () => {
    const { deps } = await setup();
    const bodies = [
      'not json at all',
      ruleBody('{"v":1,'),
      ruleBody(
        message(3, {
          readings: [
            { meterId: 'm', channel: 'energy.active.import', start: '2026-11-23T10:00:00Z', end: '2026-11-23T10:15:00Z', value: 1, unit: 'furlongs' },
          ],
        }),
      ),
      ruleBody(
        message(4, {
          blocks: [],
          readings: [
            { meterId: 'm', channel: 'energy.active.import', start: '2031-01-01T00:00:00Z', end: '2031-01-01T00:15:00Z', value: 1, unit: 'kWh' },
          ],
        }),
      ),
      JSON.stringify({ payload: Buffer.from(JSON.stringify(message(5))).toString('base64'), topic: 'some/other/topic' }),
      ruleBody(message(6)),
    ];

    const response = await ingest(sqsEvent(bodies), deps());

    assert.deepEqual(
      response.outcomes.map((o) => o.status),
      ['rejected', 'rejected', 'rejected', 'rejected', 'rejected', 'stored'],
    );
    const reasons = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input.MessageAttributes?.rejectReason?.StringValue);
    assert.match(reasons[0]!, /envelope is not JSON/);
    assert.match(reasons[1]!, /not JSON/);
    assert.match(reasons[2]!, /unknown unit "furlongs"/);
    assert.match(reasons[3]!, /in the future/);
    assert.match(reasons[4]!, /not a gateway telemetry topic/);
    assert.equal(await sentMetric('MessagesRejected'), 5);
  });

  it('completes a message whose worker died after claiming it, once the claim expires, with nothing lost or doubled', async () => {
    const clock = { now: NOW };
    const { store, ledger, deps } = await setup(clock);
    const body = ruleBody(message(11));
    // The crashed worker: claimed the message and wrote part of it, then the process died.
    const crashed = await ledger.claim('iot-message', 'gw-0001/11');
    assert.equal(crashed.status, 'claimed');
    const decoded = decodeTelemetry(Buffer.from(JSON.stringify(message(11))), { topicThingName: 'gw-0001', now: NOW });
    assert.ok(decoded.ok);
    await store.write([decoded.readings[0]!]);

    const tooSoon = await ingest(sqsEvent([body]), deps());
    clock.now = new Date(NOW.getTime() + 121_000);
    const afterExpiry = await ingest(sqsEvent([body]), deps());

    assert.equal(tooSoon.outcomes[0]!.status, 'retry', "while the dead worker's claim holds, SQS must redeliver later");
    assert.equal(tooSoon.batchItemFailures.length, 1);
    assert.equal(afterExpiry.outcomes[0]!.status, 'stored');
    const outcome = afterExpiry.outcomes[0]!;
    assert.ok(outcome.status === 'stored');
    assert.equal(outcome.counts.duplicate, 1, 'the reading the dead worker wrote is recognised');
    assert.equal(outcome.counts.stored, 3);
    assert.equal((await store.query({ meterId: 'meter-1', channel: 'energy.active.import', ...range })).length, 3);
    assert.equal((await ledger.get('iot-message', 'gw-0001/11'))?.status, 'completed');
  });

  it('reports one missing message for seq 1, 2, 3, 5', async () => {
    const { deps } = await setup();

    for (const seq of [1, 2, 3, 5]) await ingest(sqsEvent([ruleBody(message(seq))]), deps());

    assert.equal(await sentMetric('SequenceGaps'), 1);
  });

  it("accepts the rule error action's envelope when a DLQ redrive brings one back", async () => {
    const { store, deps } = await setup();
    const errorAction = JSON.stringify({
      ruleName: 'meterbridge_dev_telemetry',
      topic: '$aws/rules/meterbridge_dev_telemetry/gateways/gw-0001/telemetry',
      clientId: 'gw-0001',
      base64OriginalPayload: Buffer.from(JSON.stringify(message(21))).toString('base64'),
      failures: [{ failedAction: 'SqsAction', failedResource: 'meterbridge-dev-iot-ingest', errorMessage: 'throttled' }],
    });

    const response = await ingest(sqsEvent([errorAction]), deps());

    assert.equal(response.outcomes[0]!.status, 'stored');
    assert.equal((await store.query({ meterId: 'meter-2', channel: 'water.volume', ...range })).length, 1);
    assert.equal(await sentMetric('MessagesFromRuleErrorAction'), 1);
  });
});
