import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { SmtIngestion } from '../../lib/smt-ingestion.ts';
import { parseSmtSettings, SmtSettingsError } from '../../lib/smt-settings.ts';
import { ReadingStorage } from '../../lib/storage.ts';
import { DEFAULT_MISSING_WINDOW_DAYS } from '../../lambdas/core/smt/esiid-days.ts';
import { testSettings } from '../fixtures/stage-settings.ts';

function smtStack(smt: Record<string, unknown> = {}): { template: Template; smt: SmtIngestion } {
  const stack = new Stack(new App(), 'Test');
  const settings = testSettings({ smt });
  const storage = new ReadingStorage(stack, 'Storage');
  const construct = new SmtIngestion(stack, 'Smt', { settings, storage });
  return { template: Template.fromStack(stack), smt: construct };
}

describe('SmtIngestion', () => {
  let enabled: { template: Template; smt: SmtIngestion };
  before(() => {
    enabled = smtStack({
      enabled: true,
      protocol: 'ftps',
      host: 'ftp.smartmetertexas.biz',
      folders: ['intervaldata'],
      afterArchive: 'keep',
      schedule: 'rate(30 minutes)',
      fetchReservedConcurrency: 1,
    });
  });

  it('keeps the archive versioned, encrypted, TLS-only, access-logged, with lifecycle transitions', () => {
    enabled.template.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'smt-archive/' }),
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ Transitions: [{ StorageClass: 'GLACIER_IR', TransitionInDays: 90 }] }),
          Match.objectLike({ NoncurrentVersionExpiration: { NoncurrentDays: 90 } }),
        ]),
      },
    });
    enabled.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  it('sends object-created events under smt/ to the file queue, which dead-letters after 3 receives', () => {
    enabled.template.hasResourceProperties('Custom::S3BucketNotifications', {
      NotificationConfiguration: {
        QueueConfigurations: [
          Match.objectLike({ Events: ['s3:ObjectCreated:*'], Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'smt/' }] } } }),
        ],
      },
    });
    enabled.template.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 5400, RedrivePolicy: Match.objectLike({ maxReceiveCount: 3 }) });
    enabled.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', { BatchSize: 1, FunctionResponseTypes: ['ReportBatchItemFailures'] });
  });

  it('runs the fetch function on the configured schedule with the configured server, and one run at a time when the stage reserves it', () => {
    enabled.template.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(30 minutes)', State: 'ENABLED' });
    enabled.template.hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: 1,
      Timeout: 600,
      Environment: {
        Variables: Match.objectLike({
          SMT_PROTOCOL: 'ftps',
          SMT_HOST: 'ftp.smartmetertexas.biz',
          SMT_PORT: '21',
          SMT_FOLDERS: 'intervaldata',
          SMT_AFTER_ARCHIVE: 'keep',
          SMT_TRANSPORT_SECRET: 'meterbridge/test/smt/transport',
        }),
      },
    });
  });

  it('gives the process function 10 GiB of /tmp for the verified clear file, and the PGP secret name', () => {
    enabled.template.hasResourceProperties('AWS::Lambda::Function', {
      EphemeralStorage: { Size: 10240 },
      Timeout: 900,
      Environment: { Variables: Match.objectLike({ SMT_PGP_SECRET: 'meterbridge/test/smt/pgp' }) },
    });
  });

  it('passes the strictCsv setting to the process function (default: spreadsheet variants taken)', () => {
    enabled.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ SMT_PGP_SECRET: 'meterbridge/test/smt/pgp', SMT_STRICT_CSV: 'false' }) },
    });
  });

  it('grants the fetch function put on smt/* only, and the process function get on smt/* only', () => {
    const policies = enabled.template.findResources('AWS::IAM::Policy');
    const statements = Object.values(policies).flatMap(
      (p) => (p as { Properties: { PolicyDocument: { Statement: Array<{ Action: string | string[] }> } } }).Properties.PolicyDocument.Statement,
    );
    const s3Actions = statements
      .flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]))
      .filter((a) => a.startsWith('s3:') && a !== 's3:PutBucketNotification'); // that one is CDK's notification custom resource
    assert.deepEqual([...new Set(s3Actions)].sort(), [
      's3:AbortMultipartUpload',
      's3:GetObject',
      's3:GetObjectVersion',
      's3:ListBucket',
      's3:PutObject',
    ]);
  });

  it('lets the fetch function list the archive under smt/ only, so S3 answers 404 (not 403) for a key it has not written yet', () => {
    enabled.template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: 's3:ListBucket',
            Effect: 'Allow',
            Condition: { StringLike: { 's3:prefix': ['smt/*'] } },
            Resource: { 'Fn::GetAtt': [Match.stringLikeRegexp('^SmtArchive'), 'Arn'] },
          }),
        ]),
      },
      Roles: [{ Ref: Match.stringLikeRegexp('^SmtFetchFunctionRole') }],
    });
  });

  it('reserves no fetch concurrency by default (a fresh account has none to spare), and puts the function in no VPC', () => {
    const { template } = smtStack({ enabled: true, host: 'sftp.smartmetertexas.biz' });
    const functions = Object.values(template.findResources('AWS::Lambda::Function')) as Array<{ Properties: Record<string, unknown> }>;
    assert.ok(functions.length >= 2);
    for (const fn of functions) {
      assert.equal(fn.Properties.ReservedConcurrentExecutions, undefined);
      assert.equal(fn.Properties.VpcConfig, undefined);
    }
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::EIP', 0);
  });

  for (const azs of [1, 2] as const) {
    it(`with fixedEgressIp and ${azs} AZ(s): the fetch function leaves through ${azs} NAT gateway(s) on Elastic IPs allocated here`, () => {
      const { template, smt } = smtStack({
        enabled: true,
        host: 'sftp.smartmetertexas.biz',
        fixedEgressIp: true,
        ...(azs === 2 ? { egressAvailabilityZones: 2 } : {}),
      });
      template.resourceCountIs('AWS::EC2::EIP', azs);
      template.resourceCountIs('AWS::EC2::NatGateway', azs);
      const eipIds = Object.keys(template.findResources('AWS::EC2::EIP'));
      const nats = Object.values(template.findResources('AWS::EC2::NatGateway')) as Array<{
        Properties: { AllocationId: { 'Fn::GetAtt': [string, string] } };
      }>;
      assert.deepEqual(
        nats.map((n) => n.Properties.AllocationId['Fn::GetAtt'][0]).sort(),
        [...eipIds].sort(),
        'each NAT gateway uses one of our Elastic IPs',
      );
      template.resourceCountIs('AWS::EC2::FlowLog', 1);
      // Only the fetch function is in the VPC, in the private subnets, with the outbound-only group.
      const functions = Object.entries(template.findResources('AWS::Lambda::Function')) as Array<
        [string, { Properties: { VpcConfig?: { SubnetIds: unknown[]; SecurityGroupIds: unknown[] } } }]
      >;
      const inVpc = functions.filter(([, fn]) => fn.Properties.VpcConfig).map(([id]) => id);
      assert.equal(inVpc.length, 1);
      assert.match(inVpc[0]!, /^SmtFetchFunction/);
      const vpcConfig = functions.find(([id]) => id === inVpc[0])![1].Properties.VpcConfig!;
      assert.equal(vpcConfig.SubnetIds.length, azs);
      template.hasResourceProperties('AWS::EC2::SecurityGroup', {
        SecurityGroupEgress: [Match.objectLike({ CidrIp: '0.0.0.0/0' })],
        SecurityGroupIngress: Match.absent(),
      });
      // The role may manage the function's network interfaces (Lambda needs it to attach to the VPC).
      template.hasResourceProperties('AWS::IAM::Policy', {
        PolicyDocument: { Statement: [Match.objectLike({ Action: Match.arrayWith(['ec2:CreateNetworkInterface', 'ec2:DeleteNetworkInterface']) })] },
        Roles: [{ Ref: Match.stringLikeRegexp('^SmtFetchFunctionRole') }],
      });
      assert.equal(smt.egress?.elasticIps.length, azs);
    });
  }

  it('is deployed switched off when the stage has no smt block', () => {
    const { template } = smtStack();
    template.hasResourceProperties('AWS::Events::Rule', { State: 'DISABLED' });
  });

  it('exposes monitoring with its functions (the missing-days check included) and the file queue', () => {
    const monitoring = enabled.smt.monitoring;
    assert.equal(monitoring.source, 'smt');
    assert.deepEqual(
      monitoring.functions.map((f) => f.label),
      ['fetch', 'process', 'missing-days'],
    );
    assert.deepEqual(
      monitoring.queues.map((q) => q.label),
      ['files'],
    );
  });
});

