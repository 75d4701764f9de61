/**
 * The meterbridge stack of one stage. Ingestion paths (IoT, SMT, READY) are added as their own
 * constructs on top of the storage and alarm topic created here.
 */
import { CfnOutput, Stack, Tags, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { telemetryTopic } from '../shared/telemetry.ts';
import { AlarmTopic } from './alarm-topic.ts';
import { IotIngestion } from './iot-ingestion.ts';
import { Operations } from './operations.ts';
import { QueryApi } from './query-api.ts';
import { ReadingsFeed } from './readings-feed.ts';
import { ReadingsLake } from './readings-lake.ts';
import { ReadyIngestion } from './ready-ingestion.ts';
import { SmtIngestion } from './smt-ingestion.ts';
import type { StageSettings } from './settings.ts';
import { ReadingStorage } from './storage.ts';

export interface MeterbridgeStackProps extends StackProps {
  /** Validated settings of the stage this stack deploys (see lib/settings.ts). */
  readonly settings: StageSettings;
}

export class MeterbridgeStack extends Stack {
  public readonly settings: StageSettings;
  public readonly storage: ReadingStorage;
  public readonly alarms: AlarmTopic;
  /** Ingestion path 1: gateways over MQTT to IoT Core, through SQS into the store. */
  public readonly iot: IotIngestion;
  /** Ingestion path 3: Kamstrup READY webhooks through API Gateway into the store. */
  public readonly ready: ReadyIngestion;
  /** Ingestion path 2: Smart Meter Texas files, pulled on a schedule, archived, decrypted, stored. */
  public readonly smt: SmtIngestion;
  /** Dashboard and alarms over every ingestion path and the tables. */
  public readonly operations: Operations;
  /** Readings out: meters, channels and readings as JSON, CSV or Green Button (IAM-authorized REST). */
  public readonly queryApi: QueryApi;
  /** Readings out: the Parquet data lake (S3, Glue, Athena) fed from the readings table's stream. */
  public readonly lake: ReadingsLake;
  /** Readings out: one EventBridge event per block write that changed data, and the lake's rows. */
  public readonly feed: ReadingsFeed;

  constructor(scope: Construct, id: string, props: MeterbridgeStackProps) {
    super(scope, id, props);
    const { settings } = props;
    this.settings = settings;

    this.storage = new ReadingStorage(this, 'Storage', {
      removalPolicy: settings.removalPolicy,
      deletionProtection: settings.deletionProtection,
    });
    this.alarms = new AlarmTopic(this, 'Alarms', {
      alarmEmail: settings.alarmEmail,
      displayName: `meterbridge ${settings.stage} alarms`,
      removalPolicy: settings.removalPolicy,
    });
    this.iot = new IotIngestion(this, 'Iot', { settings, storage: this.storage });
    this.ready = new ReadyIngestion(this, 'Ready', { settings, storage: this.storage, alarms: this.alarms });
    this.smt = new SmtIngestion(this, 'Smt', { settings, storage: this.storage });
    this.queryApi = new QueryApi(this, 'Query', { settings, storage: this.storage });
    this.lake = new ReadingsLake(this, 'Lake', { settings });
    this.feed = new ReadingsFeed(this, 'Feed', { settings, storage: this.storage, lake: this.lake, alarms: this.alarms });

    // After every ingestion path: each one's `monitoring` goes in this list (one line per path).
    this.operations = new Operations(this, 'Operations', {
      settings,
      storage: this.storage,
      alarmTopic: this.alarms,
      ingestion: [
        this.iot.monitoring,
        this.ready.monitoring,
        // Watched only when switched on: a disabled pull would hold its freshness alarms in ALARM.
        ...(this.smt.smtSettings.enabled ? [this.smt.monitoring] : []),
      ],
      stageAlarms: this.feed.monitoring,
    });

    this.addOutputs();

    // Cost allocation and "which stage is this?" in the console, on every taggable resource.
    Tags.of(this).add('Project', 'meterbridge');
    Tags.of(this).add('Stage', settings.stage);
  }

  /** What an operator needs after `cdk deploy`: table, topic, rule, API, bus, lake and bucket names. */
  private addOutputs(): void {
    new CfnOutput(this, 'ReadingsTableName', {
      description: 'DynamoDB table of interval blocks of readings',
      value: this.storage.readingsTable.tableName,
    });
    new CfnOutput(this, 'LedgerTableName', {
      description: 'DynamoDB table of claimed units of work',
      value: this.storage.ledgerTable.tableName,
    });
    new CfnOutput(this, 'DashboardName', {
      description: 'CloudWatch dashboard of this stage (alarm status, one band per source, the tables)',
      value: this.operations.dashboard.dashboardName,
    });
    new CfnOutput(this, 'AlarmTopicArn', {
      description: 'SNS topic notified by every alarm; subscribe on-call tooling here',
      value: this.alarms.topic.topicArn,
    });
    new CfnOutput(this, 'IotTelemetryRuleName', {
      description: 'IoT topic rule receiving gateway telemetry (Basic Ingest)',
      value: this.iot.ruleName,
    });
    new CfnOutput(this, 'IotTelemetryTopic', {
      description: 'Topic a gateway publishes telemetry to; <thingName> is its own thing name, which must also be its MQTT client id',
      value: telemetryTopic(this.iot.ruleName, '<thingName>'),
    });
    new CfnOutput(this, 'IotGatewayPolicyName', {
      description: 'IoT policy to attach to every gateway certificate',
      value: this.iot.policy.ref,
    });
    new CfnOutput(this, 'IotGatewayThingTypeName', {
      description: 'Thing type to create gateway things with',
      value: this.iot.thingType.ref,
    });

    new CfnOutput(this, 'QueryApiUrl', {
      description: 'Query API base URL (IAM-authorized, SigV4): GET <this>meters, meters/{meterId}, meters/{meterId}/readings?format=json|csv|espi',
      value: this.queryApi.url,
    });

    new CfnOutput(this, 'ReadingsEventBusName', {
      description: 'EventBridge bus with one "Readings changed" event per block write that changed data (docs/readings-feed.md)',
      value: this.feed.bus.eventBusName,
    });
    new CfnOutput(this, 'ReadingsLakeBucketName', {
      description: 'S3 bucket of the readings lake (Parquet under readings/day=<day>/source=<source>/)',
      value: this.lake.bucket.bucketName,
    });
    new CfnOutput(this, 'ReadingsLakeAthena', {
      description: 'Athena workgroup and Glue database.table of the readings lake',
      value: `${this.lake.workGroupName} ${this.lake.databaseName}.${this.lake.tableName}`,
    });

    new CfnOutput(this, 'SmtArchiveBucketName', {
      description: 'S3 bucket holding every SMT file as fetched (smt/<folder>/<name>); `meterbridge smt replay <key> --bucket <this>`',
      value: this.smt.archiveBucket.bucketName,
    });
    if (this.smt.egress) {
      new CfnOutput(this, 'SmtEgressIps', {
        description: 'Public IP address(es) the SMT fetch function connects from: register every one with SMT (docs/deploy.md)',
        value: this.smt.egress.addresses,
      });
    }
    new CfnOutput(this, 'SmtFetchFunctionName', {
      description: 'Scheduled SMT fetch function (invoke it to pull now)',
      value: this.smt.fetchFunction.functionName,
    });
    new CfnOutput(this, 'ReadyWebhookUri', {
      description: 'READY data callback URL: register it as WebhookUri (meterbridge ready subscribe)',
      value: this.ready.webhookUrl,
    });
    new CfnOutput(this, 'ReadyStatusUri', {
      description: 'READY status callback URL: register it as StatusUri',
      value: this.ready.statusUrl,
    });
    new CfnOutput(this, 'ReadySecretArn', {
      description: 'Secrets Manager secret to put the READY credentials in: {"tenantId","clientId","clientSecret","signingKey"}',
      value: this.ready.secret.secretArn,
    });
    new CfnOutput(this, 'ReadyArchiveBucketName', {
      description: 'S3 bucket holding every READY callback byte-exact (ready/<data|status>/YYYY/MM/DD/)',
      value: this.ready.archiveBucket.bucketName,
    });
  }
}
