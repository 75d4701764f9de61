/**
 * The query API: meters, their channels and their readings as JSON, CSV or Green Button, on API
 * Gateway REST with IAM authorization (callers sign with SigV4 and need execute-api:Invoke on
 * it), optionally API keys with a usage plan (stage setting `query.apiKeys`). One Lambda
 * (lambdas/query-api.ts) with read-only access (Query, GetItem) to the readings table.
 *
 *   GET /meters   GET /meters/{meterId}   GET /meters/{meterId}/readings
 */
import { fileURLToPath } from 'node:url';
import { Duration, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { QUERY_PARAMETERS } from '../lambdas/core/query/api.ts';
import { encryptedAccessLog, loggedStageOptions, requireModernTls } from './api-gateway-hardening.ts';
import { MeterbridgeFunction } from './meterbridge-function.ts';
import { DEFAULT_QUERY_SETTINGS, type QuerySettings, type StageSettings } from './settings.ts';
import type { ReadingStorage } from './storage.ts';

const ENTRY = fileURLToPath(new URL('../lambdas/query-api.ts', import.meta.url));

export interface QueryApiProps {
  readonly settings: StageSettings;
  readonly storage: ReadingStorage;
  /** @default settings.query, else DEFAULT_QUERY_SETTINGS */
  readonly query?: QuerySettings;
}

export class QueryApi extends Construct {
  public readonly api: apigw.RestApi;
  public readonly function: MeterbridgeFunction;
  public readonly accessLogGroup: logs.LogGroup;
  /** Base URL of the stage (append /meters). */
  public readonly url: string;
  public readonly querySettings: QuerySettings;

  constructor(scope: Construct, id: string, props: QueryApiProps) {
    super(scope, id);
    const { settings, storage } = props;
    const query = props.query ?? settings.query ?? DEFAULT_QUERY_SETTINGS;
    this.querySettings = query;

    this.function = new MeterbridgeFunction(this, 'Function', {
      entry: ENTRY,
      settings,
      serviceName: 'query-api',
      description: `meterbridge ${settings.stage}: query API (meters, readings as JSON, CSV, Green Button)`,
      // Under API Gateway's 29 s integration limit; a 31-day page of 1-minute data takes a few seconds.
      timeout: Duration.seconds(25),
      memorySize: 1024,
      environment: {
        READINGS_TABLE: storage.readingsTable.tableName,
        BLOCK_TIME_ZONE: settings.blockTimeZone,
      },
    });
    // Blocks and catalog are read with Query; nothing here writes.
    storage.grantStoreRead(this.function);

    this.accessLogGroup = encryptedAccessLog(this, 'query API', settings);

    this.api = new apigw.RestApi(this, 'Api', {
      restApiName: `meterbridge-${settings.stage}-query`,
      description: `meterbridge ${settings.stage}: query API (IAM-authorized; GET /meters, /meters/{meterId}, /meters/{meterId}/readings)`,
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      cloudWatchRole: true,
      defaultMethodOptions: { authorizationType: apigw.AuthorizationType.IAM, apiKeyRequired: query.apiKeys },
      deployOptions: loggedStageOptions({
        settings,
        throttleRateLimit: query.throttleRateLimit,
        throttleBurstLimit: query.throttleBurstLimit,
        accessLog: this.accessLogGroup,
        // Callers sign with SigV4: who asked is part of the record.
        identifyCallers: true,
      }),
    });
    requireModernTls(this.api);

    const json = (code: string, message: string) => ({
      'application/json': `{"error":{"code":"${code}","message":${message.startsWith('$context') ? message : `"${message}"`},"requestId":"$context.requestId"}}`,
    });
    const responses: Array<{ id: string; type: apigw.ResponseType; code: string; message: string; statusCode?: string }> = [
      { id: 'Throttled', type: apigw.ResponseType.THROTTLED, code: 'throttled', message: 'too many requests; retry later', statusCode: '429' },
      {
        id: 'BadParameters',
        type: apigw.ResponseType.BAD_REQUEST_PARAMETERS,
        code: 'bad_request',
        message: '$context.error.messageString',
        statusCode: '400',
      },
      { id: 'Default4xx', type: apigw.ResponseType.DEFAULT_4XX, code: 'bad_request', message: '$context.error.messageString' },
      { id: 'Default5xx', type: apigw.ResponseType.DEFAULT_5XX, code: 'gateway_error', message: 'the query API is unavailable; retry later' },
    ];
    for (const r of responses)
      this.api.addGatewayResponse(r.id, { type: r.type, ...(r.statusCode ? { statusCode: r.statusCode } : {}), templates: json(r.code, r.message) });

    // The gateway refuses requests without the path parameter before the function runs; the
    // function checks values (formats, ranges, cursors), which a parameter validator cannot.
    const validator = this.api.addRequestValidator('Parameters', { validateRequestParameters: true, validateRequestBody: true });
    const integration = new apigw.LambdaIntegration(this.function, { proxy: true });
    const queryParameters = (names: readonly string[], path: boolean) => ({
      ...(path ? { 'method.request.path.meterId': true } : {}),
      ...Object.fromEntries(names.map((name) => [`method.request.querystring.${name}`, false])),
    });
    const meters = this.api.root.addResource('meters');
    meters.addMethod('GET', integration, { requestValidator: validator, requestParameters: queryParameters(QUERY_PARAMETERS.meters, false) });
    const meter = meters.addResource('{meterId}');
    meter.addMethod('GET', integration, { requestValidator: validator, requestParameters: queryParameters(QUERY_PARAMETERS.meter, true) });
    meter
      .addResource('readings')
      .addMethod('GET', integration, { requestValidator: validator, requestParameters: queryParameters(QUERY_PARAMETERS.readings, true) });
    this.url = this.api.url;

    if (query.apiKeys) {
      const plan = this.api.addUsagePlan('UsagePlan', {
        name: `meterbridge-${settings.stage}-query`,
        throttle: { rateLimit: query.throttleRateLimit, burstLimit: query.throttleBurstLimit },
      });
      plan.addApiStage({ stage: this.api.deploymentStage });
      // Keys are created by operators per consumer (aws apigateway create-api-key + create-usage-plan-key).
    }

    Validations.of(this.api).acknowledge(
      {
        id: 'AwsSolutions-APIG3',
        reason:
          'Callers must sign with SigV4 and hold execute-api:Invoke (IAM authorization) and are throttled per stage; a WAF web ACL can be associated per deployment if required.',
      },
      {
        id: 'AwsSolutions-COG4',
        reason: 'Authorization is IAM (SigV4): the callers are utility systems and operators with AWS identities, not Cognito users.',
      },
      {
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
        reason: 'The account-level role API Gateway uses to write execution logs; AWS documents this managed policy for it.',
      },
    );
  }
}
