/**
 * Lambda entry for IoT telemetry: SQS (fed by the Basic Ingest topic rule) -> reading store.
 * Thin: clients are created once per container and handed to the core (lambdas/core/iot-ingest.ts).
 */
import middy from '@middy/core';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { ingestBatch, SqsRejectSink } from './core/iot-ingest.ts';
import { Ledger } from './core/ledger.ts';
import { Metrics } from './core/metrics.ts';
import { ReadingStore } from './core/reading-store.ts';
import { SequenceTracker } from './core/sequence-tracker.ts';
import { requiredEnv } from './core/env.ts';
import { createLogger } from './observability.ts';

const { log } = createLogger('iot-ingest');
const dynamodb = new DynamoDBClient({});
const readingsTable = requiredEnv('READINGS_TABLE');
const ledgerTable = requiredEnv('LEDGER_TABLE');

const store = new ReadingStore({ client: dynamodb, tableName: readingsTable, blockTimeZone: requiredEnv('BLOCK_TIME_ZONE') });
const ledger = new Ledger({ client: dynamodb, tableName: ledgerTable, lockSeconds: 120 });
const sequences = new SequenceTracker({ client: dynamodb, tableName: ledgerTable });
const rejects = new SqsRejectSink(new SQSClient({}), requiredEnv('DEAD_LETTER_QUEUE_URL'));
const cloudwatch = new CloudWatchClient({});

async function ingest(event: SQSEvent): Promise<SQSBatchResponse> {
  // A Metrics buffer per invocation: flushed once at the end of the batch.
  const metrics = new Metrics({ client: cloudwatch, defaultDimensions: { Stage: process.env.STAGE ?? 'dev', Source: 'iot' }, log });
  const { batchItemFailures } = await ingestBatch(event, { store, ledger, sequences, metrics, rejects, log });
  return { batchItemFailures };
}

export const handler = middy(ingest);
