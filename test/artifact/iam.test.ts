/**
 * The artifact stage's IAM evaluator and request-to-action mapping, and what they make of the
 * synthesized stack: each grant a function's calls need is shown to be needed by evaluating the
 * template's policies with that one statement removed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { MeterbridgeStack } from '../../lib/meterbridge-stack.ts';
import { testSettings } from '../fixtures/stage-settings.ts';
import {
  evaluate,
  resolveCfn,
  roleStatements,
  wildcardMatch,
  type AwsCall,
  type CfnTemplate,
  type PhysicalResources,
  type PolicyStatement,
} from './support/iam.ts';
import { deriveCalls } from './support/recorder.ts';

const call = (action: string, resource: string, context: Record<string, string> = {}): AwsCall => ({ action, resource, context });
const allow = (Action: string[], Resource: string[], Condition?: PolicyStatement['Condition']): PolicyStatement => ({
  source: 'test',
  Effect: 'Allow',
  Action,
  Resource,
  Condition,
});

describe('IAM evaluator', () => {
  it('matches wildcards as IAM does: actions case-insensitively, resources case-sensitively', () => {
    assert.equal(wildcardMatch('s3:Get*', 'S3:GETOBJECT', true), true);
    assert.equal(wildcardMatch('arn:aws:s3:::b/smt/*', 'arn:aws:s3:::b/smt/intervaldata/f.asc'), true);
    assert.equal(wildcardMatch('arn:aws:s3:::b/smt/*', 'arn:aws:s3:::b/ready/x'), false);
    assert.equal(wildcardMatch('arn:aws:s3:::b/SMT/*', 'arn:aws:s3:::b/smt/x'), false);
    assert.equal(wildcardMatch('secret:name-??????', 'secret:name-AbC123'), true);
    assert.equal(wildcardMatch('secret:name-??????', 'secret:name-AbC12'), false);
  });

  it('allows only what a statement allows, and an explicit Deny wins', () => {
    const statements = [allow(['dynamodb:UpdateItem'], ['arn:aws:dynamodb:r:1:table/t'])];
    assert.equal(evaluate(statements, call('dynamodb:UpdateItem', 'arn:aws:dynamodb:r:1:table/t')).allowed, true);
    assert.equal(evaluate(statements, call('dynamodb:PutItem', 'arn:aws:dynamodb:r:1:table/t')).allowed, false);
    assert.equal(evaluate(statements, call('dynamodb:UpdateItem', 'arn:aws:dynamodb:r:1:table/other')).allowed, false);
    const denied = evaluate(
      [...statements, { source: 'deny', Effect: 'Deny', Action: ['dynamodb:*'], Resource: ['*'] }],
      call('dynamodb:UpdateItem', 'arn:aws:dynamodb:r:1:table/t'),
    );
    assert.deepEqual(denied, { allowed: false, reason: 'explicitly denied by deny' });
  });

  it("evaluates StringEquals on the request's condition keys; an unknown operator never allows", () => {
    const metrics = [allow(['cloudwatch:PutMetricData'], ['*'], { StringEquals: { 'cloudwatch:namespace': ['Meterbridge'] } })];
    assert.equal(evaluate(metrics, call('cloudwatch:PutMetricData', '*', { 'cloudwatch:namespace': 'Meterbridge' })).allowed, true);
    assert.equal(evaluate(metrics, call('cloudwatch:PutMetricData', '*', { 'cloudwatch:namespace': 'Other' })).allowed, false);
    assert.equal(evaluate(metrics, call('cloudwatch:PutMetricData', '*')).allowed, false);
    const unknown = [allow(['s3:GetObject'], ['*'], { DateGreaterThan: { 'aws:CurrentTime': ['2020-01-01T00:00:00Z'] } })];
    assert.equal(evaluate(unknown, call('s3:GetObject', 'arn:aws:s3:::b/k')).allowed, false);
  });

  it("resolves Ref, Fn::GetAtt, Fn::Join and pseudo parameters to the test's physical resources", () => {
    const physical: PhysicalResources = {
      region: 'us-east-1',
      account: '123456789012',
      ref: (id) => (id === 'T' ? 'table-1' : undefined),
      getAtt: (id, a) => (id === 'T' && a === 'Arn' ? 'arn:aws:dynamodb:us-east-1:123456789012:table/table-1' : undefined),
    };
    assert.deepEqual(
      resolveCfn(
        {
          a: { Ref: 'T' },
          b: { 'Fn::GetAtt': ['T', 'Arn'] },
          c: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':x:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }]] },
        },
        physical,
      ),
      { a: 'table-1', b: 'arn:aws:dynamodb:us-east-1:123456789012:table/table-1', c: 'arn:aws:x:us-east-1:123456789012' },
    );
    assert.throws(() => resolveCfn({ Ref: 'Missing' }, physical), /Ref Missing/);
  });
});

describe('request to IAM action mapping', () => {
  const options = {
    target: 'http://x',
    region: 'us-east-1',
    account: '123456789012',
    secretArn: (id: string) => `arn:aws:secretsmanager:us-east-1:123456789012:secret:${id}-AbCdEf`,
  };
  const s3 = (method: string, path: string, headers: Record<string, string> = {}) =>
    deriveCalls('s3', method, new URL(path, 'http://x'), headers, Buffer.alloc(0), options);
  const json = (service: string, target: string, body: unknown) =>
    deriveCalls(service, 'POST', new URL('http://x/'), { 'x-amz-target': target }, Buffer.from(JSON.stringify(body)), options);

  it('maps S3 object, multipart and listing requests to the actions S3 authorizes them by', () => {
    assert.deepEqual(s3('HEAD', '/b/smt/a%20b.asc'), [{ action: 's3:GetObject', resource: 'arn:aws:s3:::b/smt/a b.asc' }]);
    assert.deepEqual(s3('GET', '/b/smt/x?versionId=3'), [{ action: 's3:GetObjectVersion', resource: 'arn:aws:s3:::b/smt/x' }]);
    assert.deepEqual(s3('POST', '/b/smt/x?uploads'), [{ action: 's3:PutObject', resource: 'arn:aws:s3:::b/smt/x' }]);
    assert.deepEqual(s3('PUT', '/b/smt/x?partNumber=1&uploadId=u'), [{ action: 's3:PutObject', resource: 'arn:aws:s3:::b/smt/x' }]);
    assert.deepEqual(s3('DELETE', '/b/smt/x?uploadId=u'), [{ action: 's3:AbortMultipartUpload', resource: 'arn:aws:s3:::b/smt/x' }]);
    assert.deepEqual(s3('GET', '/b?list-type=2&prefix=smt%2F'), [
      { action: 's3:ListBucket', resource: 'arn:aws:s3:::b', context: { 's3:prefix': 'smt/' } },
    ]);
    assert.deepEqual(
      s3('PUT', '/b/k', { 'x-amz-copy-source': '/b/src' }).map((c) => c.action),
      ['s3:PutObject', 's3:GetObject'],
    );
  });

  it('maps JSON-protocol calls to the resource they name', () => {
    assert.deepEqual(json('dynamodb', 'DynamoDB_20120810.UpdateItem', { TableName: 't' }), [
      { action: 'dynamodb:UpdateItem', resource: 'arn:aws:dynamodb:us-east-1:123456789012:table/t' },
    ]);
    assert.deepEqual(json('dynamodb', 'DynamoDB_20120810.Query', { TableName: 't', IndexName: 'i' }), [
      { action: 'dynamodb:Query', resource: 'arn:aws:dynamodb:us-east-1:123456789012:table/t/index/i' },
    ]);
    assert.deepEqual(json('sqs', 'AmazonSQS.SendMessage', { QueueUrl: 'http://127.0.0.1:1/123456789012/dlq' }), [
      { action: 'sqs:SendMessage', resource: 'arn:aws:sqs:us-east-1:123456789012:dlq' },
    ]);
    assert.deepEqual(json('secretsmanager', 'secretsmanager.GetSecretValue', { SecretId: 'meterbridge/dev/smt/pgp' }), [
      { action: 'secretsmanager:GetSecretValue', resource: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:meterbridge/dev/smt/pgp-AbCdEf' },
    ]);
    assert.deepEqual(json('monitoring', 'GraniteServiceVersion20100801.PutMetricData', { Namespace: 'Meterbridge', MetricData: [] }), [
      { action: 'cloudwatch:PutMetricData', resource: '*', context: { 'cloudwatch:namespace': 'Meterbridge' } },
    ]);
  });

  it('refuses what it cannot map instead of guessing', () => {
    assert.throws(() => json('dynamodb', 'DynamoDB_20120810.ExecuteStatement', { Statement: 'x' }), /no resource mapping/);
    assert.throws(
      () => deriveCalls('kinesis', 'POST', new URL('http://x/'), { 'x-amz-target': 'Kinesis_20131202.PutRecord' }, Buffer.from('{}'), options),
      /no IAM mapping/,
    );
    assert.throws(() => s3('POST', '/b/k?select'), /no mapping/);
  });
});

describe("the synthesized stack's function policies, one statement removed", () => {
  // Bundling skipped: only the policies matter here (bundles.test.ts runs the real bundles).
  const stack = new MeterbridgeStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Meterbridge-test', {
    settings: testSettings({ smt: { enabled: true, host: 'sftp.example.invalid' } }),
  });
  const template = Template.fromStack(stack).toJSON() as CfnTemplate;
  const logicalId = (prefix: string, type: string) => {
    const found = Object.entries(template.Resources).find(([id, r]) => id.startsWith(prefix) && r.Type === type);
    if (!found) throw new Error(`no ${type} ${prefix}*`);
    return found[0];
  };
  const physical: PhysicalResources = {
    region: 'us-east-1',
    account: '123456789012',
    ref: (id) => `ref-${id}`,
    getAtt: (id, attribute) =>
      template.Resources[id]?.Type === 'AWS::S3::Bucket'
        ? `arn:aws:s3:::bucket-${id}`
        : template.Resources[id]?.Type === 'AWS::DynamoDB::Table'
          ? `arn:aws:dynamodb:us-east-1:123456789012:table/${id}`
          : `arn:aws:x:us-east-1:123456789012:${id}.${attribute}`,
  };
  const roleOf = (fnPrefix: string) => {
    const fn = template.Resources[logicalId(fnPrefix, 'AWS::Lambda::Function')]!;
    return (fn.Properties!.Role as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0];
  };
  const ledger = physical.getAtt(logicalId('StorageLedger', 'AWS::DynamoDB::Table'), 'Arn')!;
  const archive = physical.getAtt(logicalId('SmtArchiveBucket', 'AWS::S3::Bucket'), 'Arn')!;
  const fetchCalls: AwsCall[] = [
    call('dynamodb:UpdateItem', ledger),
    call('dynamodb:GetItem', ledger),
    call('s3:PutObject', `${archive}/smt/intervaldata/IntervalMeterUsage.asc`),
    call('s3:GetObject', `${archive}/smt/intervaldata/IntervalMeterUsage.asc`),
    call('secretsmanager:GetSecretValue', 'arn:aws:secretsmanager:us-east-1:123456789012:secret:meterbridge/test/smt/transport-AbCdEf'),
    call('cloudwatch:PutMetricData', '*', { 'cloudwatch:namespace': 'Meterbridge' }),
  ];
  const statements = roleStatements(template, roleOf('SmtFetchFunction'), physical);

  it('allow every call the SMT fetch step makes, and nothing outside its prefix, table, secret or namespace', () => {
    for (const c of fetchCalls) assert.equal(evaluate(statements, c).allowed, true, `${c.action} ${c.resource}`);
    assert.equal(evaluate(statements, call('s3:PutObject', `${archive}/ready/x`)).allowed, false);
    assert.equal(
      evaluate(statements, call('dynamodb:UpdateItem', physical.getAtt(logicalId('StorageReadings', 'AWS::DynamoDB::Table'), 'Arn')!)).allowed,
      false,
    );
    assert.equal(
      evaluate(
        statements,
        call('secretsmanager:GetSecretValue', 'arn:aws:secretsmanager:us-east-1:123456789012:secret:meterbridge/test/smt/pgp-AbCdEf'),
      ).allowed,
      false,
    );
    assert.equal(evaluate(statements, call('cloudwatch:PutMetricData', '*', { 'cloudwatch:namespace': 'AWS/Lambda' })).allowed, false);
  });

  it('deny a needed call once the statement granting it is removed (every grant of the fetch role is needed)', () => {
    const used = new Set(
      fetchCalls.flatMap((c) => {
        const decision = evaluate(statements, c);
        return decision.allowed ? decision.by : [];
      }),
    );
    assert.ok(used.size >= 4, `statements used: ${[...used].map((s) => s.source).join(', ')}`);
    for (const removed of used) {
      const without = statements.filter((s) => s !== removed);
      const denied = fetchCalls.filter((c) => !evaluate(without, c).allowed).map((c) => c.action);
      assert.ok(denied.length > 0, `without ${removed.source} (${removed.Action?.join(',')}) every call is still allowed`);
    }
  });
});
