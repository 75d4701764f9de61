import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { mockClient } from 'aws-sdk-client-mock';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { main } from '../../bin/meterbridge.ts';
import type { CliIo } from '../../bin/commands/cli.ts';
import { startReadyApiStub, type ReadyApiStub } from '../support/ready-api-stub.ts';

let stub: ReadyApiStub;
const secrets = mockClient(SecretsManagerClient);
before(async () => {
  stub = await startReadyApiStub();
});
after(async () => {
  secrets.restore();
  await stub?.close();
});
beforeEach(() => {
  secrets.reset();
  stub.requests.length = 0;
});

function io(env: Record<string, string> = {}): CliIo & { stdout: string; stderr: string } {
  const buffers = { stdout: '', stderr: '' };
  return Object.assign(buffers, {
    out: (text: string) => void (buffers.stdout += text),
    err: (text: string) => void (buffers.stderr += text),
    env: { READY_TOKEN_URL: stub.tokenUrl, READY_API_URL: stub.url, ...env },
  });
}

describe('meterbridge ready', () => {
  it('subscribes, lists and unsubscribes with credentials from the environment', async () => {
    const env = { READY_CLIENT_ID: stub.clientId, READY_CLIENT_SECRET: stub.clientSecret };
    const sub = io(env);
    assert.equal(
      await main(
        ['ready', 'subscribe', '--webhook-uri', 'https://hooks.example/prod/data', '--status-uri', 'https://hooks.example/prod/status'],
        sub,
      ),
      0,
      sub.stderr,
    );
    const id = /subscribed (\S+)/.exec(sub.stdout)?.[1];
    assert.ok(id);
    const created = JSON.parse(stub.requests.find((r) => r.method === 'POST' && r.path.startsWith('/api/'))!.body) as Record<string, unknown>;
    assert.deepEqual(created, {
      resource: 'meterReadings',
      webhookUri: 'https://hooks.example/prod/data',
      statusUri: 'https://hooks.example/prod/status',
    });
    const form = new URLSearchParams(stub.requests.find((r) => r.path.endsWith('/token'))!.body);
    assert.equal(form.get('scope'), `${stub.url}/.default`);

    const listed = io(env);
    assert.equal(await main(['ready', 'list', '--json'], listed), 0, listed.stderr);
    assert.ok((JSON.parse(listed.stdout) as Array<{ subscriptionId: string }>).some((s) => s.subscriptionId === id));

    const removed = io(env);
    assert.equal(await main(['ready', 'unsubscribe', id], removed), 0, removed.stderr);
    assert.equal(stub.subscriptions.has(id), false);
  });

  it('reads the credentials from the Secrets Manager secret named by --secret-id', async () => {
    secrets
      .on(GetSecretValueCommand)
      .resolves({ SecretString: JSON.stringify({ tenantId: 'tenant-1', clientId: stub.clientId, clientSecret: stub.clientSecret, signingKey: '' }) });
    const run = io();
    assert.equal(
      await main(['ready', 'list', '--secret-id', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:ready-AbCdEf', '--region', 'eu-west-1'], run),
      0,
      run.stderr,
    );
    assert.deepEqual(
      secrets.commandCalls(GetSecretValueCommand).map((c) => c.args[0].input),
      [{ SecretId: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:ready-AbCdEf' }],
    );
    const form = new URLSearchParams(stub.requests.find((r) => r.path.endsWith('/token'))!.body);
    assert.equal(form.get('client_secret'), stub.clientSecret);
  });

  it('refuses to run without credentials and never takes a secret as an argument', async () => {
    const run = io();
    assert.equal(await main(['ready', 'list'], run), 2);
    assert.match(run.stderr, /READY credentials missing/);
    const withFlag = io();
    assert.equal(await main(['ready', 'list', '--client-secret', 'x'], withFlag), 2);
    assert.match(withFlag.stderr, /Unknown option '--client-secret'/);
  });

  it('refuses a plain-http callback URL', async () => {
    const run = io({ READY_CLIENT_ID: 'a', READY_CLIENT_SECRET: 'b' });
    assert.equal(
      await main(['ready', 'subscribe', '--webhook-uri', 'http://hooks.example/data', '--status-uri', 'https://hooks.example/status'], run),
      2,
    );
    assert.match(run.stderr, /must be an https/);
  });

  it("reports a refused client secret as a failure (exit 1) with the endpoint's error", async () => {
    const run = io({ READY_CLIENT_ID: stub.clientId, READY_CLIENT_SECRET: 'wrong' });
    assert.equal(await main(['ready', 'list'], run), 1);
    assert.match(run.stderr, /invalid_client/);
    assert.doesNotMatch(run.stderr, /wrong/);
  });
});
