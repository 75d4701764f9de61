/**
 * The READY webhook over real HTTP on loopback, on real stand-ins: DynamoDB Local (store, ledger,
 * subscription states), s3rver (archive), the recording CloudWatch endpoint (metrics).
 */
import { ListObjectsV2Command, GetObjectCommand } from '@aws-sdk/client-s3';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { randomUUID } from 'node:crypto';
import { silentLog } from '../../shared/log.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import type { VerificationConfig } from '../../lambdas/core/ready/handshake.ts';
import type { ReadyCredentials } from '../../lambdas/core/ready/secret.ts';
import type { ReadyWebhookDependencies } from '../../lambdas/core/ready/webhook.ts';
import { localReadyDependencies, startReadyHttp, type ReadyHttp } from '../../local/ready-http.ts';
import { startLocalS3, type LocalS3 } from '../../local/s3-server.ts';
import { startLocalCloudWatch, type LocalCloudWatch } from './cloudwatch.ts';
import { startDynamoDbLocal, type LocalDynamo } from './dynamodb-local.ts';

export const READY_BUCKET = 'ready-archive';

export interface ReadyStandIns {
  dynamo: LocalDynamo;
  s3: LocalS3;
  cloudwatch: LocalCloudWatch;
  stop(): Promise<void>;
}

export async function startReadyStandIns(): Promise<ReadyStandIns> {
  const [dynamo, s3, cloudwatch] = await Promise.all([startDynamoDbLocal(), startLocalS3({ buckets: [READY_BUCKET] }), startLocalCloudWatch()]);
  return {
    dynamo,
    s3,
    cloudwatch,
    async stop() {
      await Promise.all([dynamo.stop(), s3.stop(), cloudwatch.stop()]);
    },
  };
}

export interface ReadyReceiver {
  http: ReadyHttp;
  store: ReadingStore;
  tables: { readings: string; ledger: string };
  /** Archive prefix unique to this receiver, so tests do not see each other's objects. */
  prefix: string;
  stop(): Promise<void>;
}

export async function startReadyReceiver(
  standIns: ReadyStandIns,
  options: {
    credentials?: ReadyCredentials;
    verification?: VerificationConfig;
    maxBodyBytes?: number;
    now?: () => Date;
    overrides?: Partial<ReadyWebhookDependencies>;
  } = {},
): Promise<ReadyReceiver> {
  const tables = await standIns.dynamo.freshTables();
  const prefix = `t-${randomUUID().slice(0, 8)}`;
  const base = localReadyDependencies({
    dynamodb: standIns.dynamo.client,
    tables,
    blockTimeZone: 'America/Chicago',
    s3: standIns.s3.client,
    archiveBucket: READY_BUCKET,
    cloudwatch: standIns.cloudwatch.client(),
    credentials: options.credentials ?? { clientSecret: 'c2VjcmV0LWZyb20tcmVhZHk=' },
    stage: 'test',
    log: silentLog,
    ...(options.verification ? { verification: options.verification } : {}),
    ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}),
  });
  const http = await startReadyHttp({
    handlerDeps: () => ({ ...base(), archivePrefix: prefix, ...(options.now ? { clock: options.now } : {}), ...options.overrides }),
  });
  // For the tests' queries; the store is stateless, so a second instance sees what the webhook wrote.
  const store = new ReadingStore({ client: standIns.dynamo.client, tableName: tables.readings, blockTimeZone: 'America/Chicago' });
  return { http, store, tables, prefix, stop: () => http.stop() };
}

/** Every object under the receiver's prefix, with its bytes. */
export async function archivedObjects(standIns: ReadyStandIns, prefix: string): Promise<Array<{ key: string; body: Buffer }>> {
  const listed = await standIns.s3.client.send(new ListObjectsV2Command({ Bucket: READY_BUCKET, Prefix: `${prefix}/` }));
  const objects: Array<{ key: string; body: Buffer }> = [];
  for (const item of listed.Contents ?? []) {
    const object = await standIns.s3.client.send(new GetObjectCommand({ Bucket: READY_BUCKET, Key: item.Key }));
    objects.push({ key: item.Key ?? '', body: Buffer.from(await object.Body!.transformToByteArray()) });
  }
  return objects;
}

/** Items in the readings table (blocks): zero means nothing at all was stored. */
export async function storedBlocks(standIns: ReadyStandIns, table: string): Promise<number> {
  const scan = await standIns.dynamo.client.send(new ScanCommand({ TableName: table, Select: 'COUNT' }));
  return scan.Count ?? 0;
}

/** Sum of what CloudWatch (moto) stored for a metric, optionally for one dimension value. */
export function metricSum(cloudwatch: LocalCloudWatch, name: string, dimension?: { name: string; value: string }): Promise<number> {
  return cloudwatch.sum(name, dimension);
}
