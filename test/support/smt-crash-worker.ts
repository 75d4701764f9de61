/**
 * Runs one SMT step in a child process and kills itself (SIGKILL: no finally blocks, no claim
 * released) at the step named in the config: how the crash tests die "for real".
 *
 * Config (env MB_SMT_CRASH, JSON): { step: 'fetch' | 'process', dieAt, dynamoEndpoint, tables,
 * s3Endpoint, bucket, ftps, key?, armoredKey, passphrase, tmpDir }.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Ledger } from '../../lambdas/core/ledger.ts';
import { silentLog } from '../../shared/log.ts';
import { RawArchive } from '../../lambdas/core/raw-archive.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { loadPrivateKey } from '../../lambdas/core/smt/pgp/decrypt.ts';
import { runSmtFetch } from '../../lambdas/core/smt/transport/fetch.ts';
import { connectFtps, type FtpsOptions } from '../../lambdas/core/smt/transport/ftps.ts';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import { localS3Client } from '../../local/s3-server.ts';
import { bufferMetrics } from './smt-harness.ts';

interface CrashConfig {
  step: 'fetch' | 'process';
  dieAt: string;
  dynamoEndpoint: string;
  tables: { readings: string; ledger: string };
  s3Endpoint: string;
  bucket: string;
  ftps: FtpsOptions;
  key?: string;
  armoredKey: string;
  passphrase: string;
  tmpDir: string;
}

const config = JSON.parse(process.env.MB_SMT_CRASH ?? '{}') as CrashConfig;
const dynamo = new DynamoDBClient({
  endpoint: config.dynamoEndpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
});
const archive = new RawArchive({ client: localS3Client(config.s3Endpoint), bucket: config.bucket });
const ledger = new Ledger({ client: dynamo, tableName: config.tables.ledger, lockSeconds: 600 });
const die = (step: string) => {
  if (step === config.dieAt) process.kill(process.pid, 'SIGKILL');
};

if (config.step === 'fetch') {
  await runSmtFetch({
    connect: () => connectFtps(config.ftps),
    folders: ['intervaldata'],
    archive,
    ledger,
    metrics: bufferMetrics(),
    log: silentLog,
    serverId: 'ftps',
    onStep: (step) => die(step),
  });
} else {
  const key = await loadPrivateKey({ armoredKey: config.armoredKey, passphrase: config.passphrase });
  await processArchivedFile(
    {
      archive,
      ledger,
      store: new ReadingStore({ client: dynamo, tableName: config.tables.readings, blockTimeZone: 'America/Chicago' }),
      metrics: bufferMetrics(),
      log: silentLog,
      keys: async () => [key],
      tmpDir: config.tmpDir,
      onStep: (step) => die(step),
    },
    config.key!,
  );
}
process.stdout.write('finished without dying\n');
