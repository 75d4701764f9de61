/**
 * The Lambda entry (lambdas/ready-webhook.ts) as deployed: environment as the CDK construct sets
 * it, the secret from Secrets Manager (SDK-level mock: no stand-in exists; the asked SecretId is
 * asserted), metrics to the recording CloudWatch endpoint. Exercises the wiring the HTTP tests
 * bypass: env parsing, the verification settings, the secret cache, middy.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { mockClient } from 'aws-sdk-client-mock';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { toApiGatewayEvent } from '../../local/ready-http.ts';
import { startCloudWatchEndpoint, type CloudWatchEndpoint } from '../support/cloudwatch-endpoint.ts';
import { metricSum } from '../support/ready-webhook.ts';

const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:meterbridge-test-ready-AbCdEf';
const secrets = mockClient(SecretsManagerClient);
let cloudwatch: CloudWatchEndpoint;
let handler: (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;
const saved = { ...process.env };

before(async () => {
  cloudwatch = await startCloudWatchEndpoint();
  secrets.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ tenantId: 't', clientId: 'c', clientSecret: 'from-secrets-manager', signingKey: '' }) });
  Object.assign(process.env, {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL_CLOUDWATCH: cloudwatch.url,
    STAGE: 'test',
    READINGS_TABLE: 'readings',
    LEDGER_TABLE: 'ledger',
    BLOCK_TIME_ZONE: 'America/Chicago',
    ARCHIVE_BUCKET: 'archive',
    READY_SECRET_ARN: SECRET_ARN,
    READY_VERIFICATION_ALGORITHM: 'hmac-sha256',
    READY_SECRET_ENCODING: 'utf8',
    READY_VERIFICATION_ANSWER: 'json',
    POWERTOOLS_LOG_LEVEL: 'ERROR',
  });
  ({ handler } = (await import('../../lambdas/ready-webhook.ts')) as unknown as { handler: typeof handler });
});
after(async () => {
  secrets.restore();
  process.env = saved;
  await cloudwatch?.close();
});

const context = { getRemainingTimeInMillis: () => 20_000, functionName: 'ready-webhook', awsRequestId: 'aws-1' } as unknown as Context;

function event(method: string, path: string, query = ''): APIGatewayProxyEvent {
  return toApiGatewayEvent({ method, path: `/test${path}`, stage: 'test', headers: { host: 'example' }, query: new URLSearchParams(query), body: Buffer.alloc(0), sourceIp: '203.0.113.9' });
}

describe('lambdas/ready-webhook.ts handler', () => {
  it('answers the handshake with the secret from Secrets Manager in the configured format, reading the secret once', async () => {
    const first = await handler(event('GET', '/data', 'verificationToken=abc'), context);
    const second = await handler(event('GET', '/status', 'verificationToken=def'), context);
    assert.equal(first.statusCode, 200);
    assert.deepEqual(JSON.parse(first.body), { verificationHash: createHmac('sha256', 'from-secrets-manager').update('abc').digest('base64') });
    assert.deepEqual(JSON.parse(second.body), { verificationHash: createHmac('sha256', 'from-secrets-manager').update('def').digest('base64') });
    assert.deepEqual(secrets.commandCalls(GetSecretValueCommand).map((call) => call.args[0].input), [{ SecretId: SECRET_ARN }]);
    assert.equal(metricSum(cloudwatch, 'VerificationRequests', { name: 'Stage', value: 'test' }), 2);
  });

  it('answers an unknown path 404 in JSON and counts it', async () => {
    const response = await handler(event('GET', '/elsewhere'), context);
    assert.equal(response.statusCode, 404);
    assert.equal((JSON.parse(response.body) as { error: { code: string } }).error.code, 'not_found');
    assert.ok(metricSum(cloudwatch, 'DeliveriesRejected', { name: 'Reason', value: 'not_found' }) >= 1);
  });
});
