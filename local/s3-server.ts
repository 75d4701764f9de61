/**
 * S3 stand-in for tests and local mode: s3rver (a real S3 REST endpoint on loopback, files under a
 * folder), with the buckets created up front. It also reports object-created events the way an S3
 * bucket notification would, so local mode can drive the same "archive -> process" step.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

export interface ObjectCreated {
  bucket: string;
  key: string;
  size: number;
}

export interface LocalS3 {
  endpoint: string;
  /** A client configured for this endpoint (path-style, dummy credentials). */
  client: S3Client;
  /** Called for every object created (PUT, multipart complete, copy). */
  onObjectCreated(listener: (event: ObjectCreated) => void): void;
  stop(): Promise<void>;
}

export interface LocalS3Options {
  buckets: string[];
  /** 0 = any free port. @default 0 */
  port?: number;
  /** Where objects are kept; a temporary folder (removed on stop) when not given. */
  directory?: string;
}

interface S3rverEventRecord {
  eventName: string;
  s3: { bucket: { name: string }; object: { key: string; size: number } };
}

export async function startLocalS3(options: LocalS3Options): Promise<LocalS3> {
  const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'mb-s3-'));
  const server = new S3rver({ port: options.port ?? 0, address: '127.0.0.1', silent: true, directory });
  const address = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${address.port}`;
  const client = localS3Client(endpoint);
  try {
    for (const bucket of options.buckets) await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (error) {
    // A failed start must not leave the server listening (it would hold the port and keep the process alive).
    client.destroy();
    await server.close();
    throw error;
  }
  const listeners: ((event: ObjectCreated) => void)[] = [];
  server.on('event', (event: { Records: S3rverEventRecord[] }) => {
    for (const record of event.Records) {
      if (!record.eventName.startsWith('ObjectCreated')) continue;
      // s3rver reports the raw key; real S3 notifications URL-encode it (the process step decodes those).
      const created = { bucket: record.s3.bucket.name, key: record.s3.object.key, size: record.s3.object.size };
      for (const listener of listeners) listener(created);
    }
  });
  return {
    endpoint,
    client,
    onObjectCreated: (listener) => listeners.push(listener),
    async stop() {
      client.destroy();
      await server.close();
      if (!options.directory) rmSync(directory, { recursive: true, force: true });
    },
  };
}

export function localS3Client(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
}

/**
 * The body S3 sends to an SQS queue for an object-created notification (the fields the process
 * step reads), with the key URL-encoded as S3 encodes it (spaces as `+`).
 */
export function toS3NotificationBody(event: ObjectCreated, eventTime = new Date()): string {
  return JSON.stringify({
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: 'us-east-1',
        eventTime: eventTime.toISOString(),
        eventName: 'ObjectCreated:Put',
        s3: {
          s3SchemaVersion: '1.0',
          bucket: { name: event.bucket, arn: `arn:aws:s3:::${event.bucket}` },
          object: { key: encodeURIComponent(event.key).replace(/%20/g, '+').replace(/%2F/g, '/'), size: event.size },
        },
      },
    ],
  });
}

/**
 * The files s3rver keeps the objects of `bucket` under `prefix` in (inside `directory`, its
 * storage folder): `<bucket>/<key>._S3rver_object`. For readers of a stopped local mode's objects,
 * e.g. `meterbridge readings sql` over the lake's Parquet files.
 */
export function storedObjectFiles(directory: string, bucket: string, prefix = ''): string[] {
  const root = join(directory, bucket);
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[])
    .filter((file) => file.endsWith('._S3rver_object') && file.startsWith(prefix))
    .map((file) => join(root, file))
    .sort();
}