describe('SMT missing-days check', () => {
  const checkFunction = (template: Template) => {
    const [id, fn] = Object.entries(template.findResources('AWS::Lambda::Function')).find(([logicalId]) =>
      /^SmtMissingDaysFunction/.test(logicalId),
    )!;
    return { id, fn: fn as { Properties: { Role: { 'Fn::GetAtt': [string, string] }; Environment: { Variables: Record<string, unknown> } } } };
  };

  it('runs daily on smt.missingDaysSchedule (default after SMT delivery), enabled with smt.enabled, with the window it is given', () => {
    const { template } = smtStack({ enabled: true, host: 'sftp.example.com', missingDaysWindow: 5 });
    const { id, fn } = checkFunction(template);
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'cron(0 15 * * ? *)',
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [id, 'Arn'] } })],
    });
    assert.equal(fn.Properties.Environment.Variables.SMT_MISSING_WINDOW_DAYS, '5');
    assert.ok(fn.Properties.Environment.Variables.READINGS_TABLE);
    const off = smtStack({ missingDaysSchedule: 'cron(30 16 * * ? *)' }).template;
    off.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'cron(30 16 * * ? *)',
      State: 'DISABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [checkFunction(off).id, 'Arn'] } })],
    });
  });

  it('may only Query the readings table and put metrics (no writes, no ledger)', () => {
    const { template } = smtStack({ enabled: true, host: 'sftp.example.com' });
    const role = checkFunction(template).fn.Properties.Role['Fn::GetAtt'][0];
    type Statement = { Action: string | string[]; Resource: unknown };
    const statements = Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((policy) => JSON.stringify(policy.Properties.Roles).includes(role))
      .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
    assert.deepEqual(statements.flatMap((s) => [s.Action].flat()).sort(), [
      'cloudwatch:PutMetricData',
      'dynamodb:Query',
      'logs:CreateLogStream',
      'logs:PutLogEvents',
    ]);
    const readingsTable = Object.keys(template.findResources('AWS::DynamoDB::Table')).find((id) => /Readings/.test(id))!;
    const query = statements.find((s) => s.Action === 'dynamodb:Query')!;
    assert.deepEqual(query.Resource, { 'Fn::GetAtt': [readingsTable, 'Arn'] });
  });

  it('alarms on SmtMissingEsiidDays >= 1 (Maximum, hourly, missing data keeps the state), or the threshold the stage sets', async () => {
    const { MeterbridgeStack } = await import('../../lib/meterbridge-stack.ts');
    const build = (alarms: Record<string, unknown>) =>
      Template.fromStack(
        new MeterbridgeStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Meterbridge-test', {
          settings: testSettings({ smt: { enabled: true, host: 'sftp.example.invalid' }, ...alarms }),
        }),
      );
    const expected = (threshold: number) => ({
      AlarmName: 'meterbridge-test-smt-smt-missing-esiid-days',
      MetricName: 'SmtMissingEsiidDays',
      Namespace: 'Meterbridge',
      Statistic: 'Maximum',
      Period: 3600,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: threshold,
      TreatMissingData: 'ignore',
      Dimensions: Match.arrayWith([{ Name: 'Source', Value: 'smt' }]),
    });
    build({}).hasResourceProperties('AWS::CloudWatch::Alarm', expected(1));
    build({ alarms: { metricThresholds: { SmtMissingEsiidDays: 20 } } }).hasResourceProperties('AWS::CloudWatch::Alarm', expected(20));
  });
});

