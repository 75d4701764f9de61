/**
 * The Lambda entry (lambdas/ready-webhook.ts) as deployed: environment as the CDK construct sets
 * it, the secret from Secrets Manager and metrics to CloudWatch, both moto's. Exercises the wiring
 * the HTTP tests bypass: env parsing, the verification settings, the secret cache, middy.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CreateSecretCommand, PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { toApiGatewayEvent } from '../../local/ready-http.ts';
import { motoClientEnvironment, startLocalCloudWatch, type LocalCloudWatch } from '../support/cloudwatch.ts';

let cloudwatch: LocalCloudWatch;
let secrets: SecretsManagerClient;
let secretArn: string;
const secretValue = (clientSecret: string) => JSON.stringify({ tenantId: 't', clientId: 'c', clientSecret, signingKey: '' });
let handler: (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;
const saved = { ...process.env };

before(async () => {
  cloudwatch = await startLocalCloudWatch();
  const { moto } = cloudwatch;
  secrets = new SecretsManagerClient({ endpoint: moto.endpoint, region: moto.region, credentials: moto.credentials });
  secretArn = (await secrets.send(new CreateSecretCommand({ Name: 'meterbridge-test-ready', SecretString: secretValue('from-secrets-manager') })))
    .ARN!;
  Object.assign(process.env, {
    ...motoClientEnvironment(moto),
    AWS_ENDPOINT_URL_SECRETS_MANAGER: moto.endpoint,
    STAGE: 'test',
    READINGS_TABLE: 'readings',
    LEDGER_TABLE: 'ledger',
    BLOCK_TIME_ZONE: 'America/Chicago',
    ARCHIVE_BUCKET: 'archive',
    READY_SECRET_ARN: secretArn,
    READY_VERIFICATION_ALGORITHM: 'hmac-sha256',
    READY_SECRET_ENCODING: 'utf8',
    READY_VERIFICATION_ANSWER: 'json',
    POWERTOOLS_LOG_LEVEL: 'ERROR',
  });
  ({ handler } = (await import('../../lambdas/ready-webhook.ts')) as unknown as { handler: typeof handler });
});
after(async () => {
  secrets?.destroy();
  process.env = saved;
  await cloudwatch?.stop();
});

const context = { getRemainingTimeInMillis: () => 20_000, functionName: 'ready-webhook', awsRequestId: 'aws-1' } as unknown as Context;

function event(method: string, path: string, query = ''): APIGatewayProxyEvent {
  return toApiGatewayEvent({
    method,
    path: `/test${path}`,
    stage: 'test',
    headers: { host: 'example' },
    query: new URLSearchParams(query),
    body: Buffer.alloc(0),
    sourceIp: '203.0.113.9',
  });
}

describe('lambdas/ready-webhook.ts handler', () => {
  it('answers the handshake with the secret from Secrets Manager in the configured format, reading the secret once', async () => {
    const first = await handler(event('GET', '/data', 'verificationToken=abc'), context);
    // Rotated after the first read: the second answer still uses the value read once and cached.
    await secrets.send(new PutSecretValueCommand({ SecretId: secretArn, SecretString: secretValue('rotated-later') }));
    const second = await handler(event('GET', '/status', 'verificationToken=def'), context);
    assert.equal(first.statusCode, 200);
    assert.deepEqual(JSON.parse(first.body), { verificationHash: createHmac('sha256', 'from-secrets-manager').update('abc').digest('base64') });
    assert.deepEqual(JSON.parse(second.body), { verificationHash: createHmac('sha256', 'from-secrets-manager').update('def').digest('base64') });
    assert.equal(await cloudwatch.sum('VerificationRequests', { name: 'Stage', value: 'test' }), 2);
  });

  it('answers an unknown path 404 in JSON and counts it', async () => {
    const response = await handler(event('GET', '/elsewhere'), context);
    assert.equal(response.statusCode, 404);
    assert.equal((JSON.parse(response.body) as { error: { code: string } }).error.code, 'not_found');
    assert.ok((await cloudwatch.sum('DeliveriesRejected', { name: 'Reason', value: 'not_found' })) >= 1);
  });
});
