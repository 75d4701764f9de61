/**
 * The SMT path wired for local mode: the same fetch and process steps the Lambdas run, against
 * the proftpd stand-in (startLocalSmtServers), s3rver (startLocalS3) and DynamoDB Local. The
 * caller owns the clients and servers; this only builds the dependencies and flushes metrics.
 *
 *   const pipeline = await createLocalSmtPipeline({ ... });
 *   s3.onObjectCreated((e) => void pipeline.process(e.key));   // the S3 -> SQS -> process λ hop
 *   setInterval(() => void pipeline.fetch(), 60_000);           // the EventBridge schedule
 */
import type { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { PrivateKey } from 'openpgp';
import { Ledger } from '../core/ledger.ts';
import { consoleLog, type Log } from '../core/log.ts';
import { Metrics } from '../core/metrics.ts';
import { RawArchive } from '../core/raw-archive.ts';
import { ReadingStore } from '../core/reading-store.ts';
import { loadPrivateKey, type PgpKeyMaterial } from '../core/smt/decrypt.ts';
import { runSmtFetch, type FetchReport } from '../core/smt/fetch.ts';
import { SmtFetchState } from '../core/smt/fetch-state.ts';
import { connectFtps } from '../core/smt/ftps.ts';
import { processArchivedFile, type ProcessOutcome } from '../core/smt/process.ts';
import { connectSftp } from '../core/smt/sftp.ts';
import type { TableNames } from '../core/tables.ts';
import type { LocalSmtServers } from './smt-servers.ts';

export interface LocalSmtPipelineOptions {
  servers: LocalSmtServers;
  /** Which stand-in the fetch step talks to. @default 'sftp' */
  protocol?: 'ftps' | 'sftp';
  /** @default ['intervaldata', 'adhocusage'] */
  folders?: string[];
  /** @default true */
  deleteAfterArchive?: boolean;
  s3: S3Client;
  bucket: string;
  dynamodb: DynamoDBClient;
  tables: TableNames;
  /** @default 'America/Chicago' */
  blockTimeZone?: string;
  /** The PGP private key files are encrypted to (e.g. GpgKeyring's armoredPrivateKey + passphrase). */
  pgpKey: PgpKeyMaterial;
  /** CloudWatch client (local mode's recording endpoint); metrics are flushed after each step. */
  cloudwatch: CloudWatchClient;
  /** @default 'local' */
  stage?: string;
  log?: Log;
  /** Where decrypted files go while they are parsed. @default os.tmpdir() */
  tmpDir?: string;
}

export interface LocalSmtPipeline {
  /** One run of the fetch step (what the schedule triggers). */
  fetch(): Promise<FetchReport>;
  /** The process step for one archived key (what an object-created event triggers). */
  process(key: string, options?: { replay?: boolean }): Promise<ProcessOutcome>;
}

export async function createLocalSmtPipeline(options: LocalSmtPipelineOptions): Promise<LocalSmtPipeline> {
  const protocol = options.protocol ?? 'sftp';
  const log = options.log ?? consoleLog;
  const archive = new RawArchive({ client: options.s3, bucket: options.bucket });
  const ledger = new Ledger({ client: options.dynamodb, tableName: options.tables.ledger });
  const store = new ReadingStore({ client: options.dynamodb, tableName: options.tables.readings, blockTimeZone: options.blockTimeZone ?? 'America/Chicago' });
  const serverId = `${protocol}:${protocol === 'ftps' ? options.servers.ftps.host : options.servers.sftp.host}`;
  const state = new SmtFetchState({ client: options.dynamodb, tableName: options.tables.ledger, serverId });
  const key: PrivateKey = await loadPrivateKey(options.pgpKey);
  const metrics = () => new Metrics({ client: options.cloudwatch, defaultDimensions: { Stage: options.stage ?? 'local', Source: 'smt' }, log });
  return {
    async fetch() {
      const m = metrics();
      try {
        return await runSmtFetch({
          connect: () => (protocol === 'ftps' ? connectFtps({ ...options.servers.ftps, timeoutMs: 15_000 }) : connectSftp({ ...options.servers.sftp, timeoutMs: 15_000 })),
          folders: options.folders ?? ['intervaldata', 'adhocusage'],
          archive, ledger, state, metrics: m, log, serverId,
          deleteAfterArchive: options.deleteAfterArchive ?? true,
        });
      } finally {
        await m.flush();
      }
    },
    async process(archiveKey, processOptions) {
      const m = metrics();
      try {
        return await processArchivedFile({ archive, ledger, store, metrics: m, log, keys: async () => [key], tmpDir: options.tmpDir }, archiveKey, processOptions);
      } finally {
        await m.flush();
      }
    },
  };
}
