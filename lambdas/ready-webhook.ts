/**
 * Lambda entry for Kamstrup READY callbacks behind API Gateway (REST, proxy integration).
 * Thin: the source's wiring is built once per container; lambdas/core/ready/api-gateway.ts does
 * the work, the same function the local HTTP adapter (local/ready-http.ts) calls.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { requiredEnv } from './core/env.ts';
import { RawArchive } from './core/raw-archive.ts';
import { handleApiGatewayEvent } from './core/ready/api-gateway.ts';
import { verificationConfigFromEnv } from './core/ready/handshake.ts';
import { isReplayEvent, replayArchived, type ReplayEvent, type ReplayResult } from './core/ready/replay.ts';
import { SecretsManagerCredentials } from './core/ready/secret.ts';
import { DynamoSubscriptionStates } from './core/ready/status.ts';
import { DEFAULT_MAX_BODY_BYTES } from './core/ready/webhook.ts';
import { wiringFromEnv } from './core/wiring.ts';
import { createLogger, lambdaHandler } from './observability.ts';

const { logger, log } = createLogger('ready-webhook');
const wiring = wiringFromEnv('ready', log, { stores: true });
const store = wiring.store();
const subscriptions = new DynamoSubscriptionStates({ client: wiring.dynamodb, tableName: wiring.ledgerTable });
const archive = new RawArchive({ client: new S3Client({}), bucket: requiredEnv('ARCHIVE_BUCKET') });
const credentials = new SecretsManagerCredentials({ client: new SecretsManagerClient({}), secretId: requiredEnv('READY_SECRET_ARN') });
const verification = verificationConfigFromEnv(process.env);
const maxBodyBytes = Number(process.env.READY_MAX_BODY_BYTES ?? DEFAULT_MAX_BODY_BYTES);
// Fails closed: only the construct's explicit 'false' (a stage that opted out) turns it off.
const requireSignature = process.env.READY_REQUIRE_SIGNATURE !== 'false';
const deps = { archive, store, ledger: wiring.ledger, subscriptions, credentials, log, verification, maxBodyBytes, requireSignature };

type Event = APIGatewayProxyEvent | ReplayEvent;
type Result = APIGatewayProxyResult | { replayed: ReplayResult[] };

export const handler = lambdaHandler<Event, Result>(logger, wiring, async (event, { metrics }) => {
  // An operator's direct invocation (aws lambda invoke), never reachable through API Gateway.
  if (isReplayEvent(event)) return { replayed: await replayArchived(event.replayKeys, { ...deps, metrics: wiring.metrics }) };
  logger.appendKeys({ requestId: event.requestContext?.requestId });
  return handleApiGatewayEvent(event, { ...deps, metrics });
});
