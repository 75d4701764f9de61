import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';
import { mockClient } from 'aws-sdk-client-mock';
import { GetSecretValueCommand, ResourceNotFoundException, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { parseReadyCredentials, ReadySecretError, SecretsManagerCredentials } from '../../lambdas/core/ready/secret.ts';

const secrets = mockClient(SecretsManagerClient);
after(() => secrets.restore());
beforeEach(() => secrets.reset());

const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:meterbridge-ready-AbCdEf';
const client = () => new SecretsManagerClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });

describe('SecretsManagerCredentials', () => {
  it('asks for the configured secret once, and again only after the cache expires', async () => {
    secrets
      .on(GetSecretValueCommand)
      .resolves({ SecretString: JSON.stringify({ tenantId: 't', clientId: 'c', clientSecret: 's1', signingKey: '' }) });
    const clock = { now: 0 };
    const source = new SecretsManagerCredentials({ client: client(), secretId: ARN, ttlMs: 300_000, clock: () => clock.now });
    const [a, b] = await Promise.all([source.get(), source.get()]);
    assert.equal(a.clientSecret, 's1');
    assert.equal(a.signingKey, undefined, 'an empty signing key means none');
    assert.deepEqual(b, a);
    clock.now = 299_999;
    await source.get();
    assert.equal(secrets.commandCalls(GetSecretValueCommand).length, 1);
    clock.now = 300_000;
    secrets.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ clientSecret: 's2' }) });
    assert.equal((await source.get()).clientSecret, 's2');
    assert.deepEqual(
      secrets.commandCalls(GetSecretValueCommand).map((call) => call.args[0].input),
      [{ SecretId: ARN }, { SecretId: ARN }],
    );
  });

  it('reports a missing secret by its id and error name', async () => {
    secrets.on(GetSecretValueCommand).rejects(new ResourceNotFoundException({ message: 'not found', $metadata: {} }));
    const source = new SecretsManagerCredentials({ client: client(), secretId: ARN });
    await assert.rejects(
      source.get(),
      (error: unknown) => error instanceof ReadySecretError && error.message.includes(ARN) && error.message.includes('ResourceNotFoundException'),
    );
  });
});

describe('parseReadyCredentials', () => {
  it('names the missing field without echoing any value', () => {
    assert.throws(
      () => parseReadyCredentials(JSON.stringify({ clientId: 'c', clientSecret: '' })),
      (error: unknown) => error instanceof ReadySecretError && /clientSecret/.test(error.message),
    );
    assert.throws(
      () => parseReadyCredentials('hunter2'),
      (error: unknown) => error instanceof ReadySecretError && !error.message.includes('hunter2'),
    );
  });
});
