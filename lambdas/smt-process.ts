/**
 * Lambda entry of the SMT process step: S3 object-created notifications (through an SQS queue
 * with a DLQ) -> decrypt, parse, store (lambdas/core/smt/process.ts). The PGP key is read from
 * Secrets Manager and unlocked once per container.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { PrivateKey } from 'openpgp';
import { requiredEnv } from './core/env.ts';
import { RawArchive } from './core/raw-archive.ts';
import { loadPrivateKey } from './core/smt/pgp/decrypt.ts';
import { archiveKeysOf } from './core/smt/s3-event.ts';
import { processArchivedFile } from './core/smt/process.ts';
import { pgpKeyFrom, readSecretJson } from './core/smt/secrets.ts';
import { wiringFromEnv } from './core/wiring.ts';
import { createLogger, lambdaHandler } from './observability.ts';

const { logger, log } = createLogger('smt-process');
const wiring = wiringFromEnv('smt', log, { stores: true });
const store = wiring.store();
const secrets = new SecretsManagerClient({});
const archive = new RawArchive({ client: new S3Client({}), bucket: requiredEnv('ARCHIVE_BUCKET') });
const pgpSecretId = requiredEnv('SMT_PGP_SECRET');
/** The stage's `smt.strictCsv` setting: refuse spreadsheet variants of the CSV reports (docs/smt.md). */
const strict = process.env.SMT_STRICT_CSV === 'true';

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

export const handler = lambdaHandler<SQSEvent, SQSBatchResponse>(logger, wiring, async (event, { metrics }) => {
  const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
  for (const record of event.Records) {
    try {
      for (const key of archiveKeysOf(record.body)) {
        const outcome = await processArchivedFile({ archive, ledger: wiring.ledger, store, metrics, log, keys: loadKeys, strict }, key);
        log.info('SMT file outcome', { key, status: outcome.status, ...(outcome.status === 'failed' ? { reason: outcome.reason } : {}) });
      }
    } catch (error) {
      // Transient (S3, DynamoDB, secret, busy): SQS redelivers; after 3 receives the DLQ keeps it.
      log.error('SMT file will be retried', { messageId: record.messageId, error: error instanceof Error ? error.message : String(error) });
      batchItemFailures.push({ itemIdentifier: record.messageId });
    }
  }
  return { batchItemFailures };
});
