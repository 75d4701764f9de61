import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { IotIngestion, TELEMETRY_RULE_SQL, THING_NAME_VARIABLE } from '../../lib/iot-ingestion.ts';
import { MeterbridgeStack } from '../../lib/meterbridge-stack.ts';
import { ReadingStorage } from '../../lib/storage.ts';
import { testSettings } from '../fixtures/stage-settings.ts';

function iotStack(stage = 'test'): { stack: Stack; iot: IotIngestion } {
  const stack = new Stack(new App(), 'Test');
  const settings = testSettings({}, stage);
  const storage = new ReadingStorage(stack, 'Storage');
  return { stack, iot: new IotIngestion(stack, 'Iot', { settings, storage }) };
}

type Resource = { Properties: Record<string, unknown>; DependsOn?: string[] };

/** Logical id of the only resource of `type` matching `props`. */
function logicalId(template: Template, type: string, props: Record<string, unknown> = {}): string {
  const ids = Object.keys(template.findResources(type, { Properties: props }));
  assert.equal(ids.length, 1, `exactly one ${type} expected, found ${ids.length}`);
  return ids[0] as string;
}

function resource(template: Template, type: string, props: Record<string, unknown> = {}): Resource {
  return template.findResources(type, { Properties: props })[logicalId(template, type, props)] as Resource;
}

/**
 * An ARN as a gateway would see it once CloudFormation resolved it: Fn::Join parts concatenated,
 * pseudo parameters shown as `<AWS::Region>`. Anything else is left as JSON so it fails loudly.
 */
