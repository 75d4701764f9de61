/**
 * The one place that decides how every meterbridge Lambda function is built, logs and is
 * permitted: handlers only choose their entry file and what they are granted.
 */
import { Duration, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { StageSettings } from './settings.ts';

/** CloudWatch metrics namespace of every custom metric the functions publish. */
export const METRICS_NAMESPACE = 'Meterbridge';

/**
 * esbuild settings shared by every function.
 *
 * - ESM output: top-level await lets SDK clients and cached secrets be set up during init.
 *   The banner restores what CommonJS dependencies bundled into the ES module expect of their
 *   scope: `require`, and `__filename`/`__dirname` (ssh2 reads `__dirname` at module load; without
 *   it the SMT fetch bundle died on Node 22 with "ReferenceError: __dirname is not defined in ES
 *   module scope"). They point at the bundle itself (/var/task/index.mjs on Lambda).
 * - `@aws-sdk/*` is left out of the bundle and taken from the Lambda runtime: smaller bundles
 *   and faster cold starts, at the price of running whatever SDK v3 version the runtime ships
 *   (usually a few weeks behind package-lock.json). The core code only uses long-stable
 *   DynamoDB/CloudWatch/S3/SQS/Secrets Manager commands. Pass `bundling.externalModules: []`
 *   to pin the SDK for a function that needs a newer feature.
 * - Source maps plus NODE_OPTIONS=--enable-source-maps make stack traces point at the .ts files.
 * - Local esbuild only: the build machines have no Docker.
 */
export const DEFAULT_BUNDLING: nodejs.BundlingOptions = {
  format: nodejs.OutputFormat.ESM,
  mainFields: ['module', 'main'],
  // Imports under names of their own: a bundled ES module (openpgp) may import `createRequire` itself.
  banner: [
    "import { createRequire as __meterbridgeCreateRequire } from 'module';",
    "import { fileURLToPath as __meterbridgeFileURLToPath } from 'url';",
    "import { dirname as __meterbridgeDirname } from 'path';",
    'const require = __meterbridgeCreateRequire(import.meta.url);',
    'const __filename = __meterbridgeFileURLToPath(import.meta.url);',
    'const __dirname = __meterbridgeDirname(__filename);',
  ].join(' '),
  target: 'node22',
  minify: true,
  sourceMap: true,
  externalModules: ['@aws-sdk/*'],
  forceDockerBundling: false,
};

export interface MeterbridgeFunctionProps
  // The function always gets its own role and log group (see below); the deprecated logRetention
  // props would add a custom resource with an AWS managed policy, which is what this avoids.
  extends Omit<nodejs.NodejsFunctionProps, 'role' | 'logGroup' | 'logRetention' | 'logRetentionRole' | 'logRetentionRetryOptions'> {
  /**
   * Handler entry file (.ts). Required: NodejsFunction's guess from the caller's file name does
   * not work from ES modules.
   */
  readonly entry: string;

  /** Stage settings: log retention, removal policy and the STAGE variable come from here. */
  readonly settings: StageSettings;

  /**
   * Powertools service name, the `service` key on every log line and metric.
   *
   * @default - the construct id
   */
  readonly serviceName?: string;

  /**
   * Lambda runtime.
   *
   * @default lambda.Runtime.NODEJS_22_X - matches `target: 'node22'` and middy 6 / Powertools as tested
   */
  readonly runtime?: lambda.Runtime;

  /**
   * Instruction set.
   *
   * @default lambda.Architecture.ARM_64 - about 20% cheaper per GB-second; nothing native is bundled
   */
  readonly architecture?: lambda.Architecture;

  /**
   * Memory in MB (CPU scales with it).
   *
   * @default 256 - parsing and DynamoDB I/O are light; 128 MB roughly doubles cold-start time
   */
  readonly memorySize?: number;

  /**
   * Hard limit on one invocation.
   *
   * @default Duration.seconds(30)
   */
  readonly timeout?: Duration;

  /**
   * esbuild options, merged over {@link DEFAULT_BUNDLING} key by key.
   *
   * @default DEFAULT_BUNDLING
   */
  readonly bundling?: nodejs.BundlingOptions;
}

/**
 * NodejsFunction with meterbridge defaults: Node 22 on arm64, minified ESM bundle with source
 * maps, JSON logs to its own log group, and its own role that can only write those logs until
 * something is granted to it.
 */
export class MeterbridgeFunction extends nodejs.NodejsFunction {
  /** Log group the function writes to, retained per the stage's settings. */
  public readonly functionLogGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: MeterbridgeFunctionProps) {
    const { settings, serviceName, bundling, environment, ...functionProps } = props;

    // Created as siblings because super() needs them and `this` does not exist before it.
    const logGroup = new logs.LogGroup(scope, `${id}LogGroup`, {
      retention: settings.logRetention,
      removalPolicy: settings.removalPolicy,
    });
    // Not the default role: that one carries the AWS managed AWSLambdaBasicExecutionRole,
    // which may write to any log group in the account (cdk-nag AwsSolutions-IAM4).
    const role = new iam.Role(scope, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of the meterbridge ${settings.stage} function ${id}`,
    });
    // The log group's Arn attribute ends in ":*", covering the streams Lambda creates in it.
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );

    const runtime = props.runtime ?? lambda.Runtime.NODEJS_22_X;
    super(scope, id, {
      ...functionProps,
      // `??` rather than defaults spread first: a prop passed as undefined must not erase a default.
      runtime,
      architecture: props.architecture ?? lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 256,
      timeout: props.timeout ?? Duration.seconds(30),
      loggingFormat: props.loggingFormat ?? lambda.LoggingFormat.JSON,
      role,
      logGroup,
      bundling: { ...DEFAULT_BUNDLING, ...definedOnly(bundling ?? {}) },
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: serviceName ?? id,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        STAGE: settings.stage,
        ...environment,
      },
    });
    this.functionLogGroup = logGroup;

    // Only the default runtime is vouched for; anyone choosing another one answers to the rule.
    if (runtime.name === lambda.Runtime.NODEJS_22_X.name) {
      Validations.of(this).acknowledge({
        id: 'AwsSolutions-L1',
        reason:
          'Node.js 22 (an LTS line Lambda still supports) is chosen deliberately: the bundle targets node22 and ' +
          'middy 6 / Powertools are tested on it. Node.js 24 follows once they have been validated on it.',
      });
    }
  }

  /**
   * Lets the function publish the custom metrics (namespace {@link METRICS_NAMESPACE}) and
   * returns the policy. PutMetricData has no resource-level permissions, so it can only be
   * narrowed by namespace; the statement gets a policy of its own so that the cdk-nag
   * acknowledgement covers it and nothing else. Functions granting the same `policyId` in the
   * same scope share one policy. The function depends on the policy: its first invocations
   * already flush metrics.
   *
   * @param policyId id of the policy in the function's scope. @default `<function id without "Function">MetricsPolicy`
   */
  public grantPutMetrics(policyId = `${this.node.id.replace(/Function$/, '')}MetricsPolicy`): iam.Policy {
    const scope = this.node.scope as Construct;
    let policy = scope.node.tryFindChild(policyId) as iam.Policy | undefined;
    if (policy === undefined) {
      policy = new iam.Policy(scope, policyId, {
        statements: [
          new iam.PolicyStatement({
            actions: ['cloudwatch:PutMetricData'],
            resources: ['*'],
            conditions: { StringEquals: { 'cloudwatch:namespace': METRICS_NAMESPACE } },
          }),
        ],
      });
      Validations.of(policy).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'cloudwatch:PutMetricData supports only Resource "*"; the statement is restricted to the Meterbridge ' +
          'namespace with the cloudwatch:namespace condition key.',
      });
    }
    policy.attachToRole(executionRoleOf(this));
    this.node.addDependency(policy);
    return policy;
  }
}

/** The execution role: always set by MeterbridgeFunction, optional in the type only because lambda.Function's is. */
export function executionRoleOf(fn: MeterbridgeFunction): iam.IRole {
  if (fn.role === undefined) throw new Error(`${fn.node.id} has no execution role`);
  return fn.role;
}

/** Drops keys whose value is undefined, so spreading the result never erases a default. */
function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}
