/**
 * Lambda entry for Kamstrup READY callbacks behind API Gateway (REST, proxy integration).
 * Thin: clients are created once per container; lambdas/core/ready/api-gateway.ts does the work,
 * the same function the local HTTP adapter (local/ready-http.ts) calls.
 */
import middy from '@middy/core';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { requiredEnv } from './core/env.ts';
import { Ledger } from './core/ledger.ts';
import { Metrics } from './core/metrics.ts';
import { RawArchive } from './core/raw-archive.ts';
import { ReadingStore } from './core/reading-store.ts';
import { handleApiGatewayEvent } from './core/ready/api-gateway.ts';
import { verificationConfigFromEnv } from './core/ready/handshake.ts';
import { isReplayEvent, replayArchived, type ReplayEvent, type ReplayResult } from './core/ready/replay.ts';
import { SecretsManagerCredentials } from './core/ready/secret.ts';
import { DynamoSubscriptionStates } from './core/ready/status.ts';
import { DEFAULT_MAX_BODY_BYTES } from './core/ready/webhook.ts';
import { createLogger } from './observability.ts';

const { logger, log } = createLogger('ready-webhook');
const dynamodb = new DynamoDBClient({});
const cloudwatch = new CloudWatchClient({});
const ledgerTable = requiredEnv('LEDGER_TABLE');

const store = new ReadingStore({ client: dynamodb, tableName: requiredEnv('READINGS_TABLE'), blockTimeZone: requiredEnv('BLOCK_TIME_ZONE') });
// Lock shorter than a READY retry interval is pointless and longer than the function timeout is
// unsafe; 60 s covers the 29 s API Gateway integration limit with room.
const ledger = new Ledger({ client: dynamodb, tableName: ledgerTable, lockSeconds: 60 });
const subscriptions = new DynamoSubscriptionStates({ client: dynamodb, tableName: ledgerTable });
const archive = new RawArchive({ client: new S3Client({}), bucket: requiredEnv('ARCHIVE_BUCKET') });
const credentials = new SecretsManagerCredentials({ client: new SecretsManagerClient({}), secretId: requiredEnv('READY_SECRET_ARN') });
const verification = verificationConfigFromEnv(process.env);
const maxBodyBytes = Number(process.env.READY_MAX_BODY_BYTES ?? DEFAULT_MAX_BODY_BYTES);
// Fails closed: only the construct's explicit 'false' (a stage that opted out) turns it off.
const requireSignature = process.env.READY_REQUIRE_SIGNATURE !== 'false';

// A Metrics buffer per request, flushed once before the response.
const newMetrics = () => new Metrics({ client: cloudwatch, defaultDimensions: { Stage: process.env.STAGE ?? 'dev', Source: 'ready' }, log });

async function receive(event: APIGatewayProxyEvent | ReplayEvent): Promise<APIGatewayProxyResult | { replayed: ReplayResult[] }> {
  // An operator's direct invocation (aws lambda invoke), never reachable through API Gateway.
  if (isReplayEvent(event)) {
    return { replayed: await replayArchived(event.replayKeys, { archive, store, ledger, subscriptions, credentials, metrics: newMetrics, log, verification, maxBodyBytes, requireSignature }) };
  }
  logger.appendKeys({ requestId: event.requestContext?.requestId });
  return handleApiGatewayEvent(event, { archive, store, ledger, subscriptions, credentials, metrics: newMetrics(), log, verification, maxBodyBytes, requireSignature });
}

export const handler = middy(receive);
