import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSEvent } from 'aws-lambda';
import { DEFAULT_MESSAGE_CONCURRENCY, ingestBatch } from '../../lambdas/core/iot-ingest.ts';
import { SequenceTracker } from '../../lambdas/core/sequence-tracker.ts';
import { wireSource } from '../../lambdas/core/wiring.ts';
import { silentLog } from '../../shared/log.ts';

/** The SDK's Node HTTP handler keeps at most this many sockets per client; requests past it queue. */
const SDK_SOCKETS_PER_CLIENT = 50;
const DAY = '2026-11-22T06:00:00.000Z'; // local midnight in America/Chicago

/**
 * A DynamoDB-shaped loopback endpoint answering every call as an empty, warm table would (as
 * bench/null-endpoint.mjs does: `{}`, and its own values to the meter catalog's ALL_NEW update),
 * a few milliseconds late so that requests pile up as they would against DynamoDB.
 */
let server: Server;
let endpoint: string;

function answer(body: string): string {
  if (!body.includes('"ALL_NEW"')) return '{}';
  const values = (JSON.parse(body) as { ExpressionAttributeValues?: Record<string, unknown> }).ExpressionAttributeValues ?? {};
  const attributes: Record<string, unknown> = {};
  for (const name of ['m', 'c', 'f', 'l', 'u', 'd', 'src', 'ua']) if (values[`:${name}`]) attributes[name] = values[`:${name}`];
  return JSON.stringify({ Attributes: attributes });
}

function batch(messages: number, meters: number): SQSEvent {
  return {
    Records: Array.from({ length: messages }, (_, i) => {
      const payload = {
        v: 1,
        gatewayId: 'gw-1',
        seq: i + 1,
        sentAt: '2026-11-23T06:00:00Z',
        blocks: Array.from({ length: meters }, (_, m) => ({
          meterId: `meter-${i}-${m}`,
          channel: 'energy.active.import',
          start: DAY,
          intervalSeconds: 900,
          unit: 'kWh',
          values: [0.1, 0.2, 0.3, 0.4],
        })),
      };
      const body = JSON.stringify({ payload: Buffer.from(JSON.stringify(payload)).toString('base64'), topic: 'gateways/gw-1/telemetry' });
      return { messageId: `m-${i}`, receiptHandle: `r-${i}`, body } as SQSEvent['Records'][number];
    }),
  };
}

describe('IoT ingest: requests in flight per batch', () => {
  before(async () => {
    server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () =>
        setTimeout(() => {
          response.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
          response.end(answer(body));
        }, 5),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  it("a batch of 10 messages of many blocks never has more requests in flight than the SDK's sockets, yet overlaps messages", async () => {
    const dynamodb = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    // Counted where a command enters the client: a request queued behind the socket pool counts as in flight.
    let inFlight = 0;
    let most = 0;
    dynamodb.middlewareStack.add(
      (next) => async (args) => {
        most = Math.max(most, ++inFlight);
        try {
          return await next(args);
        } finally {
          inFlight -= 1;
        }
      },
      { step: 'initialize', priority: 'high', name: 'countInFlight' },
    );
    const wiring = wireSource({
      source: 'iot',
      dynamodb,
      cloudwatch: new CloudWatchClient({ endpoint, region: 'us-east-1' }),
      tables: { readings: 'readings', ledger: 'ledger' },
      blockTimeZone: 'America/Chicago',
      log: silentLog,
      clock: () => new Date('2026-11-23T12:00:00Z'),
    });
    const result = await ingestBatch(batch(10, 40), {
      store: wiring.store(),
      ledger: wiring.ledger,
      sequences: new SequenceTracker({ client: dynamodb, tableName: 'ledger' }),
      metrics: wiring.metrics(),
      rejects: { reject: () => Promise.reject(new Error('nothing should be rejected')) },
      log: silentLog,
      clock: () => new Date('2026-11-23T12:00:00Z'),
    });
    assert.deepEqual(
      result.outcomes.map((o) => o.status),
      Array.from({ length: 10 }, () => 'stored'),
    );
    assert.ok(most <= SDK_SOCKETS_PER_CLIENT, `${most} requests in flight at once; the SDK keeps ${SDK_SOCKETS_PER_CLIENT} sockets`);
    assert.ok(most > 16, `${most} requests in flight at most: messages should overlap (${DEFAULT_MESSAGE_CONCURRENCY} at once)`);
  });
});
