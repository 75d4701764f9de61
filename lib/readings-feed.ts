/**
 * The readings feed: the readings table's stream (NEW_AND_OLD_IMAGES) drives one function
 * (lambdas/readings-feed.ts) that puts one event per block write that changed data on a custom
 * EventBridge bus, and the changed readings on the lake's Firehose stream (lib/readings-lake.ts).
 *
 * The stream mapping retries a failing batch from the first record not delivered (batch item
 * failures), halves it on errors (bisect) so one bad record cannot hold its neighbours, gives up
 * after RETRY_ATTEMPTS or MAX_RECORD_AGE, and then sends the shard and sequence range to an
 * encrypted SQS queue (the on-failure destination), which is alarmed.
 */
import { fileURLToPath } from 'node:url';
import { Duration, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as events from 'aws-cdk-lib/aws-events';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { AlarmTopic } from './alarm-topic.ts';
import { executionRoleOf, MeterbridgeFunction } from './meterbridge-function.ts';
import type { MonitoredAlarm } from './monitoring.ts';
import type { ReadingsLake } from './readings-lake.ts';
import type { StageSettings } from './settings.ts';
import type { ReadingStorage } from './storage.ts';

const ENTRY = fileURLToPath(new URL('../lambdas/readings-feed.ts', import.meta.url));
/** Retries of a failing batch before its range goes to the on-failure queue (each retry holds the shard). */
export const FEED_RETRY_ATTEMPTS = 10;
/** Records older than this go to the on-failure queue unread; under the stream's 24-hour retention so they can still be read from there. */
export const FEED_MAX_RECORD_AGE = Duration.hours(6);

export interface ReadingsFeedProps {
  readonly settings: StageSettings;
  readonly storage: ReadingStorage;
  readonly lake: ReadingsLake;
  readonly alarms: AlarmTopic;
}

export class ReadingsFeed extends Construct {
  public readonly bus: events.EventBus;
  public readonly function: MeterbridgeFunction;
  /** Where the stream mapping sends the range of records it gave up on. */
  public readonly failureQueue: sqs.Queue;
  /** Any message in the failure queue (goes to the operations construct as a stage alarm). */
  public readonly monitoring: MonitoredAlarm[];

  constructor(scope: Construct, id: string, props: ReadingsFeedProps) {
    super(scope, id);
    const { settings, storage, lake } = props;

    this.bus = new events.EventBus(this, 'Bus', {
      eventBusName: `meterbridge-${settings.stage}-readings`,
      description: `meterbridge ${settings.stage}: one event per block write that changed readings (docs/readings-feed.md)`,
    });
    this.failureQueue = new sqs.Queue(this, 'FailureQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: settings.removalPolicy,
    });
    Validations.of(this.failureQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is itself the dead-letter destination (stream on-failure destination) of the readings feed; it is alarmed.',
    });

    this.function = new MeterbridgeFunction(this, 'Function', {
      entry: ENTRY,
      settings,
      serviceName: 'readings-feed',
      description: `meterbridge ${settings.stage}: readings table stream -> EventBridge events and the Parquet lake`,
      timeout: Duration.seconds(60),
      environment: { EVENT_BUS_NAME: this.bus.eventBusName, LAKE_DELIVERY_STREAM: lake.deliveryStreamName },
    });
    this.function.grantPutMetrics();
    this.bus.grantPutEventsTo(this.function);
    lake.grantPutRecords(this.function);
    if (!storage.readingsTable.tableStreamArn) throw new Error('ReadingsFeed: the readings table has no stream');
    this.function.addEventSource(
      new sources.DynamoEventSource(storage.readingsTable, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(1),
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        retryAttempts: FEED_RETRY_ATTEMPTS,
        maxRecordAge: FEED_MAX_RECORD_AGE,
        // One batch per shard at a time: the order of writes to a block is the order of its events.
        parallelizationFactor: 1,
        onFailure: new sources.SqsDlq(this.failureQueue),
      }),
    );
    // The event source's grant lands in the role's default policy; only dynamodb:ListStreams there is on "*".
    Validations.of(executionRoleOf(this.function).node.findChild('DefaultPolicy')).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        "dynamodb:ListStreams has no resource-level permissions; it is part of the stream event source's read grant (DescribeStream, GetRecords and GetShardIterator name the stream, the bus, Firehose and queue grants name their resources).",
    });

    const name = `meterbridge-${settings.stage}-feed-dlq`;
    const why =
      'the stream gave up on a range of readings-table records after retries: their events and lake rows were not delivered; the message names the shard and sequence range (readable from the stream for 24 h), so any one alarms; no data = an empty queue';
    const alarm = new cloudwatch.Alarm(this, 'FailureQueueAlarm', {
      alarmName: name,
      alarmDescription: `${why}. Runbook: docs/runbook.md, meterbridge-<stage>-feed-dlq`,
      metric: this.failureQueue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(5) }),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      threshold: 0,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    props.alarms.addAlarm(alarm);
    this.monitoring = [{ alarm, why }];
  }
}