describe('parseSmtSettings', () => {
  it('defaults to SFTP on port 22, switched off, deleting after archive', () => {
    const smt = parseSmtSettings(undefined, 'k', 'prod');
    assert.deepEqual(
      [smt.enabled, smt.protocol, smt.port, smt.afterArchive, smt.transportSecretName],
      [false, 'sftp', 22, 'delete', 'meterbridge/prod/smt/transport'],
    );
    assert.deepEqual([smt.fetchReservedConcurrency, smt.fixedEgressIp, smt.egressAvailabilityZones], [undefined, false, 1]);
    // The CLI's default window (lib/ may not import it) is the stage's default.
    assert.deepEqual([smt.missingDaysSchedule, smt.missingDaysWindow], ['cron(0 15 * * ? *)', DEFAULT_MISSING_WINDOW_DAYS]);
  });

  for (const [raw, key] of [
    [{ enabled: true }, 'k.host'],
    [{ protocol: 'ftp' }, 'k.protocol'],
    [{ port: 70000 }, 'k.port'],
    [{ folders: ['../etc'] }, 'k.folders'],
    [{ schedule: 'every 5 minutes' }, 'k.schedule'],
    [{ afterArchive: 'move' }, 'k.afterArchive'],
    [{ fetchReservedConcurrency: 0 }, 'k.fetchReservedConcurrency'],
    [{ fixedEgressIp: 'yes' }, 'k.fixedEgressIp'],
    [{ fixedEgressIp: true, egressAvailabilityZones: 3 }, 'k.egressAvailabilityZones'],
    [{ egressAvailabilityZones: 2 }, 'k.egressAvailabilityZones'],
    [{ hots: 'x' }, 'k.hots'],
    [{ archiveColdAfterDays: 0 }, 'k.archiveColdAfterDays'],
    [{ missingDaysSchedule: 'daily' }, 'k.missingDaysSchedule'],
    [{ missingDaysWindow: 0 }, 'k.missingDaysWindow'],
    [{ missingDaysWindow: 2.5 }, 'k.missingDaysWindow'],
  ] as const) {
    it(`refuses ${JSON.stringify(raw)} naming ${key}`, () => {
      assert.throws(
        () => parseSmtSettings(raw, 'k', 'dev'),
        (error: unknown) => error instanceof SmtSettingsError && error.message.startsWith(`${key}: `),
      );
    });
  }
});

