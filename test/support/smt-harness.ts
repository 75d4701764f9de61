/**
 * Everything an SMT integration test needs, real where a stand-in exists: DynamoDB Local (store
 * and ledger), s3rver (the raw archive, with object-created events), proftpd (FTPS with client
 * certificates, SFTP with keys) and a GnuPG keyring. CloudWatch is replaced by the Metrics
 * buffer itself: tests read `metrics.pending()` (what would be flushed).
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../../lambdas/core/ledger.ts';
import { silentLog } from '../../shared/log.ts';
import { Metrics } from '../../lambdas/core/metrics.ts';
import { RawArchive } from '../../lambdas/core/raw-archive.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { loadPrivateKey } from '../../lambdas/core/smt/pgp/decrypt.ts';
import type { SmtFetchDependencies } from '../../lambdas/core/smt/transport/fetch.ts';
import { SmtFetchState } from '../../lambdas/core/smt/transport/fetch-state.ts';
import { connectFtps } from '../../lambdas/core/smt/transport/ftps.ts';
import type { SmtProcessDependencies } from '../../lambdas/core/smt/process.ts';
import { connectSftp } from '../../lambdas/core/smt/transport/sftp.ts';
import type { TableNames } from '../../lambdas/core/tables.ts';
import { startLocalS3, type LocalS3, type ObjectCreated } from '../../local/s3-server.ts';
import { createGpgKeyring, type GpgKeyring } from '../../local/smt-files.ts';
import { startLocalSmtServers, type LocalSmtServers } from '../../local/smt-servers.ts';
import { startDynamoDbLocal, type LocalDynamo } from './dynamodb-local.ts';

export const ARCHIVE_BUCKET = 'smt-archive';

export interface SmtHarness {
  dynamo: LocalDynamo;
  s3: LocalS3;
  servers: LocalSmtServers;
  keyring: GpgKeyring;
  /** Folder the servers serve (drop files into `<root>/intervaldata`). */
  root: string;
  work: string;
  created: ObjectCreated[];
  stop(): Promise<void>;
}

export async function startSmtHarness(options: { servers?: boolean; keyAlgorithm?: 'rsa' | 'cv25519' } = {}): Promise<SmtHarness> {
  const work = await mkdtemp(join(tmpdir(), 'mb-smt-test-'));
  // The FTP server serves `root` as an unprivileged user, who must be able to pass through here.
  await chmod(work, 0o711);
  const root = join(work, 'served');
  const [dynamo, s3, keyring] = await Promise.all([
    startDynamoDbLocal(),
    startLocalS3({ buckets: [ARCHIVE_BUCKET] }),
    createGpgKeyring(options.keyAlgorithm ?? 'rsa'),
  ]);
  const servers =
    options.servers === false ? (undefined as unknown as LocalSmtServers) : await startLocalSmtServers({ root, stateDir: join(work, 'servers') });
  const created: ObjectCreated[] = [];
  s3.onObjectCreated((event) => created.push(event));
  return {
    dynamo,
    s3,
    servers,
    keyring,
    root,
    work,
    created,
    async stop() {
      await servers?.stop();
      await Promise.all([dynamo.stop(), s3.stop(), keyring.dispose()]);
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** A Metrics buffer that is never flushed anywhere (tests read pending()). */
export function bufferMetrics(): Metrics {
  return new Metrics({
    client: new CloudWatchClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } }),
    defaultDimensions: { Stage: 'test', Source: 'smt' },
    log: silentLog,
  });
}

/** Sum of a counter (or of recorded values) among the pending datums, for the given Reason if any. */
export function metricValue(metrics: Metrics, name: string, reason?: string): number {
  let total = 0;
  for (const datum of metrics.pending()) {
    if (datum.MetricName !== name) continue;
    if (reason !== undefined && !datum.Dimensions?.some((d) => d.Name === 'Reason' && d.Value === reason)) continue;
    if (datum.Value !== undefined) total += datum.Value;
    datum.Values?.forEach((value, i) => (total += value * (datum.Counts?.[i] ?? 1)));
  }
  return total;
}

export function archiveOf(h: SmtHarness): RawArchive {
  return new RawArchive({ client: h.s3.client, bucket: ARCHIVE_BUCKET, partSize: 5 * 1024 * 1024 });
}

export function ledgerOf(h: SmtHarness, tables: TableNames, options: { lockSeconds?: number; clock?: () => Date } = {}): Ledger {
  return new Ledger({ client: h.dynamo.client, tableName: tables.ledger, lockSeconds: options.lockSeconds ?? 600, clock: options.clock });
}

export function storeOf(h: SmtHarness, tables: TableNames): ReadingStore {
  return new ReadingStore({ client: h.dynamo.client, tableName: tables.readings, blockTimeZone: 'America/Chicago' });
}

export function fetchDeps(
  h: SmtHarness,
  tables: TableNames,
  protocol: 'ftps' | 'sftp',
  overrides: Partial<SmtFetchDependencies> = {},
): SmtFetchDependencies {
  return {
    connect: () =>
      protocol === 'ftps' ? connectFtps({ ...h.servers.ftps, timeoutMs: 10_000 }) : connectSftp({ ...h.servers.sftp, timeoutMs: 10_000 }),
    folders: ['intervaldata', 'adhocusage'],
    archive: archiveOf(h),
    ledger: ledgerOf(h, tables),
    metrics: bufferMetrics(),
    log: silentLog,
    state: new SmtFetchState({ client: h.dynamo.client, tableName: tables.ledger }),
    serverId: protocol,
    ...overrides,
  };
}

export function processDeps(h: SmtHarness, tables: TableNames, overrides: Partial<SmtProcessDependencies> = {}): SmtProcessDependencies {
  const key = loadPrivateKey({ armoredKey: h.keyring.armoredPrivateKey, passphrase: h.keyring.passphrase });
  return {
    archive: archiveOf(h),
    ledger: ledgerOf(h, tables),
    store: storeOf(h, tables),
    metrics: bufferMetrics(),
    log: silentLog,
    keys: async () => [await key],
    tmpDir: h.work,
    ...overrides,
  };
}
