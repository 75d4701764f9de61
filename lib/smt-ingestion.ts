/**
 * Ingestion path 2: Smart Meter Texas files.
 *
 *   EventBridge schedule ─▶ fetch λ ─FTPS/SFTP─▶ SMT server (list, get, delete after archiving)
 *                             └─▶ S3 raw archive (versioned, encrypted, access-logged, lifecycle)
 *                                   └─ object created ─▶ queue (+ DLQ) ─▶ process λ ─▶ store, ledger
 *   daily schedule ─▶ missing-days λ ─▶ reads each ESIID's newest day ─▶ SmtMissingEsiidDays (lib/smt-missing-days.ts)
 *
 * The archive sits between the two steps so every file SMT sent is kept byte for byte before
 * anything interprets it: a wrong key, a drifted layout or a bug costs a replay, never data.
 */
import { fileURLToPath } from 'node:url';
import { Duration, Size, Stack, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { FUNCTION_TIMEOUT_SECONDS } from '../lambdas/core/work-units.ts';
import { ArchiveBucket } from './archive-bucket.ts';
import { FixedEgress } from './fixed-egress.ts';
import type { IngestionMonitoring } from './monitoring.ts';
import { executionRoleOf, MeterbridgeFunction } from './meterbridge-function.ts';
import type { StageSettings } from './settings.ts';
import type { SmtSettings } from './smt-settings.ts';
import { SmtMissingDays } from './smt-missing-days.ts';
import type { ReadingStorage } from './storage.ts';

const FETCH_ENTRY = fileURLToPath(new URL('../lambdas/smt-fetch.ts', import.meta.url));
const PROCESS_ENTRY = fileURLToPath(new URL('../lambdas/smt-process.ts', import.meta.url));

/** Archive keys are `smt/<folder>/<file name>`. */
export const SMT_ARCHIVE_PREFIX = 'smt/';

const FETCH_TIMEOUT = Duration.seconds(FUNCTION_TIMEOUT_SECONDS['smt-fetch']);
const PROCESS_TIMEOUT = Duration.seconds(FUNCTION_TIMEOUT_SECONDS['smt-file']);

/**
 * Bundling of both SMT functions, over MeterbridgeFunction's defaults (whose banner already gives
 * createRequire a name of its own, since openpgp imports `createRequire` too): ssh2's optional
 * native add-ons (built for this machine, not Lambda's arm64) stay out of the bundle; ssh2 falls
 * back to its pure-JS crypto when they cannot be loaded.
 */
export const SMT_BUNDLING = {
  externalModules: ['@aws-sdk/*', 'cpu-features', '*.node'],
};

export interface SmtIngestionProps {
  /** Stage settings; `settings.smt` holds host, protocol, folders, schedule and secret names. */
  readonly settings: StageSettings;
  /** Tables the process step stores readings in; both steps claim work in the ledger. */
  readonly storage: ReadingStorage;
  /**
   * Overrides `settings.smt` (tests).
   * @default settings.smt
   */
  readonly smt?: SmtSettings;
}

/** Schedule, fetch function, raw archive, file queue with DLQ, process function, secret references. */
export class SmtIngestion extends Construct {
  /** Every file fetched from SMT, as fetched (lib/archive-bucket.ts: versioned, SSE-S3, TLS only, access-logged). */
  public readonly archiveBucket: s3.Bucket;
  /** Target of the archive's server access logs. */
  public readonly accessLogsBucket: s3.Bucket;
  /** Object-created notifications of the archive, consumed by the process function. */
  public readonly queue: sqs.Queue;
  /** Files whose processing kept failing transiently (a permanent failure is in the ledger instead). */
  public readonly deadLetterQueue: sqs.Queue;
  public readonly fetchFunction: MeterbridgeFunction;
  public readonly processFunction: MeterbridgeFunction;
  /** The schedule of the fetch step (disabled while `smt.enabled` is false). */
  public readonly schedule: events.Rule;
  /** FTPS/SFTP credentials, referenced by name (created and filled by the operator). */
  public readonly transportSecret: secretsmanager.ISecret;
  /** Our PGP private key and passphrase, referenced by name. */
  public readonly pgpSecret: secretsmanager.ISecret;
  public readonly smtSettings: SmtSettings;
  /** The VPC, NAT gateway(s) and Elastic IP(s) the fetch function leaves through (smt.fixedEgressIp). */
  public readonly egress?: FixedEgress;
  /** The daily check for ESIIDs SMT stopped delivering. */
  public readonly missingDays: SmtMissingDays;

  /** What the operations construct watches on this path. */
  public get monitoring(): IngestionMonitoring {
    return {
      source: 'smt',
      functions: [
        { label: 'fetch', fn: this.fetchFunction },
        { label: 'process', fn: this.processFunction },
        { label: 'missing-days', fn: this.missingDays.function },
      ],
      queues: [{ label: 'files', queue: this.queue, deadLetterQueue: this.deadLetterQueue }],
      // SMT publishes daily files (the previous day, usually by early morning); a day and a half
      // without new readings is a missed delivery, not a late one.
      expectedSilenceMinutes: 36 * 60,
    };
  }

  constructor(scope: Construct, id: string, props: SmtIngestionProps) {
    super(scope, id);
    const { settings, storage } = props;
    const smt = props.smt ?? settings.smt;
    this.smtSettings = smt;

    const archive = this.createArchive(settings, smt);
    this.archiveBucket = archive.bucket;
    this.accessLogsBucket = archive.accessLogsBucket;
    this.deadLetterQueue = this.createDeadLetterQueue(settings);
    this.queue = this.createFileQueue(settings);

    // --- secrets (referenced; an operator creates and fills them, see docs/smt.md) -------------

    this.transportSecret = secretsmanager.Secret.fromSecretNameV2(this, 'TransportSecret', smt.transportSecretName);
    this.pgpSecret = secretsmanager.Secret.fromSecretNameV2(this, 'PgpSecret', smt.pgpSecretName);

    // --- egress ------------------------------------------------------------------------------

    if (smt.fixedEgressIp) this.egress = new FixedEgress(this, 'Egress', { stage: settings.stage, availabilityZones: smt.egressAvailabilityZones });

    this.fetchFunction = this.createFetchFunction(settings, storage, smt);
    this.processFunction = this.createProcessFunction(settings, storage, smt);
    this.grantFunctions(storage, archive);

    this.processFunction.addEventSource(
      new SqsEventSource(this.queue, {
        // One file per invocation: a file may take minutes, and a failure then retries only itself.
        batchSize: 1,
        reportBatchItemFailures: true,
        // Caps the write rate a backlog (a month of replays) puts on the store.
        maxConcurrency: 5,
      }),
    );

    this.schedule = new events.Rule(this, 'FetchSchedule', {
      description: `meterbridge ${settings.stage}: pull Smart Meter Texas files`,
      schedule: events.Schedule.expression(smt.schedule),
      enabled: smt.enabled,
      targets: [new targets.LambdaFunction(this.fetchFunction, { retryAttempts: 0 })],
    });

    this.missingDays = new SmtMissingDays(this, 'MissingDays', { settings, storage, smt });
  }

  // --- archive ------------------------------------------------------------------------------

  private createArchive(settings: StageSettings, smt: SmtSettings): ArchiveBucket {
    // SSE-S3, versioned (a re-delivered file name keeps the earlier version), TLS only, access-logged,
    // Glacier Instant Retrieval after a while (still readable at once for replays).
    return new ArchiveBucket(this, 'Archive', {
      purpose: 'smt',
      removalPolicy: settings.removalPolicy,
      coldAfterDays: smt.archiveColdAfterDays,
      noncurrentVersionDays: 90,
    });
  }

  // --- queue --------------------------------------------------------------------------------

  private createDeadLetterQueue(settings: StageSettings): sqs.Queue {
    return new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: settings.removalPolicy,
    });
  }

  private createFileQueue(settings: StageSettings): sqs.Queue {
    const queue = new sqs.Queue(this, 'FileQueue', {
      // SSE-SQS: S3 can publish to it without a KMS key policy.
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // Six times the function timeout (AWS guidance for Lambda event sources).
      visibilityTimeout: Duration.seconds(PROCESS_TIMEOUT.toSeconds() * 6),
      retentionPeriod: Duration.days(14),
      removalPolicy: settings.removalPolicy,
      // Three tries: transient failures heal in one retry; what fails three times needs a person.
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 3 },
    });
    this.archiveBucket.addEventNotification(s3.EventType.OBJECT_CREATED, new s3n.SqsDestination(queue), { prefix: SMT_ARCHIVE_PREFIX });
    acknowledgeNotificationsHandler(Stack.of(this));
    return queue;
  }

  // --- functions ----------------------------------------------------------------------------

  private createFetchFunction(settings: StageSettings, storage: ReadingStorage, smt: SmtSettings): MeterbridgeFunction {
    return new MeterbridgeFunction(this, 'FetchFunction', {
      entry: FETCH_ENTRY,
      settings,
      serviceName: 'smt-fetch',
      description: `meterbridge ${settings.stage}: pulls Smart Meter Texas files into the raw archive`,
      timeout: FETCH_TIMEOUT,
      memorySize: 512,
      // No reservation unless the stage asks (smt.fetchReservedConcurrency): a fresh account's quota
      // of 10 cannot spare any. Runs that overlap (a run longer than the schedule's interval, Lambda's
      // async retry) stay correct: the ledger claims each file, and a run skips a file another holds.
      ...(smt.fetchReservedConcurrency !== undefined ? { reservedConcurrentExecutions: smt.fetchReservedConcurrency } : {}),
      ...(this.egress ? { vpc: this.egress.vpc, vpcSubnets: this.egress.subnets, securityGroups: [this.egress.securityGroup] } : {}),
      bundling: SMT_BUNDLING,
      environment: {
        LEDGER_TABLE: storage.ledgerTable.tableName,
        ARCHIVE_BUCKET: this.archiveBucket.bucketName,
        SMT_PROTOCOL: smt.protocol,
        SMT_HOST: smt.host === '' ? 'unset.invalid' : smt.host,
        SMT_PORT: String(smt.port),
        SMT_TLS_SERVERNAME: smt.tlsServerName ?? '',
        SMT_FOLDERS: smt.folders.join(','),
        SMT_AFTER_ARCHIVE: smt.afterArchive,
        SMT_TRANSPORT_SECRET: smt.transportSecretName,
      },
    });
  }

  private createProcessFunction(settings: StageSettings, storage: ReadingStorage, smt: SmtSettings): MeterbridgeFunction {
    return new MeterbridgeFunction(this, 'ProcessFunction', {
      entry: PROCESS_ENTRY,
      settings,
      serviceName: 'smt-process',
      description: `meterbridge ${settings.stage}: decrypts, parses and stores archived Smart Meter Texas files`,
      timeout: PROCESS_TIMEOUT,
      // openpgp streams (bounded memory); more memory buys CPU for decryption and parsing.
      memorySize: 1769,
      // The clear file is written to /tmp before anything is parsed (integrity first).
      ephemeralStorageSize: Size.gibibytes(10),
      bundling: SMT_BUNDLING,
      environment: {
        READINGS_TABLE: storage.readingsTable.tableName,
        LEDGER_TABLE: storage.ledgerTable.tableName,
        BLOCK_TIME_ZONE: settings.blockTimeZone,
        ARCHIVE_BUCKET: this.archiveBucket.bucketName,
        SMT_PGP_SECRET: smt.pgpSecretName,
        SMT_STRICT_CSV: String(smt.strictCsv),
      },
    });
  }

  /** Fetch: ledger, transport secret, archive writes under smt/. Process: ledger, store, PGP secret, archive reads. Both: metrics. */
  private grantFunctions(storage: ReadingStorage, archive: ArchiveBucket): void {
    const stack = Stack.of(this);
    storage.grantLedger(this.fetchFunction);
    storage.grantLedger(this.processFunction);
    storage.grantStoreWrite(this.processFunction);
    this.transportSecret.grantRead(this.fetchFunction);
    this.pgpSecret.grantRead(this.processFunction);

    const archiveWrite = archive.grantArchiveWrite(
      this,
      'ArchiveWritePolicy',
      executionRoleOf(this.fetchFunction),
      SMT_ARCHIVE_PREFIX.replace(/\/$/, ''),
    );
    const archiveLogicalId = stack.resolve(stack.getLogicalId(this.archiveBucket.node.defaultChild as s3.CfnBucket)) as string;
    const archiveRead = new iam.Policy(this, 'ArchiveReadPolicy', {
      statements: [
        new iam.PolicyStatement({
          actions: ['s3:GetObject', 's3:GetObjectVersion'],
          resources: [this.archiveBucket.arnForObjects(`${SMT_ARCHIVE_PREFIX}*`)],
        }),
      ],
    });
    archiveRead.attachToRole(executionRoleOf(this.processFunction));
    Validations.of(archiveRead).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${archiveLogicalId}.Arn>/smt/*]`,
      reason: 'Object keys are per SMT file (smt/<folder>/<file name>); the wildcard is confined to the smt/ prefix of the SMT archive bucket.',
    });
    // One metrics policy for both steps (their shared id).
    this.fetchFunction.grantPutMetrics('MetricsPolicy');
    this.processFunction.grantPutMetrics('MetricsPolicy');
    if (this.egress) this.fetchFunction.node.addDependency(this.egress.grantNetworkInterfaces(executionRoleOf(this.fetchFunction)));
    this.fetchFunction.node.addDependency(archiveWrite);
    this.processFunction.node.addDependency(archiveRead);
  }
}

/**
 * S3 bucket notifications are configured at deploy time by CDK's own singleton custom resource,
 * whose role carries AWSLambdaBasicExecutionRole. It is CDK's code, not ours, and runs only
 * during deployments.
 */
function acknowledgeNotificationsHandler(stack: Stack): void {
  const handler = stack.node.children.find((child) => child.node.id.startsWith('BucketNotificationsHandler'));
  const role = handler?.node.tryFindChild('Role');
  if (!role) return;
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    reason:
      "CDK's BucketNotificationsHandler custom resource (sets the SMT archive's S3 -> SQS notification at deploy time) comes with this role; it writes only its own deploy-time logs.",
  });
}
