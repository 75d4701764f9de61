import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { QueryApi } from '../../lib/query-api.ts';
import { parseQuerySettings } from '../../lib/settings.ts';
import { ReadingStorage } from '../../lib/storage.ts';
import { testSettings } from '../fixtures/stage-settings.ts';

function queryStack(overrides: Record<string, unknown> = {}): { stack: Stack; template: Template } {
  // Skips esbuild bundling: these tests read the template.
  const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Test');
  const storage = new ReadingStorage(stack, 'Storage');
  new QueryApi(stack, 'Query', { settings: testSettings(overrides), storage });
  return { stack, template: Template.fromStack(stack) };
}

describe('QueryApi', () => {
  let template: Template;
  let stack: Stack;
  before(() => {
    ({ template, stack } = queryStack());
  });

  it('serves GET /meters, /meters/{meterId} and /meters/{meterId}/readings, every method IAM-authorized and parameter-validated', () => {
    const methods = template.findResources('AWS::ApiGateway::Method', { Properties: { HttpMethod: 'GET' } });
    assert.equal(Object.keys(methods).length, 3);
    for (const method of Object.values(methods) as Array<{ Properties: Record<string, unknown> }>) {
      assert.equal(method.Properties.AuthorizationType, 'AWS_IAM');
      assert.ok(method.Properties.RequestValidatorId, 'a request validator');
      assert.equal(method.Properties.ApiKeyRequired, false);
    }
    template.hasResourceProperties('AWS::ApiGateway::RequestValidator', { ValidateRequestParameters: true });
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      RequestParameters: Match.objectLike({
        'method.request.path.meterId': true,
        'method.request.querystring.format': false,
        'method.request.querystring.from': false,
      }),
    });
    template.resourceCountIs('AWS::ApiGateway::UsagePlan', 0);
  });

  it('throttles the stage and writes JSON access logs to a KMS-encrypted log group', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([Match.objectLike({ ThrottlingRateLimit: 20, ThrottlingBurstLimit: 40, DataTraceEnabled: false })]),
      AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('requestId') }),
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { KmsKeyId: Match.anyValue() });
  });

  it('lets the function only Query the readings table (besides writing its own logs)', () => {
    const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^QueryFunction') }] } });
    const statements = Object.values(policies).flatMap(
      (p) => (p as { Properties: { PolicyDocument: { Statement: Array<{ Action: unknown }> } } }).Properties.PolicyDocument.Statement,
    );
    assert.deepEqual(
      statements.map((s) => s.Action).filter((a) => JSON.stringify(a).includes('dynamodb')),
      ['dynamodb:Query'],
    );
  });

  it('requires API keys with a usage plan when the stage says so', () => {
    const { template: withKeys } = queryStack({ query: { apiKeys: true, throttleRateLimit: 5, throttleBurstLimit: 10 } });
    const methods = Object.values(withKeys.findResources('AWS::ApiGateway::Method', { Properties: { HttpMethod: 'GET' } })) as Array<{
      Properties: Record<string, unknown>;
    }>;
    assert.ok(methods.every((m) => m.Properties.ApiKeyRequired === true && m.Properties.AuthorizationType === 'AWS_IAM'));
    withKeys.hasResourceProperties('AWS::ApiGateway::UsagePlan', { Throttle: { RateLimit: 5, BurstLimit: 10 } });
  });

  it('refuses bad query settings', () => {
    assert.throws(() => parseQuerySettings({ apiKey: true }, 'q'), /unknown query setting/);
    assert.throws(() => parseQuerySettings({ throttleRateLimit: 0 }, 'q'), /whole number/);
    assert.deepEqual(parseQuerySettings(undefined, 'q'), { apiKeys: false, throttleRateLimit: 20, throttleBurstLimit: 40 });
  });

  it('is clean under cdk-nag AwsSolutions (every acknowledgement justified in the construct)', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    assert.deepEqual(
      report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`),
      [],
    );
  });
});
