/**
 * Lambda entry of the SMT process step: S3 object-created notifications (through an SQS queue
 * with a DLQ) -> decrypt, parse, store (lambdas/core/smt/process.ts). The PGP key is read from
 * Secrets Manager and unlocked once per container.
 */
import middy from '@middy/core';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { PrivateKey } from 'openpgp';
import { requiredEnv } from './core/env.ts';
import { Ledger } from './core/ledger.ts';
import { Metrics } from './core/metrics.ts';
import { RawArchive } from './core/raw-archive.ts';
import { ReadingStore } from './core/reading-store.ts';
import { loadPrivateKey } from './core/smt/decrypt.ts';
import { archiveKeysOf } from './core/smt/s3-event.ts';
import { processArchivedFile } from './core/smt/process.ts';
import { pgpKeyFrom, readSecretJson } from './core/smt/secrets.ts';
import { createLogger } from './observability.ts';

const { log } = createLogger('smt-process');
const dynamodb = new DynamoDBClient({});
const secrets = new SecretsManagerClient({});
const cloudwatch = new CloudWatchClient({});
const archive = new RawArchive({ client: new S3Client({}), bucket: requiredEnv('ARCHIVE_BUCKET') });
const store = new ReadingStore({ client: dynamodb, tableName: requiredEnv('READINGS_TABLE'), blockTimeZone: requiredEnv('BLOCK_TIME_ZONE') });
const ledger = new Ledger({ client: dynamodb, tableName: requiredEnv('LEDGER_TABLE'), lockSeconds: Number(requiredEnv('SMT_PROCESS_LOCK_SECONDS')) });
const pgpSecretId = requiredEnv('SMT_PGP_SECRET');

let keys: Promise<PrivateKey[]> | undefined;
function loadKeys(): Promise<PrivateKey[]> {
  keys ??= readSecretJson(secrets, pgpSecretId)
    .then((json) => loadPrivateKey(pgpKeyFrom(pgpSecretId, json)))
    .then((key) => [key])
    .catch((error: unknown) => {
      keys = undefined;
      throw error;
    });
  return keys;
}

async function processFiles(event: SQSEvent): Promise<SQSBatchResponse> {
  const metrics = new Metrics({ client: cloudwatch, defaultDimensions: { Stage: process.env.STAGE ?? 'dev', Source: 'smt' }, log });
  const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
  try {
    for (const record of event.Records) {
      try {
        for (const key of archiveKeysOf(record.body)) {
          const outcome = await processArchivedFile({ archive, ledger, store, metrics, log, keys: loadKeys }, key);
          log.info('SMT file outcome', { key, status: outcome.status, ...(outcome.status === 'failed' ? { reason: outcome.reason } : {}) });
        }
      } catch (error) {
        // Transient (S3, DynamoDB, secret, busy): SQS redelivers; after 3 receives the DLQ keeps it.
        log.error('SMT file will be retried', { messageId: record.messageId, error: error instanceof Error ? error.message : String(error) });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
  } finally {
    await metrics.flush();
  }
  return { batchItemFailures };
}

export const handler = middy(processFiles);
