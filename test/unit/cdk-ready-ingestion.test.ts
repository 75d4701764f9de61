import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { AlarmTopic } from '../../lib/alarm-topic.ts';
import { ReadyIngestion } from '../../lib/ready-ingestion.ts';
import { DEFAULT_READY_SETTINGS, parseReadySettings, type ReadySettings } from '../../lib/ready-settings.ts';
import { ReadingStorage } from '../../lib/storage.ts';
import { testSettings } from '../fixtures/stage-settings.ts';

function readyStack(ready?: ReadySettings): { stack: Stack; construct: ReadyIngestion; template: Template } {
  // Skips esbuild bundling: these tests read the template, not the bundle (bundling is tested with the function construct).
  const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Test');
  const settings = testSettings();
  const storage = new ReadingStorage(stack, 'Storage');
  const alarms = new AlarmTopic(stack, 'Alarms');
  const construct = new ReadyIngestion(stack, 'Ready', { settings, storage, alarms, ...(ready ? { ready } : {}) });
  return { stack, construct, template: Template.fromStack(stack) };
}

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: Record<string, Record<string, unknown>> };

function apiPolicy(template: Template): Statement[] {
  const apis = template.findResources('AWS::ApiGateway::RestApi');
  const [api] = Object.values(apis) as Array<{ Properties: { Policy: { Statement: Statement[] } } }>;
  return api!.Properties.Policy.Statement;
}