function flattenArn(value: unknown): string {
  if (typeof value === 'string') return value;
  const join = (value as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
  if (join === undefined) return JSON.stringify(value);
  return join[1].map((part) => (typeof part === 'string' ? part : `<${(part as { Ref: string }).Ref}>`)).join(join[0]);
}

type IotStatement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

function gatewayPolicyStatements(template: Template): IotStatement[] {
  const policy = resource(template, 'AWS::IoT::Policy');
  return (policy.Properties.PolicyDocument as { Statement: IotStatement[] }).Statement;
}

function statementFor(statements: IotStatement[], action: string): IotStatement {
  const matching = statements.filter((statement) => [statement.Action].flat().includes(action));
  assert.equal(matching.length, 1, `one statement for ${action} expected`);
  return matching[0] as IotStatement;
}

const queueProps = { RedrivePolicy: Match.anyValue() };
const deadLetterQueueProps = { MessageRetentionPeriod: 1_209_600 };

describe('IotIngestion', () => {
  // Bundling (local esbuild) happens at construction; one stack serves the default-props tests.
  let template: Template;
  let iot: IotIngestion;
  before(() => {
    const built = iotStack();
    iot = built.iot;
    template = Template.fromStack(built.stack);
  });

  describe('names', () => {
    it('names the gateway thing type after the stage', () => {
      template.hasResourceProperties('AWS::IoT::ThingType', { ThingTypeName: 'meterbridge-test-gateway' });
    });

    it("turns '-' in the stage into '_' in the rule name, which IoT requires", () => {
      // GIVEN / WHEN
      const { stack, iot: dashed } = iotStack('eu-west');

      // THEN
      assert.equal(dashed.ruleName, 'meterbridge_eu_west_telemetry');
      assert.equal(dashed.basicIngestTopicPrefix, '$aws/rules/meterbridge_eu_west_telemetry/gateways');
      Template.fromStack(stack).hasResourceProperties('AWS::IoT::TopicRule', { RuleName: 'meterbridge_eu_west_telemetry' });
    });
  });

  describe('gateway policy', () => {
    it('is named after the stage', () => {
      template.hasResourceProperties('AWS::IoT::Policy', { PolicyName: 'meterbridge-test-gateway' });
    });

    it('lets a gateway connect only with its own thing name as client id', () => {
      // GIVEN
      const connect = statementFor(gatewayPolicyStatements(template), 'iot:Connect');

      // WHEN
      const arn = flattenArn(connect.Resource);

      // THEN
      assert.equal(arn, `arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:client/${THING_NAME_VARIABLE}`);
      assert.ok(!arn.includes('*'), `no wildcard expected in ${arn}`);
    });

    it('lets a certificate connect only as the thing it is attached to', () => {
      const connect = statementFor(gatewayPolicyStatements(template), 'iot:Connect');

      assert.deepEqual(connect.Condition, { Bool: { 'iot:Connection.Thing.IsAttached': 'true' } });
    });

    it('lets a gateway publish only to its own Basic Ingest telemetry and event topics, and the CreateCertificateFromCsr request', () => {
      // GIVEN
      const publish = statementFor(gatewayPolicyStatements(template), 'iot:Publish');

      // WHEN
      const arns = [publish.Resource].flat().map((resource) => flattenArn(resource));

      // THEN
      const base = 'arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:topic/';
      assert.deepEqual(arns, [
        `${base}$aws/rules/meterbridge_test_telemetry/gateways/${THING_NAME_VARIABLE}/telemetry`,
        `${base}$aws/rules/meterbridge_test_fleet/gateways/${THING_NAME_VARIABLE}/rotation`,
        `${base}$aws/rules/meterbridge_test_fleet/gateways/${THING_NAME_VARIABLE}/status`,
        `${base}$aws/certificates/create-from-csr/json`,
      ]);
      for (const arn of arns) assert.ok(!arn.includes('*'), `no wildcard expected in ${arn}`);
    });

    it('keeps the thing-name policy variable literal for IoT to resolve', () => {
      // Fn::Sub would have claimed `${iot:...}` as a reference of its own and failed the deploy.
      const document = JSON.stringify(resource(template, 'AWS::IoT::Policy').Properties.PolicyDocument);

      assert.equal(document.split('${iot:Connection.Thing.ThingName}').length - 1, 4);
      assert.ok(!document.includes('Fn::Sub'));
    });

    it('allows Subscribe and Receive only on the two CreateCertificateFromCsr answers', () => {
      const statements = gatewayPolicyStatements(template);
      const actions = statements.flatMap((statement) => [statement.Action].flat());
      assert.deepEqual(actions.sort(), ['iot:Connect', 'iot:Publish', 'iot:Receive', 'iot:Subscribe']);
      const base = 'arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:';
      const answers = ['$aws/certificates/create-from-csr/json/accepted', '$aws/certificates/create-from-csr/json/rejected'];
      assert.deepEqual(
        [statementFor(statements, 'iot:Subscribe').Resource].flat().map((r) => flattenArn(r)),
        answers.map((topic) => `${base}topicfilter/${topic}`),
      );
      assert.deepEqual(
        [statementFor(statements, 'iot:Receive').Resource].flat().map((r) => flattenArn(r)),
        answers.map((topic) => `${base}topic/${topic}`),
      );
    });
  });

  describe('fleet rule (rotation notices, status reports)', () => {
    it('hands each gateway event byte-exact with principal() to the fleet function', () => {
      template.hasResourceProperties('AWS::IoT::TopicRule', {
        RuleName: 'meterbridge_test_fleet',
        TopicRulePayload: Match.objectLike({
          Sql: "SELECT encode(*, 'base64') AS payload, topic() AS topic, principal() AS principal, timestamp() AS receivedAt FROM 'gateways/+/+'",
          Actions: [{ Lambda: { FunctionArn: Match.anyValue() } }],
        }),
      });
      template.hasResourceProperties('AWS::Lambda::Permission', { Principal: 'iot.amazonaws.com', Action: 'lambda:InvokeFunction' });
      template.hasResourceProperties('AWS::Lambda::Function', {
        Environment: Match.objectLike({ Variables: Match.objectLike({ GATEWAY_POLICY_NAME: 'meterbridge-test-gateway' }) }),
      });
    });
  });

  describe('topic rule', () => {
    it('forwards the payload byte-exact with its topic and arrival time', () => {
      template.hasResourceProperties('AWS::IoT::TopicRule', {
        RuleName: 'meterbridge_test_telemetry',
        TopicRulePayload: Match.objectLike({
          Sql: "SELECT encode(*, 'base64') AS payload, topic() AS topic, timestamp() AS receivedAt FROM 'gateways/+/telemetry'",
          AwsIotSqlVersion: '2016-03-23',
          RuleDisabled: false,
        }),
      });
      assert.match(TELEMETRY_RULE_SQL, /FROM 'gateways\/\+\/telemetry'$/);
    });

    it('sends every message to the ingest queue as a plain JSON body', () => {
      template.hasResourceProperties('AWS::IoT::TopicRule', {
        TopicRulePayload: Match.objectLike({
          Actions: [
            {
              Sqs: {
                QueueUrl: { Ref: logicalId(template, 'AWS::SQS::Queue', queueProps) },
                RoleArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^IotRuleActionRole'), 'Arn'] },
                UseBase64: false,
              },
            },
          ],
        }),
      });
    });

    it('sends rule failures to the dead-letter queue', () => {
      template.hasResourceProperties('AWS::IoT::TopicRule', {
        TopicRulePayload: Match.objectLike({
          ErrorAction: {
            Sqs: {
              QueueUrl: { Ref: logicalId(template, 'AWS::SQS::Queue', deadLetterQueueProps) },
              RoleArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^IotRuleErrorActionRole'), 'Arn'] },
              UseBase64: false,
            },
          },
        }),
      });
    });

    it('waits for the action roles and their policies before it starts sending', () => {
      const rule = resource(template, 'AWS::IoT::TopicRule', { RuleName: 'meterbridge_test_telemetry' });

      for (const prefix of ['IotRuleActionRoleDefaultPolicy', 'IotRuleErrorActionRoleDefaultPolicy']) {
        assert.ok(
          rule.DependsOn?.some((id) => id.startsWith(prefix)),
          `rule should depend on ${prefix}`,
        );
      }
    });

    for (const [role, queue] of [
      ['IotRuleActionRole', queueProps],
      ['IotRuleErrorActionRole', deadLetterQueueProps],
    ] as const) {
      it(`${role} may only send messages to its queue`, () => {
        // GIVEN
        const roleRef = { Ref: Match.stringLikeRegexp(`^${role}[0-9A-F]{8}$`) };

        // WHEN
        const policies = Object.values(template.findResources('AWS::IAM::Policy', { Properties: { Roles: [roleRef] } }));

        // THEN
        assert.equal(policies.length, 1);
        assert.deepEqual((policies[0] as Resource).Properties.PolicyDocument, {
          Version: '2012-10-17',
          Statement: [
            { Effect: 'Allow', Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': [logicalId(template, 'AWS::SQS::Queue', queue), 'Arn'] } },
          ],
        });
      });

      it(`${role} can be assumed only by IoT on behalf of this rule`, () => {
        // GIVEN
        const roles = template.findResources('AWS::IAM::Role', {
          Properties: { AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'iot.amazonaws.com' } })] } },
        });

        // WHEN
        const ids = Object.keys(roles).filter((id) => id.startsWith(role) && !id.startsWith(`${role}Default`));

        // THEN
        assert.equal(ids.length, 1);
        const statement = (roles[ids[0] as string] as Resource).Properties.AssumeRolePolicyDocument as { Statement: [{ Condition: unknown }] };
        const condition = statement.Statement[0].Condition as { StringEquals: unknown; ArnLike: { 'aws:SourceArn': unknown } };
        assert.deepEqual(condition.StringEquals, { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } });
        assert.equal(
          flattenArn(condition.ArnLike['aws:SourceArn']),
          'arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:rule/meterbridge_test_telemetry',
        );
      });
    }
  });

  describe('queues', () => {
    it('dead-letters a message after five receives', () => {
      template.hasResourceProperties('AWS::SQS::Queue', {
        RedrivePolicy: {
          deadLetterTargetArn: { 'Fn::GetAtt': [logicalId(template, 'AWS::SQS::Queue', deadLetterQueueProps), 'Arn'] },
          maxReceiveCount: 5,
        },
      });
    });

    it('encrypts the ingest queue with SQS-managed keys and keeps messages four days', () => {
      template.hasResourceProperties('AWS::SQS::Queue', {
        RedrivePolicy: Match.anyValue(),
        SqsManagedSseEnabled: true,
        MessageRetentionPeriod: 345_600,
      });
    });

    it('encrypts the dead-letter queue and keeps messages the maximum 14 days', () => {
      template.hasResourceProperties('AWS::SQS::Queue', {
        RedrivePolicy: Match.absent(),
        SqsManagedSseEnabled: true,
        MessageRetentionPeriod: 1_209_600,
      });
    });

    for (const [name, props] of [
      ['ingest queue', queueProps],
      ['dead-letter queue', deadLetterQueueProps],
    ] as const) {
      it(`denies access to the ${name} without TLS`, () => {
        template.hasResourceProperties('AWS::SQS::QueuePolicy', {
          Queues: [{ Ref: logicalId(template, 'AWS::SQS::Queue', props) }],
          PolicyDocument: Match.objectLike({
            Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
          }),
        });
      });

      it(`retains the ${name} by default, like the other stateful resources`, () => {
        template.hasResource('AWS::SQS::Queue', {
          Properties: Match.objectLike(props),
          DeletionPolicy: 'Retain',
        });
      });
    }

    it('hides a received message for six times the ingest function timeout', () => {
      // GIVEN
      const fn = resource(template, 'AWS::Lambda::Function', {
        Environment: Match.objectLike({ Variables: Match.objectLike({ DEAD_LETTER_QUEUE_URL: Match.anyValue() }) }),
      });
      const queue = resource(template, 'AWS::SQS::Queue', queueProps);

      // WHEN
      const timeout = fn.Properties.Timeout as number;

      // THEN
      assert.equal(timeout, 30);
      assert.equal(queue.Properties.VisibilityTimeout, 6 * timeout);
    });
  });

  describe('ingest function', () => {
    it('consumes the ingest queue in batches with partial batch failures and capped concurrency', () => {
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        EventSourceArn: { 'Fn::GetAtt': [logicalId(template, 'AWS::SQS::Queue', queueProps), 'Arn'] },
        FunctionName: { Ref: Match.stringLikeRegexp('^IotIngestFunction') },
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        BatchSize: 50,
        MaximumBatchingWindowInSeconds: 2,
        ScalingConfig: { MaximumConcurrency: 20 },
      });
    });

    it('is told its tables, block time zone and dead-letter queue', () => {
      template.hasResourceProperties('AWS::Lambda::Function', {
        Environment: {
          Variables: Match.objectLike({
            READINGS_TABLE: { Ref: Match.stringLikeRegexp('^StorageReadings') },
            LEDGER_TABLE: { Ref: Match.stringLikeRegexp('^StorageLedger') },
            BLOCK_TIME_ZONE: 'America/Chicago',
            DEAD_LETTER_QUEUE_URL: { Ref: logicalId(template, 'AWS::SQS::Queue', deadLetterQueueProps) },
            STAGE: 'test',
          }),
        },
      });
    });

    it('may store readings, claim messages and dead-letter rejected ones', () => {
      template.hasResourceProperties('AWS::IAM::Policy', {
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Action: ['dynamodb:UpdateItem', 'dynamodb:GetItem'],
              Resource: { 'Fn::GetAtt': [Match.stringLikeRegexp('^StorageReadings'), 'Arn'] },
            }),
            Match.objectLike({
              Action: ['dynamodb:UpdateItem', 'dynamodb:GetItem'],
              Resource: { 'Fn::GetAtt': [Match.stringLikeRegexp('^StorageLedger'), 'Arn'] },
            }),
            Match.objectLike({
              Action: Match.arrayWith(['sqs:SendMessage']),
              Resource: { 'Fn::GetAtt': [logicalId(template, 'AWS::SQS::Queue', deadLetterQueueProps), 'Arn'] },
            }),
          ]),
        },
        Roles: [{ Ref: Match.stringLikeRegexp('^IotIngestFunctionRole') }],
      });
    });

    it('may publish metrics only into the Meterbridge namespace', () => {
      template.hasResourceProperties('AWS::IAM::Policy', {
        PolicyDocument: {
          Statement: [
            {
              Effect: 'Allow',
              Action: 'cloudwatch:PutMetricData',
              Resource: '*',
              Condition: { StringEquals: { 'cloudwatch:namespace': 'Meterbridge' } },
            },
          ],
        },
        Roles: [{ Ref: Match.stringLikeRegexp('^IotIngestFunctionRole') }],
      });
    });

    it('starts consuming only once it may publish metrics', () => {
      const mapping = resource(template, 'AWS::Lambda::EventSourceMapping');

      assert.ok(mapping.DependsOn?.some((id) => id.startsWith('IotIngestMetricsPolicy')));
    });

    it('exposes what the stack and later alarms build on', () => {
      assert.equal(iot.ruleName, 'meterbridge_test_telemetry');
      assert.equal(iot.basicIngestTopicPrefix, '$aws/rules/meterbridge_test_telemetry/gateways');
      assert.equal(iot.ingestFunction.timeout?.toSeconds(), 30);
      assert.equal(iot.queue.deadLetterQueue?.queue, iot.deadLetterQueue);
    });
  });
});

describe('MeterbridgeStack with IoT ingestion', () => {
  let template: Template;
  before(() => {
    template = Template.fromStack(new MeterbridgeStack(new App(), 'Meterbridge-test', { settings: testSettings() }));
  });

  it('outputs the rule name and the topic a gateway publishes to', () => {
    // THEN
    template.hasOutput('IotTelemetryRuleName', { Value: 'meterbridge_test_telemetry' });
    template.hasOutput('IotTelemetryTopic', { Value: '$aws/rules/meterbridge_test_telemetry/gateways/<thingName>/telemetry' });
  });

  it('outputs the policy and thing type to provision gateways with', () => {
    template.hasOutput('IotGatewayPolicyName', { Value: { Ref: Match.stringLikeRegexp('^IotGatewayPolicy') } });
    template.hasOutput('IotGatewayThingTypeName', { Value: { Ref: Match.stringLikeRegexp('^IotGatewayThingType') } });
  });
});
