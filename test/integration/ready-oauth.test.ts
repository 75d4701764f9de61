import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { fetchWithRetry } from '../../bin/operator/http-retry.ts';
import { OAuthError, TokenProvider, azureAdTokenUrl } from '../../bin/operator/ready-oauth.ts';
import { ReadySubscriptionClient } from '../../bin/operator/ready-subscriptions.ts';
import { startReadyApiStub, type ReadyApiStub } from '../support/ready-api-stub.ts';

let stub: ReadyApiStub;
before(async () => {
  stub = await startReadyApiStub();
});
after(async () => stub?.close());
beforeEach(() => {
  stub.requests.length = 0;
  stub.expiresIn = 3600;
});

/** A clock the test moves, and a sleep that records what it was asked to wait instead of waiting. */
function fakeTime(start = 1_800_000_000_000) {
  const time = { now: start, slept: [] as number[] };
  return {
    time,
    now: () => time.now,
    sleep: async (ms: number) => {
      time.slept.push(ms);
      time.now += ms;
    },
  };
}

function provider(clock: ReturnType<typeof fakeTime>, overrides: Partial<{ clientSecret: string }> = {}) {
  return new TokenProvider({
    credentials: {
      tokenUrl: stub.tokenUrl,
      clientId: stub.clientId,
      clientSecret: overrides.clientSecret ?? stub.clientSecret,
      scope: 'https://api.example/.default',
    },
    now: clock.now,
    retry: { sleep: clock.sleep, now: clock.now, random: () => 0.5 },
  });
}

const tokenRequests = () => stub.requests.filter((r) => r.path.endsWith('/oauth2/v2.0/token')).length;

