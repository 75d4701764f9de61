/**
 * Lambda entry for IoT telemetry: SQS (fed by the Basic Ingest topic rule) -> reading store.
 * Thin: the source's wiring (lambdas/core/wiring.ts) is built once per container and handed to
 * the core (lambdas/core/iot-ingest.ts); the middleware flushes the invocation's metrics.
 */
import { SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { requiredEnv } from './core/env.ts';
import { ingestBatch, SqsRejectSink } from './core/iot-ingest.ts';
import { SequenceTracker } from './core/sequence-tracker.ts';
import { wiringFromEnv } from './core/wiring.ts';
import { createLogger, lambdaHandler } from './observability.ts';

const { logger, log } = createLogger('iot-ingest');
const wiring = wiringFromEnv('iot', log, { stores: true });
const store = wiring.store();
const sequences = new SequenceTracker({ client: wiring.dynamodb, tableName: wiring.ledgerTable });
const rejects = new SqsRejectSink(new SQSClient({}), requiredEnv('DEAD_LETTER_QUEUE_URL'));

export const handler = lambdaHandler<SQSEvent, SQSBatchResponse>(logger, wiring, async (event, { metrics }) => {
  const { batchItemFailures } = await ingestBatch(event, { store, ledger: wiring.ledger, sequences, metrics, rejects, log });
  return { batchItemFailures };
});
