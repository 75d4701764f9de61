/**
 * Lambda entry of the SMT fetch step (EventBridge schedule): drains the SMT folders into the raw
 * archive. Thin: clients and the transport secret are set up once per container; the work is in
 * lambdas/core/smt/fetch.ts.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { requiredEnv } from './core/env.ts';
import { RawArchive } from './core/raw-archive.ts';
import { runSmtFetch, type FetchReport } from './core/smt/transport/fetch.ts';
import { SmtFetchState } from './core/smt/transport/fetch-state.ts';
import { ftpsOptionsFrom, readSecretJson, sftpOptionsFrom } from './core/smt/secrets.ts';
import type { SmtTransport } from './core/smt/transport/transport.ts';
import { wiringFromEnv } from './core/wiring.ts';
import { createLogger, lambdaHandler } from './observability.ts';

const { logger, log } = createLogger('smt-fetch');
const wiring = wiringFromEnv('smt', log, { stores: false });
const secrets = new SecretsManagerClient({});
const protocol = requiredEnv('SMT_PROTOCOL');
if (protocol !== 'ftps' && protocol !== 'sftp') throw new Error(`SMT_PROTOCOL must be ftps or sftp, not ${protocol}`);
const server = {
  host: requiredEnv('SMT_HOST'),
  port: Number(requiredEnv('SMT_PORT')),
  servername: process.env.SMT_TLS_SERVERNAME || undefined,
  timeoutMs: 30_000,
};
const secretId = requiredEnv('SMT_TRANSPORT_SECRET');
const archive = new RawArchive({ client: new S3Client({}), bucket: requiredEnv('ARCHIVE_BUCKET') });
const serverId = `${protocol}:${server.host}`;
const state = new SmtFetchState({ client: wiring.dynamodb, tableName: wiring.ledgerTable, serverId });
const folders = requiredEnv('SMT_FOLDERS')
  .split(',')
  .map((f) => f.trim())
  .filter(Boolean);
const deleteAfterArchive = requiredEnv('SMT_AFTER_ARCHIVE') === 'delete';

let transportSecret: Promise<Record<string, unknown>> | undefined;

async function connect(): Promise<SmtTransport> {
  // Read once per container; a failed read is retried on the next invocation.
  transportSecret ??= readSecretJson(secrets, secretId).catch((error: unknown) => {
    transportSecret = undefined;
    throw error;
  });
  const json = await transportSecret;
  // Each transport is loaded only when this stage uses it: an FTPS stage never evaluates ssh2 (a
  // large CommonJS module with optional native add-ons), and an SFTP stage never loads basic-ftp.
  if (protocol === 'ftps') {
    const { connectFtps } = await import('./core/smt/transport/ftps.ts');
    return connectFtps(ftpsOptionsFrom(secretId, json, server));
  }
  const { connectSftp } = await import('./core/smt/transport/sftp.ts');
  return connectSftp(sftpOptionsFrom(secretId, json, server));
}

type FetchSummary = Pick<FetchReport, 'archived' | 'bytes' | 'left' | 'error'>;

export const handler = lambdaHandler<unknown, FetchSummary>(logger, wiring, async (_event, context) => {
  const report = await runSmtFetch({
    connect,
    folders,
    archive,
    ledger: wiring.ledger,
    state,
    metrics: context.metrics,
    log,
    deleteAfterArchive,
    serverId,
    remainingTimeMs: () => context.getRemainingTimeInMillis(),
  });
  return { archived: report.archived, bytes: report.bytes, left: report.left, error: report.error };
});
