import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { before, describe, it } from 'node:test';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import { DEFAULT_BUNDLING, MeterbridgeFunction, type MeterbridgeFunctionProps } from '../../lib/meterbridge-function.ts';
import { testSettings } from '../fixtures/stage-settings.ts';

const ECHO_HANDLER = fileURLToPath(new URL('../fixtures/echo-handler.ts', import.meta.url));

function functionStack(props: Partial<MeterbridgeFunctionProps> = {}): { app: App; stack: Stack; fn: MeterbridgeFunction } {
  const app = new App();
  const stack = new Stack(app, 'Test');
  const fn = new MeterbridgeFunction(stack, 'Echo', { entry: ECHO_HANDLER, settings: testSettings(), ...props });
  return { app, stack, fn };
}

describe('MeterbridgeFunction', () => {
  // Bundling (local esbuild) happens at construction; one bundle serves the default-props tests.
  let template: Template;
  before(() => {
    template = Template.fromStack(functionStack().stack);
  });

  it('runs on Node.js 22 on arm64', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
    });
  });

  it('defaults to 256 MB and 30 seconds', () => {
    template.hasResourceProperties('AWS::Lambda::Function', { MemorySize: 256, Timeout: 30 });
  });

  it('serves the ESM bundle through index.handler', () => {
    template.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.handler' });
  });

  it('sets source maps, Powertools and stage variables', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: {
          NODE_OPTIONS: '--enable-source-maps',
          POWERTOOLS_SERVICE_NAME: 'Echo',
          POWERTOOLS_METRICS_NAMESPACE: 'Meterbridge',
          STAGE: 'test',
        },
      },
    });
  });

  it('logs JSON to its own log group', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      LoggingConfig: { LogFormat: 'JSON', LogGroup: { Ref: Match.stringLikeRegexp('^EchoLogGroup') } },
    });
  });

  it('keeps its logs for the retention in the stage settings', () => {
    template.hasResource('AWS::Logs::LogGroup', {
      Properties: { RetentionInDays: 30 },
      DeletionPolicy: 'Retain',
    });
  });

  it('has a role without AWS managed policies', () => {
    const roles = Object.values(template.findResources('AWS::IAM::Role'));
    assert.equal(roles.length, 1);
    assert.equal((roles[0] as { Properties: Record<string, unknown> }).Properties.ManagedPolicyArns, undefined);
  });

  it('may only write to its own log group', () => {
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: [
          {
            Effect: 'Allow',
            Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
            Resource: { 'Fn::GetAtt': [Match.stringLikeRegexp('^EchoLogGroup'), 'Arn'] },
          },
        ],
      },
      Roles: [{ Ref: Match.stringLikeRegexp('^EchoRole') }],
    });
  });

  it('bundles the handler into a source-mapped ES module that runs', async () => {
    // GIVEN
    const { app, fn } = functionStack();
    const asset = fn.node.findChild('Code') as s3assets.Asset;
    const bundleDir = join(app.synth().directory, asset.assetPath);

    // WHEN
    const bundle = (await import(pathToFileURL(join(bundleDir, 'index.mjs')).href)) as { handler: (event: unknown) => Promise<unknown> };

    // THEN
    assert.deepEqual(await bundle.handler({ meterId: 'm-1' }), { meterId: 'm-1' });
    const code = await readFile(join(bundleDir, 'index.mjs'), 'utf8');
    assert.ok(code.startsWith(DEFAULT_BUNDLING.banner ?? '<no banner>'), 'bundle should start with the createRequire banner');
    assert.match(code, /sourceMappingURL=index\.mjs\.map/);
  });

  it('lets callers override the defaults and add variables', () => {
    // GIVEN / WHEN
    const { stack } = functionStack({ timeout: Duration.seconds(90), memorySize: 512, environment: { LOG_LEVEL: 'DEBUG' } });

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', {
      Timeout: 90,
      MemorySize: 512,
      Environment: { Variables: Match.objectLike({ LOG_LEVEL: 'DEBUG', STAGE: 'test' }) },
    });
  });

  it('keeps its defaults when a prop is passed as undefined', () => {
    // GIVEN / WHEN
    const { stack } = functionStack({ runtime: undefined, memorySize: undefined, bundling: { minify: undefined } });

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', { Runtime: 'nodejs22.x', MemorySize: 256 });
  });

  it('adds grants to its own role', () => {
    // GIVEN
    const { stack, fn } = functionStack();

    // WHEN
    fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:ReceiveMessage'], resources: ['arn:aws:sqs:us-east-1:111122223333:q'] }));

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'sqs:ReceiveMessage' })]) },
      Roles: [{ Ref: Match.stringLikeRegexp('^EchoRole') }],
    });
  });
});
