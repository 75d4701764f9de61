import { describe, it } from 'node:test';
import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { AlarmTopic, type AlarmTopicProps } from '../../lib/alarm-topic.ts';

function alarmTopicStack(props: AlarmTopicProps = {}): { stack: Stack; alarms: AlarmTopic } {
  const stack = new Stack();
  return { stack, alarms: new AlarmTopic(stack, 'Alarms', props) };
}

describe('AlarmTopic', () => {
  it('encrypts the topic with its own KMS key', () => {
    // GIVEN / WHEN
    const { stack } = alarmTopicStack();

    // THEN
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::SNS::Topic', {
      KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^AlarmsKey'), 'Arn'] },
    });
  });

  it('rotates the key', () => {
    const { stack } = alarmTopicStack();

    Template.fromStack(stack).hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  it('lets CloudWatch use the key to publish encrypted alarms', () => {
    const { stack } = alarmTopicStack();

    Template.fromStack(stack).hasResourceProperties('AWS::KMS::Key', {
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          }),
        ]),
      },
    });
  });

  it('denies publishing without TLS', () => {
    const { stack } = alarmTopicStack();

    Template.fromStack(stack).hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Principal: '*',
            Action: 'sns:Publish',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
  });

  it("lets only this account's CloudWatch alarms publish", () => {
    const { stack } = alarmTopicStack();

    Template.fromStack(stack).hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: 'sns:Publish',
            Condition: Match.objectLike({ StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } }),
          }),
        ]),
      },
    });
  });

  it('subscribes the alarm e-mail address when one is configured', () => {
    const { stack } = alarmTopicStack({ alarmEmail: 'ops@example.com' });

    Template.fromStack(stack).hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
  });

  it('has no subscription when no e-mail address is configured', () => {
    const { stack } = alarmTopicStack();

    Template.fromStack(stack).resourceCountIs('AWS::SNS::Subscription', 0);
  });

  it('notifies the topic when an added alarm fires and when it clears', () => {
    // GIVEN
    const { stack, alarms } = alarmTopicStack();
    const alarm = new cloudwatch.Alarm(stack, 'Alarm', {
      metric: new cloudwatch.Metric({ namespace: 'Meterbridge', metricName: 'Rejected', period: Duration.minutes(5) }),
      threshold: 1,
      evaluationPeriods: 1,
    });

    // WHEN
    alarms.addAlarm(alarm);

    // THEN
    const topicRef = { Ref: Match.stringLikeRegexp('^AlarmsTopic') };
    Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmActions: [topicRef],
      OKActions: [topicRef],
    });
  });
});