describe('SMT function bundles', () => {
  for (const entry of ['lambdas/smt-fetch.ts', 'lambdas/smt-process.ts']) {
    it(`${entry} bundles as the construct bundles it and parses as an ES module (no duplicate createRequire)`, async () => {
      const { execFileSync } = await import('node:child_process');
      const { mkdtempSync, rmSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      const { SMT_BUNDLING } = await import('../../lib/smt-ingestion.ts');
      const { DEFAULT_BUNDLING } = await import('../../lib/meterbridge-function.ts');
      const dir = mkdtempSync(join(tmpdir(), 'mb-smt-bundle-'));
      try {
        const out = join(dir, 'index.mjs');
        execFileSync(
          'node_modules/.bin/esbuild',
          [
            entry,
            '--bundle',
            '--platform=node',
            '--format=esm',
            '--target=node22',
            `--outfile=${out}`,
            '--main-fields=module,main',
            `--banner:js=${DEFAULT_BUNDLING.banner}`,
            ...SMT_BUNDLING.externalModules.map((m) => `--external:${m}`),
          ],
          { stdio: 'pipe' },
        );
        execFileSync(process.execPath, ['--check', out], { stdio: 'pipe' });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('SMT in the stack', () => {
  it('is watched by the operations construct only when switched on', async () => {
    const { MeterbridgeStack } = await import('../../lib/meterbridge-stack.ts');
    const build = (smt: Record<string, unknown>) =>
      new MeterbridgeStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Meterbridge-test', { settings: testSettings({ smt }) });
    const on = build({ enabled: true, host: 'sftp.example.invalid' });
    const names = on.operations.allAlarms.map((a) => a.name);
    for (const expected of [
      'meterbridge-test-smt-hours-since-last-file',
      'meterbridge-test-smt-files-failed',
      'meterbridge-test-smt-fetch-errors',
      'meterbridge-test-smt-files-dlq',
      'meterbridge-test-smt-freshness',
    ]) {
      assert.ok(names.includes(expected), `${expected} in ${names.filter((n) => n.includes('smt')).join(', ')}`);
    }
    const off = build({});
    assert.deepEqual(
      off.operations.allAlarms.map((a) => a.name).filter((n) => n.includes('-smt-')),
      [],
    );
  });
});
