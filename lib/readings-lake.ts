/**
 * The readings data lake: every changed reading as Parquet in S3, partitioned by day and source,
 * with a Glue table (partition projection: no crawler, no partition maintenance) and an Athena
 * workgroup whose results are encrypted. The feed function (lib/readings-feed.ts) puts JSON rows
 * on the Firehose delivery stream; Firehose converts them to Parquet with the Glue table's schema
 * and writes them under readings/day=<day>/source=<source>/ (dynamic partitioning).
 *
 * The schema is lambdas/core/feed/lake-schema.ts, the same the local Parquet writer uses.
 */
import { Aws, Duration, Stack, Validations } from 'aws-cdk-lib';
import * as athena from 'aws-cdk-lib/aws-athena';
import * as glue from 'aws-cdk-lib/aws-glue';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { LAKE_COLUMNS, LAKE_PARTITION_KEYS, LAKE_PREFIX, LAKE_SOURCES, LAKE_TABLE } from '../lambdas/core/feed/lake-schema.ts';
import type { StageSettings } from './settings.ts';

export interface ReadingsLakeProps {
  readonly settings: StageSettings;
}

export class ReadingsLake extends Construct {
  public readonly bucket: s3.Bucket;
  public readonly resultsBucket: s3.Bucket;
  public readonly accessLogsBucket: s3.Bucket;
  public readonly key: kms.Key;
  public readonly databaseName: string;
  public readonly tableName = LAKE_TABLE;
  public readonly deliveryStream: firehose.CfnDeliveryStream;
  public readonly deliveryStreamName: string;
  public readonly workGroupName: string;

