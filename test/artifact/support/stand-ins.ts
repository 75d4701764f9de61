/**
 * The local AWS the shipped bundles run against, each endpoint behind a recording proxy
 * (recorder.ts): DynamoDB Local, s3rver, and moto for SQS, Secrets Manager and CloudWatch. Plus
 * provisioning from a synthesized template: every table, bucket, queue and secret the template
 * declares is created under a test name, and `physical` resolves the template's Ref/Fn::GetAtt to
 * those names and ARNs (for the functions' environment and for the IAM policies alike).
 */
import { IoTClient } from '@aws-sdk/client-iot';
import { CreateTableCommand, DynamoDBClient, type CreateTableCommandInput } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand, SQSClient } from '@aws-sdk/client-sqs';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CreateEventBusCommand, EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { CreateDeliveryStreamCommand, FirehoseClient } from '@aws-sdk/client-firehose';
import { CreateBucketCommand as CreateMotoBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { motoCloudWatchClient } from '../../../local/cloudwatch.ts';
import { randomUUID } from 'node:crypto';
import { startLocalS3, type LocalS3 } from '../../../local/s3-server.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../../support/dynamodb-local.ts';
import { startMoto, motoCredentials, type Moto } from '../../support/moto.ts';
import type { CfnTemplate, PhysicalResources, PolicyStatement } from './iam.ts';
import { evaluate } from './iam.ts';
import { startRecorder, type Recorder } from './recorder.ts';
import type { RuntimeVariable } from './lambda-sandbox.ts';

export const REGION = 'us-east-1';
/** moto's default account: the ARNs it makes carry it, so the template's AWS::AccountId resolves to it. */
export const ACCOUNT = '123456789012';
/** The only key pair s3rver accepts; DynamoDB Local keeps tables per key, so the test uses it too. */
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface StandIns {
  dynamo: LocalDynamo;
  s3: LocalS3;
  moto: Moto;
  /** Clients of the stand-ins themselves (not through the recorders), for setting up and reading outcomes. */
  clients: {
    dynamodb: DynamoDBClient;
    sqs: SQSClient;
    secrets: SecretsManagerClient;
    cloudwatch: CloudWatchClient;
    events: EventBridgeClient;
    firehose: FirehoseClient;
    /** moto's own S3, where moto's Firehose delivers (s3rver is the S3 the functions use). */
    motoS3: S3Client;
    iot: IoTClient;
  };
  recorders: { dynamodb: Recorder; s3: Recorder; moto: Recorder };
  /** The endpoint variables a function's environment gets (the recorders' URLs). */
  endpoints: Partial<Record<RuntimeVariable, string>>;
  /** Policies per caller (function logical id), set per stage; the S3 recorder asks them about ListBucket. */
  policies: Map<string, PolicyStatement[]>;
  /** Secret name -> full ARN (moto appends a random suffix), for the recorder and Ref. */
  secretArns: Map<string, string>;
  stop(): Promise<void>;
}

export async function startStandIns(): Promise<StandIns> {
  // One after the other: the JVM and moto both start slowly on a busy machine.
  const dynamo = await startDynamoDbLocal();
  const moto = await startMoto();
  const s3 = await startLocalS3({ buckets: [] });
  const policies = new Map<string, PolicyStatement[]>();
  const secretArns = new Map<string, string>();
  const base = { region: REGION, account: ACCOUNT };
  const secretArn = (id: string) =>
    id.startsWith('arn:') ? id : (secretArns.get(id) ?? `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${id}-unknown`);
  // Without an s3:prefix: a HeadObject carries none, and S3 does not document applying a ListBucket
  // grant's prefix condition to it, so only an unconditioned grant counts (conservative).
  const mayListBucket = (caller: string, bucketArn: string) =>
    evaluate(policies.get(caller) ?? [], { action: 's3:ListBucket', resource: bucketArn, context: {} }).allowed;
  const [dynamoRecorder, s3Recorder, motoRecorder] = await Promise.all([
    startRecorder({ ...base, target: dynamo.endpoint }),
    startRecorder({ ...base, target: s3.endpoint, mayListBucket }),
    startRecorder({ ...base, target: moto.endpoint, secretArn, decompressRequests: true }),
  ]);
  const motoClient = { endpoint: moto.endpoint, region: REGION, credentials: motoCredentials };
  const clients = {
    dynamodb: new DynamoDBClient({ endpoint: dynamo.endpoint, region: REGION, credentials: CREDENTIALS }),
    sqs: new SQSClient(motoClient),
    secrets: new SecretsManagerClient(motoClient),
    cloudwatch: motoCloudWatchClient(moto),
    iot: new IoTClient(motoClient),
    events: new EventBridgeClient(motoClient),
    firehose: new FirehoseClient(motoClient),
    motoS3: new S3Client({ ...motoClient, forcePathStyle: true }),
  };
  return {
    dynamo,
    s3,
    moto,
    clients,
    recorders: { dynamodb: dynamoRecorder, s3: s3Recorder, moto: motoRecorder },
    endpoints: {
      AWS_ENDPOINT_URL_DYNAMODB: dynamoRecorder.url,
      AWS_ENDPOINT_URL_S3: s3Recorder.url,
      AWS_ENDPOINT_URL_SQS: motoRecorder.url,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: motoRecorder.url,
      AWS_ENDPOINT_URL_CLOUDWATCH: motoRecorder.url,
      AWS_ENDPOINT_URL_IOT: motoRecorder.url,
      AWS_ENDPOINT_URL_EVENTBRIDGE: motoRecorder.url,
      AWS_ENDPOINT_URL_FIREHOSE: motoRecorder.url,
    },
    policies,
    secretArns,
    async stop() {
      for (const client of Object.values(clients)) client.destroy();
      await Promise.all([dynamoRecorder.stop(), s3Recorder.stop(), motoRecorder.stop()]);
      await Promise.all([dynamo.stop(), s3.stop(), moto.stop()]);
    },
  };
}

export interface Provisioned {
  physical: PhysicalResources;
  /** Physical name (table, bucket, queue URL, secret ARN) by logical id. */
  names: Map<string, string>;
}

/**
 * Creates what the template declares, under fresh names: DynamoDB tables with the template's keys
 * and indexes, S3 buckets, SQS queues, Secrets Manager secrets (`secretValues` by logical id), and
 * the secrets the functions only reference by name (`namedSecrets`).
 */
export async function provision(
  standIns: StandIns,
  template: CfnTemplate,
  options: { secretValues: (logicalId: string) => string; namedSecrets: Record<string, string> },
): Promise<Provisioned> {
  const suffix = randomUUID().slice(0, 6);
  const names = new Map<string, string>();
  const attrs = new Map<string, Record<string, string>>();
  let bucketCount = 0;
  for (const [id, resource] of Object.entries(template.Resources)) {
    const p = resource.Properties ?? {};
    switch (resource.Type) {
      case 'AWS::DynamoDB::Table': {
        const name = `art-${suffix}-${id}`;
        const input: CreateTableCommandInput = {
          TableName: name,
          KeySchema: p.KeySchema as CreateTableCommandInput['KeySchema'],
          AttributeDefinitions: p.AttributeDefinitions as CreateTableCommandInput['AttributeDefinitions'],
          BillingMode: 'PAY_PER_REQUEST',
          ...(p.StreamSpecification
            ? { StreamSpecification: { StreamEnabled: true, ...(p.StreamSpecification as { StreamViewType: 'NEW_AND_OLD_IMAGES' }) } }
            : {}),
          ...(p.GlobalSecondaryIndexes
            ? {
                GlobalSecondaryIndexes: (p.GlobalSecondaryIndexes as Array<Record<string, unknown>>).map(({ IndexName, KeySchema, Projection }) => ({
                  IndexName,
                  KeySchema,
                  Projection,
                })) as CreateTableCommandInput['GlobalSecondaryIndexes'],
              }
            : {}),
        };
        const created = await standIns.clients.dynamodb.send(new CreateTableCommand(input));
        names.set(id, name);
        const streamArn = created.TableDescription?.LatestStreamArn;
        attrs.set(id, { Arn: `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${name}`, ...(streamArn ? { StreamArn: streamArn } : {}) });
        break;
      }
      case 'AWS::S3::Bucket': {
        bucketCount += 1;
        const name = `art-${suffix}-b${bucketCount}`;
        await standIns.s3.client.send(new CreateBucketCommand({ Bucket: name }));
        names.set(id, name);
        attrs.set(id, {
          Arn: `arn:aws:s3:::${name}`,
          DomainName: `${name}.s3.amazonaws.com`,
          RegionalDomainName: `${name}.s3.${REGION}.amazonaws.com`,
        });
        break;
      }
      case 'AWS::SQS::Queue': {
        const name = `art-${suffix}-${id}`.slice(0, 80);
        const created = await standIns.clients.sqs.send(new CreateQueueCommand({ QueueName: name }));
        // Through the recorder, so the bundles' calls with this URL are recorded whatever endpoint the SDK picks.
        const url = new URL(new URL(created.QueueUrl!).pathname, standIns.recorders.moto.url).href;
        names.set(id, url);
        attrs.set(id, { Arn: `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}`, QueueName: name, QueueUrl: url });
        break;
      }
      case 'AWS::SecretsManager::Secret': {
        const created = await standIns.clients.secrets.send(
          new CreateSecretCommand({ Name: `art-${suffix}-${id}`, SecretString: options.secretValues(id) }),
        );
        names.set(id, created.ARN!);
        standIns.secretArns.set(`art-${suffix}-${id}`, created.ARN!);
        attrs.set(id, { Id: created.ARN! });
        break;
      }
      case 'AWS::Events::EventBus': {
        const name = typeof p.Name === 'string' ? p.Name : `art-${suffix}-${id}`;
        const created = await standIns.clients.events.send(new CreateEventBusCommand({ Name: name }));
        names.set(id, name);
        attrs.set(id, { Arn: created.EventBusArn!, Name: name });
        break;
      }
      case 'AWS::KinesisFirehose::DeliveryStream': {
        // moto's Firehose delivers JSON to moto's S3 (no format conversion or dynamic partitioning): the rows as sent.
        const name = typeof p.DeliveryStreamName === 'string' ? p.DeliveryStreamName : `art-${suffix}-${id}`;
        const bucket = `art-${suffix}-firehose`;
        await standIns.clients.motoS3.send(new CreateMotoBucketCommand({ Bucket: bucket }));
        const created = await standIns.clients.firehose.send(
          new CreateDeliveryStreamCommand({
            DeliveryStreamName: name,
            DeliveryStreamType: 'DirectPut',
            ExtendedS3DestinationConfiguration: {
              BucketARN: `arn:aws:s3:::${bucket}`,
              RoleARN: `arn:aws:iam::${ACCOUNT}:role/firehose-${suffix}`,
              Prefix: 'readings/',
              BufferingHints: { IntervalInSeconds: 60, SizeInMBs: 1 },
            },
          }),
        );
        names.set(id, name);
        attrs.set(id, { Arn: created.DeliveryStreamARN!, MotoBucket: bucket });
        break;
      }
      case 'AWS::Logs::LogGroup': {
        const name = `/aws/art/${suffix}/${id}`;
        names.set(id, name);
        attrs.set(id, { Arn: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${name}:*` });
        break;
      }
      default:
        break;
    }
  }
  for (const [name, value] of Object.entries(options.namedSecrets)) {
    const created = await standIns.clients.secrets.send(new CreateSecretCommand({ Name: name, SecretString: value }));
    standIns.secretArns.set(name, created.ARN!);
  }
  const generic = (id: string) => {
    const type = template.Resources[id]?.Type;
    if (type === undefined) return undefined;
    // Resources the functions never call (roles, keys, topics, functions): stable placeholder ARNs.
    const service = type.split('::')[1]?.toLowerCase() ?? 'unknown';
    return `arn:aws:${service}:${REGION}:${ACCOUNT}:${id}-${suffix}`;
  };
  return {
    names,
    physical: {
      region: REGION,
      account: ACCOUNT,
      ref: (id) => names.get(id) ?? generic(id),
      getAtt: (id, attribute) => attrs.get(id)?.[attribute] ?? (attribute === 'Arn' ? generic(id) : undefined),
    },
  };
}