describe('ReadyIngestion', () => {
  // Bundling (local esbuild) happens at construction; one stack serves the default-props tests.
  let template: Template;
  let stack: Stack;
  let construct: ReadyIngestion;
  before(() => {
    ({ template, stack, construct } = readyStack());
  });

  it('opens the API to any caller when no source ranges are configured', () => {
    const statements = apiPolicy(template);
    assert.deepEqual(
      statements.map((s) => s.Effect),
      ['Allow'],
    );
    assert.equal(statements[0]!.Action, 'execute-api:Invoke');
  });

  it('denies every address outside the configured source ranges', () => {
    const { template: restricted } = readyStack({ ...DEFAULT_READY_SETTINGS, allowedSourceCidrs: ['203.0.113.0/24', '198.51.100.7/32'] });
    const deny = apiPolicy(restricted).find((s) => s.Effect === 'Deny');
    assert.ok(deny, 'a Deny statement');
    assert.equal(deny.Action, 'execute-api:Invoke');
    assert.deepEqual(deny.Condition, { NotIpAddress: { 'aws:SourceIp': ['203.0.113.0/24', '198.51.100.7/32'] } });
  });

  it('throttles the stage and writes JSON access logs to a KMS-encrypted log group', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'test',
      MethodSettings: Match.arrayWith([
        Match.objectLike({ ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100, DataTraceEnabled: false, LoggingLevel: 'ERROR' }),
      ]),
      AccessLogSetting: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('"status":"\\$context.status"') },
    });
    const stage = Object.values(template.findResources('AWS::ApiGateway::Stage'))[0] as {
      Properties: { AccessLogSetting: { DestinationArn: { 'Fn::GetAtt': [string, string] } } };
    };
    const logGroupId = stage.Properties.AccessLogSetting.DestinationArn['Fn::GetAtt'][0];
    const logGroup = template.findResources('AWS::Logs::LogGroup')[logGroupId] as { Properties: Record<string, unknown> };
    assert.ok(logGroup.Properties.KmsKeyId, 'access log group is encrypted with a KMS key');
  });

  it('uses a regional endpoint with a TLS 1.2+ security policy and passes bodies as binary', () => {
    template.hasResourceProperties('AWS::ApiGateway::RestApi', {
      EndpointConfiguration: { Types: ['REGIONAL'] },
      SecurityPolicy: 'SecurityPolicy_TLS13_1_2_PFS_PQ_2025_09',
      EndpointAccessMode: 'STRICT',
      BinaryMediaTypes: ['*/*'],
    });
  });

  it('routes POST and GET of /data and /status to the webhook function through a proxy integration', () => {
    const resources = template.findResources('AWS::ApiGateway::Resource');
    assert.deepEqual(
      Object.values(resources)
        .map((r) => (r as { Properties: { PathPart: string } }).Properties.PathPart)
        .sort(),
      ['data', 'status'],
    );
    const methods = Object.values(template.findResources('AWS::ApiGateway::Method')) as Array<{
      Properties: { HttpMethod: string; Integration: { Type: string; Uri: unknown } };
    }>;
    assert.equal(methods.length, 4);
    assert.deepEqual(methods.map((m) => m.Properties.HttpMethod).sort(), ['GET', 'GET', 'POST', 'POST']);
    assert.ok(methods.every((m) => m.Properties.Integration.Type === 'AWS_PROXY'));
    const functionIds = Object.keys(
      template.findResources('AWS::Lambda::Function', {
        Properties: { Environment: { Variables: Match.objectLike({ POWERTOOLS_SERVICE_NAME: 'ready-webhook' }) } },
      }),
    );
    assert.equal(functionIds.length, 1);
    assert.ok(methods.every((m) => JSON.stringify(m.Properties.Integration.Uri).includes(functionIds[0]!)));
  });

  it('gives the function its archive, tables, secret and verification settings, and nothing from the template', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Timeout: 25,
      Environment: {
        Variables: Match.objectLike({
          ARCHIVE_BUCKET: { Ref: Match.stringLikeRegexp('ReadyArchive') },
          READY_SECRET_ARN: { Ref: Match.stringLikeRegexp('ReadyCredentials') },
          READY_VERIFICATION_ALGORITHM: 'hmac-sha256',
          READY_SECRET_ENCODING: 'utf8',
          READY_MAX_BODY_BYTES: String(4 * 1024 * 1024),
        }),
      },
    });
    const secret = Object.values(template.findResources('AWS::SecretsManager::Secret'))[0] as {
      Properties: { GenerateSecretString: { GenerateStringKey: string }; SecretString?: string };
    };
    assert.equal(secret.Properties.GenerateSecretString.GenerateStringKey, 'clientSecret');
    assert.equal(secret.Properties.SecretString, undefined, 'no credential in the template');
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: ['s3:PutObject', 's3:GetObject', 's3:AbortMultipartUpload'] })]) },
    });
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
            Resource: { Ref: Match.stringLikeRegexp('ReadyCredentials') },
          }),
        ]),
      },
    });
  });

  it('keeps the archive versioned, encrypted, private, TLS-only and logged', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      LoggingConfiguration: { DestinationBucketName: Match.anyValue(), LogFilePrefix: 'ready-archive/' },
    });
    const policies = Object.values(template.findResources('AWS::S3::BucketPolicy')) as Array<{
      Properties: { PolicyDocument: { Statement: Statement[] } };
    }>;
    assert.ok(
      policies.every((p) =>
        p.Properties.PolicyDocument.Statement.some((s) => s.Effect === 'Deny' && JSON.stringify(s.Condition).includes('aws:SecureTransport')),
      ),
    );
  });

  it('answers throttling and oversized requests at the gateway in JSON', () => {
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'THROTTLED',
      StatusCode: '429',
      ResponseTemplates: { 'application/json': Match.stringLikeRegexp('"code":"throttled"') },
    });
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'REQUEST_TOO_LARGE', StatusCode: '413' });
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'ACCESS_DENIED', StatusCode: '403' });
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'THROTTLED',
      ResponseParameters: { 'gatewayresponse.header.Retry-After': "'10'" },
    });
    // every template is JSON once API Gateway substitutes its (already quoted) variables
    for (const response of Object.values(template.findResources('AWS::ApiGateway::GatewayResponse')) as Array<{
      Properties: { ResponseTemplates: Record<string, string> };
    }>) {
      const text = response.Properties.ResponseTemplates['application/json']!.replace('$context.error.messageString', '"a message"').replace(
        '$context.requestId',
        'r-1',
      );
      assert.doesNotThrow(() => JSON.parse(text), text);
    }
  });

  it('alarms when a subscription reports anything but active, keeping the state between callbacks', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'SubscriptionInactive',
      Namespace: 'Meterbridge',
      Dimensions: Match.arrayWith([
        { Name: 'Source', Value: 'ready' },
        { Name: 'Stage', Value: 'test' },
      ]),
      Statistic: 'Maximum',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'ignore',
      AlarmActions: [{ Ref: Match.stringLikeRegexp('AlarmsTopic') }],
    });
  });

  it('exposes its function to the operations construct', () => {
    assert.equal(construct.monitoring.source, 'ready');
    assert.deepEqual(
      construct.monitoring.functions.map((f) => f.label),
      ['webhook'],
    );
  });

  it('has no unacknowledged cdk-nag findings', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    assert.deepEqual(
      report.violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} at ${r.constructPath}`)),
      [],
    );
  });
});

describe('parseReadySettings', () => {
  it('defaults everything when the stage has no READY block', () => {
    assert.deepEqual(parseReadySettings(undefined, 'meterbridge:stages.dev.ready'), DEFAULT_READY_SETTINGS);
    assert.deepEqual(testSettings().ready, DEFAULT_READY_SETTINGS);
  });

  it('reads source ranges, throttling and the handshake choice from the stage block', () => {
    const settings = testSettings(
      {
        ready: {
          allowedSourceCidrs: ['203.0.113.0/24'],
          throttleRateLimit: 20,
          verification: { algorithm: 'sha256-token-secret', secretEncoding: 'base64' },
        },
      },
      'prod',
    ).ready;
    assert.deepEqual(settings.allowedSourceCidrs, ['203.0.113.0/24']);
    assert.equal(settings.throttleRateLimit, 20);
    assert.deepEqual(settings.verification, { algorithm: 'sha256-token-secret', secretEncoding: 'base64', answerFormat: 'text' });
  });

  it('names the key of a bad value', () => {
    assert.throws(
      () => testSettings({ ready: { allowedSourceCidrs: ['203.0.113.0'] } }, 'dev'),
      /meterbridge:stages\.dev\.ready\.allowedSourceCidrs/,
    );
    assert.throws(() => testSettings({ ready: { maxBodyBytes: 10 * 1024 * 1024 } }), /maxBodyBytes/);
    assert.throws(() => testSettings({ ready: { verification: { algorithm: 'md5' } } }), /verification\.algorithm/);
    assert.throws(() => testSettings({ ready: { throttle: 1 } }), /unknown setting/);
  });

  it('requires signatures by default, and fails synth with a clear message when a stage drops them without source ranges or saying allowUnauthenticated', () => {
    assert.equal(DEFAULT_READY_SETTINGS.requireSignature, true);
    assert.throws(
      () => testSettings({ ready: { requireSignature: false } }, 'dev'),
      /meterbridge:stages\.dev\.ready: requireSignature is false and allowedSourceCidrs is empty, so anyone who reaches the API could store readings.*"allowUnauthenticated": true/,
    );
    assert.throws(
      () => readyStack({ ...DEFAULT_READY_SETTINGS, requireSignature: false }),
      /ReadyIngestion \(stage test\): requireSignature is false/,
    );
    assert.equal(testSettings({ ready: { requireSignature: false, allowedSourceCidrs: ['203.0.113.0/24'] } }).ready.requireSignature, false);
    assert.equal(testSettings({ ready: { requireSignature: false, allowUnauthenticated: true } }).ready.allowUnauthenticated, true);
    assert.throws(() => testSettings({ ready: { requireSignature: 'no' } }), /ready\.requireSignature: "no" must be true or false/);
  });

  it('tells the function whether signatures are required', () => {
    const { template: open } = readyStack({ ...DEFAULT_READY_SETTINGS, requireSignature: false, allowedSourceCidrs: ['203.0.113.0/24'] });
    const variables = (t: Template) =>
      (Object.values(t.findResources('AWS::Lambda::Function'))[0] as { Properties: { Environment: { Variables: Record<string, unknown> } } })
        .Properties.Environment.Variables;
    assert.equal(variables(readyStack().template).READY_REQUIRE_SIGNATURE, 'true');
    assert.equal(variables(open).READY_REQUIRE_SIGNATURE, 'false');
  });

  it('wires the stage block into the construct when no override is given', () => {
    const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'FromStage');
    const settings = testSettings({ ready: { throttleRateLimit: 7, throttleBurstLimit: 9 } });
    const construct = new ReadyIngestion(stack, 'Ready', { settings, storage: new ReadingStorage(stack, 'Storage') });
    assert.equal(construct.readySettings.throttleRateLimit, 7);
    Template.fromStack(stack).hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([Match.objectLike({ ThrottlingRateLimit: 7, ThrottlingBurstLimit: 9 })]),
    });
  });
});
