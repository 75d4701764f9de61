/**
 * What every meterbridge REST API gets alike (the READY webhooks and the query API): an access
 * log encrypted with a key of its own, stage options that never log bodies, and an endpoint that
 * speaks only TLS 1.2+ with forward secrecy. One definition, so the two APIs cannot drift.
 *
 * Resources are created directly in the calling construct's scope (ids `AccessLogKey`,
 * `AccessLog`) so their logical ids stay what they were before this was shared.
 */
import { Aws } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { StageSettings } from './settings.ts';

/** The API's access log, encrypted with a key of its own that CloudWatch Logs may use for log groups only. */
export function encryptedAccessLog(scope: Construct, apiName: string, settings: StageSettings): logs.LogGroup {
  const logKey = new kms.Key(scope, 'AccessLogKey', {
    description: `Encrypts the meterbridge ${settings.stage} ${apiName} access log`,
    enableKeyRotation: true,
    removalPolicy: settings.removalPolicy,
  });
  const accessLogGroup = new logs.LogGroup(scope, 'AccessLog', {
    encryptionKey: logKey,
    retention: settings.logRetention,
    removalPolicy: settings.removalPolicy,
  });
  // CloudWatch Logs encrypts with its own service identity, for log groups of this account only.
  logKey.addToResourcePolicy(
    new iam.PolicyStatement({
      principals: [new iam.ServicePrincipal(`logs.${Aws.REGION}.amazonaws.com`)],
      actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
      resources: ['*'],
      conditions: {
        ArnEquals: { 'kms:EncryptionContext:aws:logs:arn': `arn:${Aws.PARTITION}:logs:${Aws.REGION}:${Aws.ACCOUNT_ID}:log-group:*` },
      },
    }),
  );
  accessLogGroup.node.addDependency(logKey);
  return accessLogGroup;
}

export interface LoggedStageProps {
  readonly settings: StageSettings;
  readonly throttleRateLimit: number;
  readonly throttleBurstLimit: number;
  readonly accessLog: logs.ILogGroup;
  /** Log the caller's IAM identity (signed APIs); off for APIs whose callers are anonymous. */
  readonly identifyCallers: boolean;
}

/** Stage options: throttled, execution logs for errors only, metrics on, bodies never logged, JSON access log. */
export function loggedStageOptions(props: LoggedStageProps): apigw.StageOptions {
  return {
    stageName: props.settings.stage,
    throttlingRateLimit: props.throttleRateLimit,
    throttlingBurstLimit: props.throttleBurstLimit,
    loggingLevel: apigw.MethodLoggingLevel.ERROR,
    // Never log bodies: they are customer meter data.
    dataTraceEnabled: false,
    metricsEnabled: true,
    accessLogDestination: new apigw.LogGroupLogDestination(props.accessLog),
    accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields({
      caller: props.identifyCallers,
      httpMethod: true,
      ip: true,
      protocol: true,
      requestTime: true,
      resourcePath: true,
      responseLength: true,
      status: true,
      user: props.identifyCallers,
    }),
  };
}

/**
 * TLS 1.2 or 1.3 only (with forward secrecy) on the execute-api endpoint; STRICT rejects requests
 * whose Host/SNI do not name this API.
 */
export function requireModernTls(api: apigw.RestApi): void {
  const cfnApi = api.node.defaultChild as apigw.CfnRestApi;
  cfnApi.securityPolicy = 'SecurityPolicy_TLS13_1_2_PFS_PQ_2025_09';
  cfnApi.endpointAccessMode = 'STRICT';
}