describe('OAuth2 client credentials against a local token endpoint', () => {
  it('sends the client credentials grant with scope, form-encoded', async () => {
    const tokens = provider(fakeTime());
    await tokens.token();
    const request = stub.requests[0]!;
    assert.equal(request.method, 'POST');
    assert.equal(request.headers['content-type'], 'application/x-www-form-urlencoded');
    const form = new URLSearchParams(request.body);
    assert.deepEqual(Object.fromEntries(form), {
      grant_type: 'client_credentials',
      client_id: stub.clientId,
      client_secret: stub.clientSecret,
      scope: 'https://api.example/.default',
    });
  });

  it('reuses the token until shortly before expiry, then fetches a new one', async () => {
    stub.expiresIn = 600;
    const clock = fakeTime();
    const tokens = provider(clock);
    const first = await tokens.token();
    clock.time.now += 500_000; // 500 s of 600: still valid beyond the 60 s early refresh
    assert.equal(await tokens.token(), first);
    assert.equal(tokenRequests(), 1);
    clock.time.now += 50_000; // 550 s: inside the early-refresh window
    const second = await tokens.token();
    assert.notEqual(second, first);
    assert.equal(tokenRequests(), 2);
  });

  it('shares one token request between concurrent callers', async () => {
    const tokens = provider(fakeTime());
    const all = await Promise.all([tokens.token(), tokens.token(), tokens.token()]);
    assert.equal(new Set(all).size, 1);
    assert.equal(tokenRequests(), 1);
  });

  it('backs off on 429 honouring Retry-After, then succeeds', async () => {
    const clock = fakeTime();
    stub.failNext('token', 429, '7');
    stub.failNext('token', 503);
    const token = await provider(clock).token();
    assert.match(token, /^tok-/);
    assert.equal(tokenRequests(), 3);
    // 7 s asked (+ jitter of at most 500 ms), then exponential backoff 0.5 x 500 ms x 2^1 for the 503
    assert.ok(clock.time.slept[0]! >= 7000 && clock.time.slept[0]! <= 7500, `waited ${clock.time.slept[0]}`);
    assert.equal(clock.time.slept[1], 500);
  });

  it("reports a refused secret with the endpoint's error code, never the secret", async () => {
    const tokens = provider(fakeTime(), { clientSecret: 'wrong' });
    await assert.rejects(tokens.token(), (error: unknown) => {
      assert.ok(error instanceof OAuthError);
      assert.equal(error.status, 401);
      assert.match(error.message, /invalid_client/);
      assert.doesNotMatch(error.message, /wrong|Trace ID/);
      return true;
    });
  });

  it('builds the Azure AD v2 token URL of a tenant', () => {
    assert.equal(azureAdTokenUrl('contoso.onmicrosoft.com'), 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token');
  });
});

describe('fetchWithRetry', () => {
  it('gives up after maxAttempts and returns the last 429', async () => {
    const clock = fakeTime();
    stub.failNext('api', 429, undefined, 3);
    const response = await fetchWithRetry(
      `${stub.url}/anything`,
      { method: 'GET' },
      { maxAttempts: 3, sleep: clock.sleep, random: () => 1, baseDelayMs: 100 },
    );
    assert.equal(response.status, 429);
    assert.deepEqual(clock.time.slept, [100, 200]); // full jitter at random() = 1: base x 2^(n-1)
  });

  it('refuses to wait longer than maxRetryAfterMs', async () => {
    const clock = fakeTime();
    stub.failNext('api', 503, '3600');
    await assert.rejects(fetchWithRetry(`${stub.url}/anything`, { method: 'GET' }, { sleep: clock.sleep }), /retry after 3600 s/);
  });

  it('understands Retry-After as an HTTP date', async () => {
    const clock = fakeTime(Date.parse('2026-11-23T10:00:00Z'));
    stub.failNext('api', 429, 'Mon, 23 Nov 2026 10:00:12 GMT');
    await fetchWithRetry(`${stub.url}/anything`, { method: 'GET' }, { sleep: clock.sleep, now: clock.now, random: () => 0 });
    assert.deepEqual(clock.time.slept, [12_000]);
  });
});

describe('READY subscription client against the API stub', () => {
  it('subscribes, lists and unsubscribes with a bearer token, reusing one token', async () => {
    const clock = fakeTime();
    const client = new ReadySubscriptionClient({ apiUrl: stub.url, tokens: provider(clock), retry: { sleep: clock.sleep } });
    const created = await client.subscribe({
      resource: 'meterReadings',
      webhookUri: 'https://hooks.example/data',
      statusUri: 'https://hooks.example/status',
    });
    assert.match(created.subscriptionId, /^sub-/);
    assert.equal(created.webhookUri, 'https://hooks.example/data');
    const listed = await client.list();
    assert.ok(listed.some((s) => s.subscriptionId === created.subscriptionId));
    await client.unsubscribe(created.subscriptionId);
    assert.equal(
      (await client.list()).some((s) => s.subscriptionId === created.subscriptionId),
      false,
    );
    assert.equal(tokenRequests(), 1);
    const apiCalls = stub.requests.filter((r) => r.path.startsWith('/api/'));
    assert.ok(apiCalls.every((r) => r.headers.authorization === `Bearer ${stub.issued.at(-1)}`));
  });

  it('retries an API 429 after its Retry-After', async () => {
    const clock = fakeTime();
    const client = new ReadySubscriptionClient({
      apiUrl: stub.url,
      tokens: provider(clock),
      retry: { sleep: clock.sleep, now: clock.now, random: () => 0 },
    });
    await client.list(); // token first
    stub.failNext('api', 429, '2');
    await client.list();
    assert.deepEqual(clock.time.slept, [2000]);
  });

  it('fetches a new token once when the API refuses the cached one', async () => {
    const clock = fakeTime();
    const tokens = provider(clock);
    const client = new ReadySubscriptionClient({ apiUrl: stub.url, tokens, retry: { sleep: clock.sleep } });
    await client.list();
    stub.revoke(stub.issued.at(-1)!);
    await client.list();
    assert.equal(tokenRequests(), 2);
  });
});
