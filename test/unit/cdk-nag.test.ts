import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { App, Stack, Validations, type PolicyValidationPluginReport } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { MeterbridgeFunction } from '../../lib/meterbridge-function.ts';
import { MeterbridgeStack } from '../../lib/meterbridge-stack.ts';
import { testSettings } from '../fixtures/stage-settings.ts';

const ECHO_HANDLER = fileURLToPath(new URL('../fixtures/echo-handler.ts', import.meta.url));

/** One line per violating resource, so a failing assertion says what to fix and where. */
function describeViolations(report: PolicyValidationPluginReport): string[] {
  return report.violations.flatMap((violation) =>
    violation.violatingResources.map((resource) => `${violation.ruleName} at ${resource.constructPath ?? '?'}: ${violation.description}`),
  );
}

function ruleNames(report: PolicyValidationPluginReport): string[] {
  return report.violations.map((violation) => violation.ruleName).sort();
}

function meterbridgeStack(): { app: App; stack: MeterbridgeStack } {
  const app = new App();
  const stack = new MeterbridgeStack(app, 'Meterbridge-test', { settings: testSettings({ alarmEmail: 'ops@example.com' }) });
  return { app, stack };
}

/** The stack as the ingestion issues will extend it: a function that stores readings and claims work. */
function withIngestFunction(stack: MeterbridgeStack, runtime?: lambda.Runtime): MeterbridgeFunction {
  const fn = new MeterbridgeFunction(stack, 'Ingest', { entry: ECHO_HANDLER, settings: stack.settings, runtime });
  stack.storage.grantStoreWrite(fn);
  stack.storage.grantStoreRead(fn);
  stack.storage.grantLedger(fn);
  return fn;
}

describe('AwsSolutions checks', () => {
  it('find nothing unacknowledged in the meterbridge stack', () => {
    // GIVEN
    const { stack } = meterbridgeStack();

    // WHEN
    const report = new AwsSolutionsChecks().validateScope(stack);

    // THEN
    assert.deepEqual(describeViolations(report), []);
  });

  it('find nothing unacknowledged in the stack pinned to an account and region (as `cdk synth` resolves them from the environment)', () => {
    // The CLI hands the app CDK_DEFAULT_REGION (us-east-1 when nothing is configured), so ARNs carry a literal region.
    const app = new App();
    const stack = new MeterbridgeStack(app, 'Meterbridge-pinned', {
      settings: testSettings({ alarmEmail: 'ops@example.com' }),
      env: { account: '123456789012', region: 'us-east-1' },
    });

    const report = new AwsSolutionsChecks().validateScope(stack);

    assert.deepEqual(describeViolations(report), []);
  });

  it('find nothing unacknowledged in the stack with SMT on a fixed egress IP (VPC, NAT gateways, Elastic IPs), and output the addresses', () => {
    const app = new App();
    const stack = new MeterbridgeStack(app, 'Meterbridge-egress', {
      settings: testSettings({
        alarmEmail: 'ops@example.com',
        smt: { enabled: true, host: 'sftp.smartmetertexas.biz', fixedEgressIp: true, egressAvailabilityZones: 2 },
      }),
    });

    const report = new AwsSolutionsChecks().validateScope(stack);

    assert.deepEqual(describeViolations(report), []);
    const outputs = Template.fromStack(stack).findOutputs('SmtEgressIps');
    const value = JSON.stringify(Object.values(outputs)[0]?.Value);
    assert.equal((value.match(/PublicIp/g) ?? []).length, 2, value);
  });

  it('find nothing unacknowledged in a function that uses the storage grants', () => {
    // GIVEN
    const { stack } = meterbridgeStack();
    withIngestFunction(stack);

    // WHEN
    const report = new AwsSolutionsChecks().validateScope(stack);

    // THEN
    assert.deepEqual(describeViolations(report), []);
  });

  it('report a table without PITR and a topic that accepts plain HTTP', () => {
    // GIVEN: the kind of resource the checks exist to catch, proving they are switched on
    const stack = new Stack(new App(), 'Careless');
    new dynamodb.Table(stack, 'Table', { partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING } });
    new sns.Topic(stack, 'Topic');

    // WHEN
    const report = new AwsSolutionsChecks().validateScope(stack);

    // THEN
    assert.deepEqual(ruleNames(report), ['AwsSolutions-DDB3', 'AwsSolutions-SNS3']);
  });

  it('honour an acknowledgement only on the construct it was made on', () => {
    // GIVEN
    const stack = new Stack(new App(), 'Careless');
    const acknowledged = new dynamodb.Table(stack, 'Scratch', { partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING } });
    new dynamodb.Table(stack, 'Other', { partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING } });
    Validations.of(acknowledged).acknowledge({ id: 'AwsSolutions-DDB3', reason: 'scratch table in a test' });

    // WHEN
    const report = new AwsSolutionsChecks().validateScope(stack);

    // THEN
    assert.deepEqual(describeViolations(report), [
      'AwsSolutions-DDB3 at Careless/Other/Resource: The DynamoDB table does not have Point-in-time Recovery enabled.',
    ]);
  });

  it('report an outdated runtime the function construct does not vouch for', () => {
    // GIVEN
    const { stack } = meterbridgeStack();
    withIngestFunction(stack, lambda.Runtime.NODEJS_20_X);

    // WHEN
    const report = new AwsSolutionsChecks().validateScope(stack);

    // THEN
    assert.deepEqual(ruleNames(report), ['AwsSolutions-L1']);
  });

  it('let the app synthesize with the checks registered as a validation plugin', () => {
    // GIVEN: the wiring of bin/app.ts, where a finding fails `cdk synth`
    const { app, stack } = meterbridgeStack();
    withIngestFunction(stack);
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));

    // WHEN / THEN
    assert.doesNotThrow(() => app.synth());
  });
});
