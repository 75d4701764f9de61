/**
 * The SNS topic every meterbridge alarm notifies, on ALARM and on OK, so operators also learn
 * when a problem has cleared.
 */
import { Aws, RemovalPolicy } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';

const CLOUDWATCH = new iam.ServicePrincipal('cloudwatch.amazonaws.com');

export interface AlarmTopicProps {
  /**
   * E-mail address subscribed to the topic. AWS sends it a confirmation link; nothing is
   * delivered until someone clicks it.
   *
   * @default - no subscription; subscribe chat or paging integrations to `topic` instead
   */
  readonly alarmEmail?: string;

  /**
   * Display name of the topic, shown as the sender of e-mail notifications.
   *
   * @default 'meterbridge alarms'
   */
  readonly displayName?: string;

  /**
   * What CloudFormation does with the topic's KMS key when it leaves the stack.
   *
   * @default RemovalPolicy.RETAIN - a deleted key makes messages still in flight unreadable
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** KMS-encrypted, TLS-only SNS topic that CloudWatch alarms (and only they) may publish to. */
export class AlarmTopic extends Construct {
  public readonly topic: sns.Topic;
  /** Customer managed key of the topic: the AWS managed aws/sns key cannot be used by CloudWatch. */
  public readonly key: kms.Key;
  /** Alarm action publishing to `topic`; reuse it for alarms this construct does not own. */
  public readonly action: cloudwatch.IAlarmAction;

  constructor(scope: Construct, id: string, props: AlarmTopicProps = {}) {
    super(scope, id);

    this.key = new kms.Key(this, 'Key', {
      description: 'Encrypts the meterbridge alarm topic',
      enableKeyRotation: true,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    // CloudWatch publishes with its own service identity, so the key policy (not an IAM
    // policy) has to let it create the data keys SNS encrypts messages with. No source
    // conditions here: the topic policy below already limits publishing to this account's alarms.
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToUseKey',
        principals: [CLOUDWATCH],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
      }),
    );

    this.topic = new sns.Topic(this, 'Topic', {
      displayName: props.displayName ?? 'meterbridge alarms',
      masterKey: this.key,
      enforceSSL: true,
    });
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToPublish',
        principals: [CLOUDWATCH],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        // Confused-deputy guard: only alarms in this account and region may publish.
        conditions: {
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
          ArnLike: { 'aws:SourceArn': `arn:${Aws.PARTITION}:cloudwatch:${Aws.REGION}:${Aws.ACCOUNT_ID}:alarm:*` },
        },
      }),
    );

    if (props.alarmEmail !== undefined && props.alarmEmail !== '') {
      this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    }

    this.action = new cloudwatchActions.SnsAction(this.topic);
  }

  /** Notifies the topic when `alarm` goes into ALARM and when it returns to OK. */
  public addAlarm(alarm: cloudwatch.AlarmBase): void {
    alarm.addAlarmAction(this.action);
    alarm.addOkAction(this.action);
  }
}
