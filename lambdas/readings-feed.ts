/**
 * Lambda entry of the readings feed: DynamoDB Streams (readings table, NEW_AND_OLD_IMAGES) ->
 * one EventBridge event per block write that changed data, and lake rows to Firehose. Thin: the
 * work is lambdas/core/feed/feed.ts; the event source mapping reports batch item failures, bisects
 * and sends what keeps failing to the on-failure queue (lib/readings-feed.ts).
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { FirehoseClient } from '@aws-sdk/client-firehose';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { requiredEnv } from './core/env.ts';
import { EventBridgeSink, FirehoseSink } from './core/feed/aws-sinks.ts';
import type { BlockStreamRecord } from './core/feed/block-change.ts';
import { feedBatch } from './core/feed/feed.ts';
import { Metrics } from './core/metrics.ts';
import { DEFAULT_STAGE } from './core/wiring.ts';
import { createLogger, lambdaHandler } from './observability.ts';

const { logger, log } = createLogger('readings-feed');
const cloudwatch = new CloudWatchClient({});
const stage = process.env.STAGE ?? DEFAULT_STAGE;
// The Source dimension is each block's own source, set per datum.
const wiring = { metrics: () => new Metrics({ client: cloudwatch, defaultDimensions: { Stage: stage }, log }) };
const events = new EventBridgeSink(new EventBridgeClient({}), requiredEnv('EVENT_BUS_NAME'));
const lake = new FirehoseSink(new FirehoseClient({}), requiredEnv('LAKE_DELIVERY_STREAM'));

export const handler = lambdaHandler<DynamoDBStreamEvent, DynamoDBBatchResponse>(logger, wiring, async (event, { metrics }) => {
  // The stream event's images are DynamoDB JSON, the SDK's AttributeValue shape (blocks hold no binary attributes).
  const records = event.Records as unknown as BlockStreamRecord[];
  const { batchItemFailures, events: published, rows } = await feedBatch(records, { events, lake, metrics, log });
  log.info('feed batch', { records: records.length, events: published, rows, failed: batchItemFailures.length });
  return { batchItemFailures };
});
