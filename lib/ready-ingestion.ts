/**
 * Ingestion path 3: Kamstrup READY "API Access" webhooks.
 *
 *   READY ─HTTPS (TLS 1.2+)─▶ API Gateway REST (resource policy: source IPs; stage throttling;
 *        POST/GET /data (WebhookUri), /status (StatusUri))  ─▶ webhook λ ─▶ S3 archive (first)
 *                                                                   ├─▶ ledger claim ─▶ reading store
 *                                                                   └─▶ subscription state ─▶ metric ─▶ alarm
 *
 * Why a REST API (v1) and not an HTTP API: resource policies (the source-IP allow list), stage
 * throttling per method and gateway responses that answer in JSON exist only on REST APIs.
 *
 * The request size limit is enforced in the function (READY_MAX_BODY_BYTES, default 4 MiB), not
 * by a request validator: API Gateway REST has no configurable size limit (10 MB is fixed and a
 * synchronous Lambda payload is capped at 6 MB), and a body validator would refuse malformed
 * deliveries before the function could archive them. The function archives first, then answers
 * 413 with a JSON body; bodies above 6 MB never reach it and get the REQUEST_TOO_LARGE (413) or
 * an integration 5xx gateway response, both JSON.
 */
import { fileURLToPath } from 'node:url';
import { Duration, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { READY_PATHS } from '../lambdas/core/ready/api-gateway.ts';
import { FUNCTION_TIMEOUT_SECONDS } from '../lambdas/core/work-units.ts';
import type { AlarmTopic } from './alarm-topic.ts';
import { ArchiveBucket } from './archive-bucket.ts';
import { encryptedAccessLog, loggedStageOptions, requireModernTls } from './api-gateway-hardening.ts';
import { executionRoleOf, METRICS_NAMESPACE, MeterbridgeFunction } from './meterbridge-function.ts';
import type { IngestionMonitoring } from './monitoring.ts';
import { unauthenticatedCallers, type ReadySettings } from './ready-settings.ts';
import type { StageSettings } from './settings.ts';
import type { ReadingStorage } from './storage.ts';

const WEBHOOK_ENTRY = fileURLToPath(new URL('../lambdas/ready-webhook.ts', import.meta.url));

export interface ReadyIngestionProps {
  /** Stage settings: names, log retention, removal policy, block time zone. */
  readonly settings: StageSettings;
  /** Tables the webhook stores readings in, claims deliveries on and records subscription states in. */
  readonly storage: ReadingStorage;
  /**
   * READY settings (source IPs, throttling, body limit, handshake algorithm). Overrides
   * `settings.ready` (tests).
   *
   * @default settings.ready
   */
  readonly ready?: ReadySettings;
  /**
   * Topic the "subscription not active" alarm notifies.
   *
   * @default - the alarm is created without actions
   */
  readonly alarms?: AlarmTopic;
}

/** REST API, webhook function, raw archive bucket, READY credentials secret and the subscription alarm. */
export class ReadyIngestion extends Construct {
  public readonly api: apigw.RestApi;
  /** Data callback URL to register as WebhookUri. */
  public readonly webhookUrl: string;
  /** Status callback URL to register as StatusUri. */
  public readonly statusUrl: string;
  public readonly webhookFunction: MeterbridgeFunction;
  /** Raw deliveries, byte-exact, under `ready/<data|status>/YYYY/MM/DD/`. */
  public readonly archiveBucket: s3.Bucket;
  /** The archive bucket with its access-log bucket. */
  public readonly archive: ArchiveBucket;
  /** JSON {tenantId, clientId, clientSecret, signingKey}; the operator puts the values READY issued. */
  public readonly secret: secretsmanager.Secret;
  /** API Gateway access log (KMS-encrypted). */
  public readonly accessLogGroup: logs.LogGroup;
  /** Fires when a status callback reports the subscription as anything but active. */
  public readonly subscriptionAlarm: cloudwatch.Alarm;
  public readonly readySettings: ReadySettings;

  /** What the operations construct watches on this path. */
  public get monitoring(): IngestionMonitoring {
    return {
      source: 'ready',
      functions: [{ label: 'webhook', fn: this.webhookFunction }],
      queues: [],
      // READY pushes meter data as its collection runs, commonly daily: a day and an hour of
      // silence is an outage, less may be a normal gap between collections.
      expectedSilenceMinutes: 25 * 60,
      apis: [{ label: 'webhook', apiName: this.api.restApiName, stageName: this.api.deploymentStage.stageName }],
      alarms: [
        {
          alarm: this.subscriptionAlarm,
          why: 'any status callback reporting a state other than active (Maximum >= 1); callbacks come only on changes, so missing data keeps the last state',
        },
      ],
    };
  }

  constructor(scope: Construct, id: string, props: ReadyIngestionProps) {
    super(scope, id);
    const { settings, storage } = props;
    const ready = props.ready ?? settings.ready;
    const open = unauthenticatedCallers(ready);
    if (open) throw new Error(`ReadyIngestion (stage ${settings.stage}): ${open}`);
    this.readySettings = ready;

    this.archive = new ArchiveBucket(this, 'Archive', {
      purpose: 'ready',
      removalPolicy: settings.removalPolicy,
      coldAfterDays: ready.archiveColdAfterDays,
    });
    this.archiveBucket = this.archive.bucket;
    this.secret = this.createCredentials(settings);
    this.webhookFunction = this.createWebhookFunction(settings, storage, ready);
    this.accessLogGroup = encryptedAccessLog(this, 'READY API', settings);
    this.api = this.createApi(settings, ready);
    this.webhookUrl = this.api.urlForPath(READY_PATHS.data);
    this.statusUrl = this.api.urlForPath(READY_PATHS.status);
    this.subscriptionAlarm = this.createSubscriptionAlarm(settings);
    props.alarms?.addAlarm(this.subscriptionAlarm);
  }

  // --- credentials --------------------------------------------------------------------------

  private createCredentials(settings: StageSettings): secretsmanager.Secret {
    const secret = new secretsmanager.Secret(this, 'Credentials', {
      description: `meterbridge ${settings.stage}: Kamstrup READY API Access credentials {tenantId, clientId, clientSecret, signingKey}; put the values READY issued`,
      // A random placeholder, so no credential is ever in the template; handshakes fail (and
      // are counted) until an operator puts the real client secret.
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ tenantId: '', clientId: '', signingKey: '' }),
        generateStringKey: 'clientSecret',
        excludePunctuation: true,
        passwordLength: 48,
      },
      removalPolicy: settings.removalPolicy,
    });
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The READY client secret is issued by Kamstrup (sent by SMS) and can only be rotated in READY Manager; there is no API a rotation Lambda could call.',
    });
    return secret;
  }

  // --- function -----------------------------------------------------------------------------

  private createWebhookFunction(settings: StageSettings, storage: ReadingStorage, ready: ReadySettings): MeterbridgeFunction {
    const webhookFunction = new MeterbridgeFunction(this, 'WebhookFunction', {
      entry: WEBHOOK_ENTRY,
      settings,
      serviceName: 'ready-webhook',
      description: `meterbridge ${settings.stage}: Kamstrup READY webhook (handshake, data and status callbacks)`,
      timeout: Duration.seconds(FUNCTION_TIMEOUT_SECONDS['ready-delivery']),
      environment: {
        READINGS_TABLE: storage.readingsTable.tableName,
        LEDGER_TABLE: storage.ledgerTable.tableName,
        BLOCK_TIME_ZONE: settings.blockTimeZone,
        ARCHIVE_BUCKET: this.archiveBucket.bucketName,
        READY_SECRET_ARN: this.secret.secretArn,
        READY_MAX_BODY_BYTES: String(ready.maxBodyBytes),
        READY_REQUIRE_SIGNATURE: String(ready.requireSignature),
        READY_VERIFICATION_ALGORITHM: ready.verification.algorithm,
        READY_SECRET_ENCODING: ready.verification.secretEncoding,
        READY_VERIFICATION_ANSWER: ready.verification.answerFormat,
      },
    });
    storage.grantStoreWrite(webhookFunction);
    storage.grantLedger(webhookFunction);
    this.secret.grantRead(webhookFunction);
    const archivePolicy = this.archive.grantArchiveWrite(this, 'ArchiveWritePolicy', executionRoleOf(webhookFunction), 'ready');
    webhookFunction.grantPutMetrics();
    webhookFunction.node.addDependency(archivePolicy);
    return webhookFunction;
  }

  // --- API ----------------------------------------------------------------------------------

  private createApi(settings: StageSettings, ready: ReadySettings): apigw.RestApi {
    const invoke = new iam.PolicyStatement({
      effect: iam.Effect.ALLOW,
      principals: [new iam.AnyPrincipal()],
      actions: ['execute-api:Invoke'],
      resources: ['execute-api:/*'],
    });
    const statements = [invoke];
    if (ready.allowedSourceCidrs.length > 0) {
      statements.push(
        new iam.PolicyStatement({
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          actions: ['execute-api:Invoke'],
          resources: ['execute-api:/*'],
          conditions: { NotIpAddress: { 'aws:SourceIp': [...ready.allowedSourceCidrs] } },
        }),
      );
    }

    const api = new apigw.RestApi(this, 'Api', {
      restApiName: `meterbridge-${settings.stage}-ready`,
      description: `meterbridge ${settings.stage}: Kamstrup READY webhooks (WebhookUri ${READY_PATHS.data}, StatusUri ${READY_PATHS.status})`,
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      policy: new iam.PolicyDocument({ statements }),
      // Every body reaches the function base64-encoded, so the archive gets the exact bytes.
      binaryMediaTypes: ['*/*'],
      // API Gateway writes execution logs (errors only) through an account-level role.
      cloudWatchRole: true,
      deployOptions: loggedStageOptions({
        settings,
        throttleRateLimit: ready.throttleRateLimit,
        throttleBurstLimit: ready.throttleBurstLimit,
        accessLog: this.accessLogGroup,
        // Kamstrup's calls are not signed: there is no caller identity to log.
        identifyCallers: false,
      }),
    });
    requireModernTls(api);

    this.addGatewayResponses(api);

    const integration = new apigw.LambdaIntegration(this.webhookFunction, { proxy: true });
    for (const path of [READY_PATHS.data, READY_PATHS.status]) {
      const resource = api.root.addResource(path.slice(1));
      resource.addMethod('POST', integration);
      resource.addMethod('GET', integration); // verification handshake as a query parameter
    }

    if (ready.customDomain) {
      const domain = api.addDomainName('Domain', {
        domainName: ready.customDomain.domainName,
        certificate: acm.Certificate.fromCertificateArn(this, 'Certificate', ready.customDomain.certificateArn),
        endpointType: apigw.EndpointType.REGIONAL,
        securityPolicy: apigw.SecurityPolicy.TLS_1_2,
      });
      void domain;
    }

    this.acknowledgeApiFindings(api);
    return api;
  }

  /** API Gateway's own refusals (throttled, too large, forbidden, not found, 4xx, 5xx) as JSON like the function's. */
  private addGatewayResponses(api: apigw.RestApi): void {
    // $context.error.messageString arrives already quoted; literal messages are quoted here.
    const json = (code: string, message: string) => ({
      'application/json': `{"error":{"code":"${code}","message":${message.startsWith('$context') ? message : `"${message}"`},"requestId":"$context.requestId"}}`,
    });
    const responses: Array<{ id: string; type: apigw.ResponseType; code: string; message: string; statusCode?: string; retryAfter?: string }> = [
      {
        id: 'Throttled',
        type: apigw.ResponseType.THROTTLED,
        code: 'throttled',
        message: 'too many requests; retry later',
        statusCode: '429',
        retryAfter: '10',
      },
      {
        id: 'TooLarge',
        type: apigw.ResponseType.REQUEST_TOO_LARGE,
        code: 'too_large',
        message: 'request body is larger than API Gateway accepts',
        statusCode: '413',
      },
      {
        id: 'AccessDenied',
        type: apigw.ResponseType.ACCESS_DENIED,
        code: 'forbidden',
        message: 'this source address may not call the READY webhook',
        statusCode: '403',
      },
      {
        id: 'NotFound',
        type: apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
        code: 'not_found',
        message: 'no such callback; READY posts to /data and /status',
        statusCode: '404',
      },
      { id: 'Default4xx', type: apigw.ResponseType.DEFAULT_4XX, code: 'bad_request', message: '$context.error.messageString' },
      {
        id: 'Default5xx',
        type: apigw.ResponseType.DEFAULT_5XX,
        code: 'gateway_error',
        message: 'the webhook is unavailable; retry later',
        retryAfter: '30',
      },
    ];
    for (const r of responses) {
      api.addGatewayResponse(r.id, {
        type: r.type,
        ...(r.statusCode ? { statusCode: r.statusCode } : {}),
        templates: json(r.code, r.message),
        ...(r.retryAfter ? { responseHeaders: { 'Retry-After': `'${r.retryAfter}'` } } : {}),
      });
    }
  }

  private acknowledgeApiFindings(api: apigw.RestApi): void {
    Validations.of(api).acknowledge(
      {
        id: 'AwsSolutions-APIG2',
        reason:
          'Bodies are validated in the function after the original is archived; a gateway validator would refuse malformed deliveries before anyone could replay them.',
      },
      {
        id: 'AwsSolutions-APIG3',
        reason:
          'Callers are limited by the resource policy (source CIDRs of READY hosting) and stage throttling; a WAF web ACL can be associated per deployment if required.',
      },
      {
        id: 'AwsSolutions-APIG4',
        reason:
          'READY cannot present our credentials: it authenticates subscriptions by the verification handshake (client secret) and optionally signs bodies (signing key), checked in the function.',
      },
      {
        id: 'AwsSolutions-COG4',
        reason: 'A machine-to-machine webhook called by Kamstrup READY; there are no Cognito users.',
      },
    );
    Validations.of(api).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
      reason: 'The account-level role API Gateway uses to write execution logs; AWS documents this managed policy for it.',
    });
  }

  // --- subscription alarm -------------------------------------------------------------------

  private createSubscriptionAlarm(settings: StageSettings): cloudwatch.Alarm {
    return new cloudwatch.Alarm(this, 'SubscriptionNotActive', {
      alarmName: `meterbridge-${settings.stage}-ready-subscription-not-active`,
      alarmDescription:
        'A READY status callback reported a webhook subscription as pending, suspended, failed or deleted: data has stopped or will stop. Check the status callback log lines (subscriptionId, reason) and re-subscribe with `meterbridge ready subscribe`.',
      metric: new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: 'SubscriptionInactive',
        dimensionsMap: { Stage: settings.stage, Source: 'ready' },
        statistic: cloudwatch.Stats.MAXIMUM,
        period: Duration.minutes(5),
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      // Callbacks come only on changes: between them the last state holds, so does the alarm.
      treatMissingData: cloudwatch.TreatMissingData.IGNORE,
    });
  }
}