  constructor(scope: Construct, id: string, props: ReadingsLakeProps) {
    super(scope, id);
    const { settings } = props;
    const removalPolicy = settings.removalPolicy;
    this.databaseName = `meterbridge_${settings.stage.replace(/[^a-z0-9]/gi, '_').toLowerCase()}`;
    this.deliveryStreamName = `meterbridge-${settings.stage}-readings-lake`;
    this.workGroupName = `meterbridge-${settings.stage}-readings`;

    this.key = new kms.Key(this, 'Key', {
      description: `Encrypts the meterbridge ${settings.stage} readings lake, its Athena results and the Firehose error log`,
      enableKeyRotation: true,
      removalPolicy,
    });
    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      lifecycleRules: [{ expiration: Duration.days(365) }],
      removalPolicy,
    });
    Validations.of(this.accessLogsBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This bucket is the access-log target of the readings lake and its Athena results; logging the log bucket would recurse.',
    });
    const encrypted = {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.key,
      // One data key per object batch instead of a KMS call per object: Firehose and Athena write many objects.
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogsBucket,
      removalPolicy,
    } satisfies s3.BucketProps;
    this.bucket = new s3.Bucket(this, 'Bucket', {
      ...encrypted,
      serverAccessLogsPrefix: 'lake/',
      lifecycleRules: [
        { id: 'cold-after', transitions: [{ storageClass: s3.StorageClass.INTELLIGENT_TIERING, transitionAfter: Duration.days(30) }] },
        { id: 'abandoned-uploads', abortIncompleteMultipartUploadAfter: Duration.days(2) },
      ],
    });
    this.resultsBucket = new s3.Bucket(this, 'AthenaResults', {
      ...encrypted,
      serverAccessLogsPrefix: 'athena-results/',
      lifecycleRules: [{ id: 'results', expiration: Duration.days(30) }],
    });

    const table = this.createGlueTable();
    this.deliveryStream = this.createDeliveryStream(settings, table);
    new athena.CfnWorkGroup(this, 'WorkGroup', {
      name: this.workGroupName,
      description: `meterbridge ${settings.stage}: queries over the readings lake (${this.databaseName}.${LAKE_TABLE})`,
      state: 'ENABLED',
      recursiveDeleteOption: true,
      workGroupConfiguration: {
        enforceWorkGroupConfiguration: true,
        publishCloudWatchMetricsEnabled: true,
        // A runaway query over the whole history stops at 100 GB (about $0.50 scanned).
        bytesScannedCutoffPerQuery: 100 * 1024 ** 3,
        resultConfiguration: {
          outputLocation: `s3://${this.resultsBucket.bucketName}/results/`,
          encryptionConfiguration: { encryptionOption: 'SSE_KMS', kmsKey: this.key.keyArn },
        },
      },
    });
  }

  private createGlueTable(): glue.CfnTable {
    const database = new glue.CfnDatabase(this, 'Database', {
      catalogId: Aws.ACCOUNT_ID,
      databaseInput: { name: this.databaseName, description: 'meterbridge readings lake' },
    });
    const location = `s3://${this.bucket.bucketName}/${LAKE_PREFIX}`;
    const table = new glue.CfnTable(this, 'Table', {
      catalogId: Aws.ACCOUNT_ID,
      databaseName: this.databaseName,
      tableInput: {
        name: LAKE_TABLE,
        description: 'Every changed reading (superseded values stay, see revision); latest revision per interval: docs/readings-feed.md',
        tableType: 'EXTERNAL_TABLE',
        parameters: {
          classification: 'parquet',
          // Partition projection: Athena computes the partitions, nothing has to add them.
          'projection.enabled': 'true',
          'projection.day.type': 'date',
          'projection.day.format': 'yyyy-MM-dd',
          'projection.day.range': '2000-01-01,NOW+1DAYS',
          'projection.day.interval': '1',
          'projection.day.interval.unit': 'DAYS',
          'projection.source.type': 'enum',
          'projection.source.values': LAKE_SOURCES.join(','),
          'storage.location.template': `${location}day=\${day}/source=\${source}/`,
        },
        partitionKeys: LAKE_PARTITION_KEYS.map(({ name, glueType, comment }) => ({ name, type: glueType, comment })),
        storageDescriptor: {
          location,
          columns: LAKE_COLUMNS.map(({ name, glueType, comment }) => ({ name, type: glueType, comment })),
          inputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat',
          outputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat',
          serdeInfo: { serializationLibrary: 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe' },
        },
      },
    });
    table.addResourceDependency(database);
    return table;
  }

  private createDeliveryStream(settings: StageSettings, table: glue.CfnTable): firehose.CfnDeliveryStream {
    const errors = new logs.LogGroup(this, 'DeliveryErrors', { retention: settings.logRetention, removalPolicy: settings.removalPolicy });
    const errorStream = new logs.LogStream(this, 'DeliveryErrorStream', { logGroup: errors, removalPolicy: settings.removalPolicy });
    const role = new iam.Role(this, 'DeliveryRole', {
      assumedBy: new iam.ServicePrincipal('firehose.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } } }),
      description: `Firehose delivery of the meterbridge ${settings.stage} readings lake`,
    });
    const stack = Stack.of(this);
    const policy = new iam.Policy(this, 'DeliveryPolicy', {
      statements: [
        new iam.PolicyStatement({
          actions: [
            's3:AbortMultipartUpload',
            's3:GetBucketLocation',
            's3:GetObject',
            's3:ListBucket',
            's3:ListBucketMultipartUploads',
            's3:PutObject',
          ],
          resources: [this.bucket.bucketArn, this.bucket.arnForObjects('*')],
        }),
        new iam.PolicyStatement({ actions: ['kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey'], resources: [this.key.keyArn] }),
        new iam.PolicyStatement({
          actions: ['glue:GetTable', 'glue:GetTableVersion', 'glue:GetTableVersions'],
          resources: [
            stack.formatArn({ service: 'glue', resource: 'catalog' }),
            stack.formatArn({ service: 'glue', resource: 'database', resourceName: this.databaseName }),
            stack.formatArn({ service: 'glue', resource: 'table', resourceName: `${this.databaseName}/${LAKE_TABLE}` }),
          ],
        }),
        new iam.PolicyStatement({ actions: ['logs:PutLogEvents'], resources: [errors.logGroupArn] }),
      ],
    });
    policy.attachToRole(role);
    const bucketId = stack.resolve(stack.getLogicalId(this.bucket.node.defaultChild as s3.CfnBucket)) as string;
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/*]`,
      reason: 'Firehose writes one object per buffer under day and source partitions it chooses at run time; the grant is the lake bucket only.',
    });

    const stream = new firehose.CfnDeliveryStream(this, 'DeliveryStream', {
      deliveryStreamName: this.deliveryStreamName,
      deliveryStreamType: 'DirectPut',
      deliveryStreamEncryptionConfigurationInput: { keyType: 'AWS_OWNED_CMK' },
      extendedS3DestinationConfiguration: {
        bucketArn: this.bucket.bucketArn,
        roleArn: role.roleArn,
        prefix: `${LAKE_PREFIX}day=!{partitionKeyFromQuery:day}/source=!{partitionKeyFromQuery:source}/`,
        errorOutputPrefix: 'errors/!{firehose:error-output-type}/!{timestamp:yyyy-MM-dd}/',
        // Dynamic partitioning needs at least 64 MB; 15 minutes keeps a quiet stage's files coming.
        bufferingHints: { intervalInSeconds: 900, sizeInMBs: 128 },
        // Parquet compresses itself (SNAPPY below); Firehose requires UNCOMPRESSED with format conversion.
        compressionFormat: 'UNCOMPRESSED',
        encryptionConfiguration: { kmsEncryptionConfig: { awskmsKeyArn: this.key.keyArn } },
        cloudWatchLoggingOptions: { enabled: true, logGroupName: errors.logGroupName, logStreamName: errorStream.logStreamName },
        dynamicPartitioningConfiguration: { enabled: true, retryOptions: { durationInSeconds: 300 } },
        processingConfiguration: {
          enabled: true,
          processors: [
            {
              type: 'MetadataExtraction',
              parameters: [
                { parameterName: 'MetadataExtractionQuery', parameterValue: '{day: .day, source: .source}' },
                { parameterName: 'JsonParsingEngine', parameterValue: 'JQ-1.6' },
              ],
            },
          ],
        },
        dataFormatConversionConfiguration: {
          enabled: true,
          // Rows carry timestamps as epoch milliseconds (lake-schema.ts).
          inputFormatConfiguration: { deserializer: { hiveJsonSerDe: { timestampFormats: ['millis'] } } },
          outputFormatConfiguration: { serializer: { parquetSerDe: { compression: 'SNAPPY' } } },
          schemaConfiguration: {
            catalogId: Aws.ACCOUNT_ID,
            databaseName: this.databaseName,
            tableName: LAKE_TABLE,
            region: Aws.REGION,
            roleArn: role.roleArn,
            versionId: 'LATEST',
          },
        },
      },
    });
    stream.node.addDependency(policy, table);
    return stream;
  }

  /** Lets the grantee put records on the delivery stream (PutRecordBatch only). */
  public grantPutRecords(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({ grantee, actions: ['firehose:PutRecordBatch'], resourceArns: [this.deliveryStream.attrArn] });
  }
}
