import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { sendReadyDeliveries, sendReadyStatus, readyHandshake, buildReadyDelivery } from '../../local/ready-http.ts';
import {
  archivedObjects,
  metricSum,
  READY_BUCKET,
  startReadyReceiver,
  startReadyStandIns,
  storedBlocks,
  type ReadyStandIns,
} from '../support/ready-webhook.ts';

let standIns: ReadyStandIns;
before(async () => {
  standIns = await startReadyStandIns();
});
after(async () => standIns?.stop());

const NOW = new Date('2026-11-23T12:00:00Z');
const START = new Date('2026-11-23T08:00:00Z');
const SECRET = 'c2VjcmV0LWZyb20tcmVhZHk='; // READY issues the secret as a Base64 value

/** The expected answer computed by openssl, independently of the code under test. */
function openssl(args: string[], input: Buffer | string): string {
  return execFileSync('openssl', args, { input }).toString('base64');
}

describe('READY verification handshake over HTTP', () => {
  it('answers GET ?verificationToken= with Base64 HMAC-SHA256(key = secret as UTF-8, token), as openssl computes it', async () => {
    // GIVEN
    const receiver = await startReadyReceiver(standIns, { credentials: { clientSecret: SECRET } });
    try {
      for (const token of ['a1b2c3', 'token with spaces & ümlauts', 'x'.repeat(512)]) {
        const expected = openssl(['dgst', '-sha256', '-hmac', SECRET, '-binary'], token);
        // WHEN
        const response = await fetch(`${receiver.http.dataUrl}?verificationToken=${encodeURIComponent(token)}`);
        // THEN
        assert.equal(response.status, 200);
        assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
        assert.equal(await response.text(), expected);
      }
      // the status URL answers the same handshake
      const token = 'status-handshake';
      const response = await fetch(`${receiver.http.statusUrl}?verificationToken=${token}`);
      assert.equal(await response.text(), openssl(['dgst', '-sha256', '-hmac', SECRET, '-binary'], token));
      assert.equal(await metricSum(standIns.cloudwatch, 'VerificationRequests'), 4);
    } finally {
      await receiver.stop();
    }
  });

  it('answers a POSTed {"verificationToken"} with the Base64-decoded key when so configured (JSON answer)', async () => {
    const receiver = await startReadyReceiver(standIns, {
      verification: { algorithm: 'hmac-sha256', secretEncoding: 'base64', answerFormat: 'json' },
    });
    try {
      const token = 'e3b0c44298fc1c14';
      const hexKey = Buffer.from(SECRET, 'base64').toString('hex');
      const expected = openssl(['dgst', '-sha256', '-mac', 'HMAC', '-macopt', `hexkey:${hexKey}`, '-binary'], token);
      const response = await fetch(receiver.http.dataUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ verificationToken: token }),
      });
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { verificationHash: expected });
    } finally {
      await receiver.stop();
    }
  });

  it('answers SHA-256(token + secret) when the alternative algorithm is configured', async () => {
    const receiver = await startReadyReceiver(standIns, {
      verification: { algorithm: 'sha256-token-secret', secretEncoding: 'utf8', answerFormat: 'text' },
    });
    try {
      const token = 'verify-me';
      const result = await readyHandshake(receiver.http.dataUrl, {
        clientSecret: SECRET,
        token,
        verification: { algorithm: 'sha256-token-secret', secretEncoding: 'utf8', answerFormat: 'text' },
      });
      assert.equal(result.status, 200);
      assert.equal(result.answer, openssl(['dgst', '-sha256', '-binary'], token + SECRET));
    } finally {
      await receiver.stop();
    }
  });

  it("passes the simulated READY sender's handshake with the default settings", async () => {
    const receiver = await startReadyReceiver(standIns, { credentials: { clientSecret: SECRET } });
    try {
      const result = await readyHandshake(receiver.http.statusUrl, { clientSecret: SECRET });
      assert.equal(result.ok, true, JSON.stringify(result));
      const wrong = await readyHandshake(receiver.http.statusUrl, { clientSecret: 'another-secret' });
      assert.equal(wrong.ok, false);
    } finally {
      await receiver.stop();
    }
  });

  it('refuses a handshake without a token with 400 and a VerificationFailures metric', async () => {
    const receiver = await startReadyReceiver(standIns);
    try {
      const before = await metricSum(standIns.cloudwatch, 'VerificationFailures', { name: 'Reason', value: 'missing_token' });
      const response = await fetch(receiver.http.dataUrl);
      assert.equal(response.status, 400);
      const body = (await response.json()) as { error: { code: string } };
      assert.equal(body.error.code, 'missing_token');
      assert.equal((await metricSum(standIns.cloudwatch, 'VerificationFailures', { name: 'Reason', value: 'missing_token' })) - before, 1);
    } finally {
      await receiver.stop();
    }
  });
});

describe('READY data callbacks over HTTP', () => {
  it("store a delivery's registers, intervals and events, archive the exact bytes first, and count it", async () => {
    // GIVEN
    const receiver = await startReadyReceiver(standIns, { now: () => NOW });
    try {
      const storedBefore = await metricSum(standIns.cloudwatch, 'ReadingsStored');
      // WHEN
      const [sent] = await sendReadyDeliveries(receiver.http.dataUrl, {
        meters: [{ meterId: 'kam-71234567' }, { meterId: 'kam-71234568', utility: 'heat' }],
        start: START,
        events: ['leak'],
      });
      // THEN
      assert.equal(sent?.status, 200, JSON.stringify(sent?.body));
      assert.equal((sent?.body as { status: string }).status, 'stored');
      const day = { from: new Date('2026-11-23T00:00:00Z'), to: new Date('2026-11-24T00:00:00Z') };
      const intervals = await receiver.store.query({ meterId: 'kam-71234567', channel: 'water.volume.interval', ...day });
      assert.equal(intervals.length, 4);
      assert.deepEqual(
        intervals.map((r) => r.kind === 'interval' && r.start.toISOString()),
        ['2026-11-23T08:00:00.000Z', '2026-11-23T08:15:00.000Z', '2026-11-23T08:30:00.000Z', '2026-11-23T08:45:00.000Z'],
      );
      assert.ok(intervals.every((r) => r.unit === 'm3' && r.source === 'ready'));
      const registers = await receiver.store.query({ meterId: 'kam-71234567', channel: 'water.volume', ...day });
      assert.equal(registers.length, 1);
      const heat = await receiver.store.query({ meterId: 'kam-71234568', channel: 'heat.energy.interval', ...day });
      assert.equal(heat.length, 4);
      assert.equal(heat[0]?.unit, 'kWh');
      const leak = await receiver.store.query({ meterId: 'kam-71234567', channel: 'event.leak', ...day });
      assert.deepEqual(
        leak.map((r) => [r.value, r.unit]),
        [[1, 'count']],
      );
      const archived = await archivedObjects(standIns, `${receiver.prefix}/data`);
      assert.equal(archived.length, 1);
      const { body } = buildReadyDelivery({
        deliveryId: sent!.deliveryId,
        subscriptionId: 'sub-local',
        meters: [{ meterId: 'kam-71234567' }, { meterId: 'kam-71234568', utility: 'heat' }],
        start: START,
        intervalsPerHour: 4,
        events: ['leak'],
      });
      assert.equal(archived[0]?.body.toString('utf8'), JSON.stringify(body));
      assert.equal((await metricSum(standIns.cloudwatch, 'ReadingsStored')) - storedBefore, 11); // 2 meters x (4 intervals + 1 register) + 1 event
      assert.ok((await metricSum(standIns.cloudwatch, 'MeterEvents', { name: 'Reason', value: 'leak' })) >= 1);
    } finally {
      await receiver.stop();
    }
  });

  it('store the same delivery sent 5 times once: 4 answers say duplicate, one write of each reading', async () => {
    const receiver = await startReadyReceiver(standIns, { now: () => NOW });
    try {
      const duplicatesBefore = await metricSum(standIns.cloudwatch, 'DeliveriesDuplicate');
      const storedBefore = await metricSum(standIns.cloudwatch, 'ReadingsStored');
      const sent = await sendReadyDeliveries(receiver.http.dataUrl, {
        meters: [{ meterId: 'kam-1' }, { meterId: 'kam-2' }],
        start: START,
        repeat: 5,
      });
      assert.deepEqual(
        sent.map((s) => s.status),
        [200, 200, 200, 200, 200],
      );
      assert.deepEqual(
        sent.map((s) => (s.body as { status: string }).status),
        ['stored', 'duplicate', 'duplicate', 'duplicate', 'duplicate'],
      );
      assert.equal((await metricSum(standIns.cloudwatch, 'DeliveriesDuplicate')) - duplicatesBefore, 4);
      assert.equal((await metricSum(standIns.cloudwatch, 'ReadingsStored')) - storedBefore, 10); // 2 meters x (4 intervals + 1 register)
      const day = { from: new Date('2026-11-23T00:00:00Z'), to: new Date('2026-11-24T00:00:00Z') };
      assert.equal((await receiver.store.query({ meterId: 'kam-1', channel: 'water.volume.interval', ...day })).length, 4);
      // every attempt is archived: nothing a sender sent is ever lost
      assert.equal((await archivedObjects(standIns, `${receiver.prefix}/data`)).length, 5);
    } finally {
      await receiver.stop();
    }
  });

  const badInputs: Array<{ name: string; status: number; code: string; send: (url: string) => Promise<Response>; bytes: () => Buffer }> = [
    {
      name: 'malformed JSON',
      status: 400,
      code: 'bad_json',
      bytes: () => Buffer.from('{"subscriptionId": "sub-1", "meters": [ {'),
      send(url) {
        return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: this.bytes() });
      },
    },
    {
      name: 'wrong content type',
      status: 415,
      code: 'unsupported_media_type',
      bytes: () => Buffer.from('meterId;value\nkam-1;12.5\n'),
      send(url) {
        return fetch(url, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: this.bytes() });
      },
    },
    {
      name: 'oversized body',
      status: 413,
      code: 'too_large',
      bytes: () =>
        Buffer.from(
          JSON.stringify(
            buildReadyDelivery({
              deliveryId: 'big',
              subscriptionId: 'sub-1',
              meters: Array.from({ length: 200 }, (_, i) => ({ meterId: `kam-${i}` })),
              start: START,
              intervalsPerHour: 4,
            }).body,
          ),
        ),
      send(url) {
        return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: this.bytes() });
      },
    },
    {
      name: 'unknown shape',
      status: 422,
      code: 'unknown_shape',
      bytes: () =>
        Buffer.from(
          JSON.stringify({
            subscriptionId: 'sub-1',
            resource: 'meterReadings',
            sentAt: NOW.toISOString(),
            meters: [
              {
                meterId: 'kam-1',
                utility: 'water',
                registers: [{ register: 'volume', value: 1, unit: 'm3', readAt: START.toISOString(), temperatureCompensated: true }],
              },
            ],
          }),
        ),
      send(url) {
        return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: this.bytes() });
      },
    },
  ];

  for (const bad of badInputs) {
    it(`answer ${bad.name} with ${bad.status} ${bad.code}, a metric, the original archived and nothing stored`, async () => {
      const receiver = await startReadyReceiver(standIns, { now: () => NOW, maxBodyBytes: 16 * 1024 });
      try {
        const before = await metricSum(standIns.cloudwatch, 'DeliveriesRejected', { name: 'Reason', value: bad.code });
        const response = await bad.send(receiver.http.dataUrl);
        assert.equal(response.status, bad.status);
        assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
        const text = await response.text();
        const body = JSON.parse(text) as { error: { code: string; message: string; requestId: string } };
        assert.equal(body.error.code, bad.code);
        assert.ok(body.error.requestId.length > 0);
        assert.doesNotMatch(text, /\n\s+at /, 'no stack trace');
        assert.equal((await metricSum(standIns.cloudwatch, 'DeliveriesRejected', { name: 'Reason', value: bad.code })) - before, 1);
        const archived = await archivedObjects(standIns, `${receiver.prefix}/data`);
        assert.equal(archived.length, 1);
        assert.ok(archived[0]!.body.equals(bad.bytes()), 'the archive holds the exact bytes sent');
        assert.equal(await storedBlocks(standIns, receiver.tables.readings), 0);
      } finally {
        await receiver.stop();
      }
    });
  }

  it('refuse a delivery with one invalid reading as a whole (never half-stored)', async () => {
    const receiver = await startReadyReceiver(standIns, { now: () => NOW });
    try {
      const { body } = buildReadyDelivery({
        deliveryId: 'half',
        subscriptionId: 'sub-1',
        meters: [{ meterId: 'kam-1' }, { meterId: 'kam-2' }],
        start: START,
        intervalsPerHour: 4,
      });
      // the second meter reports a heat unit on a water register
      (body.meters as Array<{ registers: Array<{ unit: string }> }>)[1]!.registers[0]!.unit = 'kWh';
      const response = await fetch(receiver.http.dataUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      assert.equal(response.status, 422);
      const json = (await response.json()) as { error: { reasons: string[] } };
      assert.match(json.error.reasons.join('\n'), /meters\.1\.registers\.0\.unit/);
      assert.equal(await storedBlocks(standIns, receiver.tables.readings), 0);
    } finally {
      await receiver.stop();
    }
  });

  it('check the assumed signature header when a signing key is configured: 401 without, 403 wrong, 200 right', async () => {
    const receiver = await startReadyReceiver(standIns, { now: () => NOW, credentials: { clientSecret: SECRET, signingKey: 'sign-me' } });
    try {
      const [unsigned] = await sendReadyDeliveries(receiver.http.dataUrl, { meters: [{ meterId: 'kam-1' }], start: START });
      assert.equal(unsigned?.status, 401);
      const [wrong] = await sendReadyDeliveries(receiver.http.dataUrl, { meters: [{ meterId: 'kam-1' }], start: START, signingKey: 'not-the-key' });
      assert.equal(wrong?.status, 403);
      assert.equal(await storedBlocks(standIns, receiver.tables.readings), 0);
      const [signed] = await sendReadyDeliveries(receiver.http.dataUrl, { meters: [{ meterId: 'kam-1' }], start: START, signingKey: 'sign-me' });
      assert.equal(signed?.status, 200);
    } finally {
      await receiver.stop();
    }
  });

  it('answer 429 with Retry-After when the store is throttled, and store the re-sent delivery once it is not', async () => {
    let throttled = true;
    let target: ReadingStore | undefined;
    const flaky = await startReadyReceiver(standIns, {
      now: () => NOW,
      overrides: {
        store: {
          blockTimeZone: 'America/Chicago',
          write: async (readings) => {
            if (throttled)
              throw Object.assign(new Error('Throughput exceeds the current capacity'), { name: 'ProvisionedThroughputExceededException' });
            return target!.write(readings);
          },
        },
      },
    });
    target = flaky.store; // the receiver's own tables
    try {
      const [first] = await sendReadyDeliveries(flaky.http.dataUrl, { meters: [{ meterId: 'kam-1' }], start: START });
      assert.equal(first?.status, 429);
      assert.equal((first?.body as { error: { code: string } }).error.code, 'throttled');
      throttled = false;
      // the claim was released: the retry is stored at once, not refused as in progress
      const [retry] = await sendReadyDeliveries(flaky.http.dataUrl, { meters: [{ meterId: 'kam-1' }], start: START });
      assert.equal(retry?.status, 200, JSON.stringify(retry?.body));
      assert.equal((retry?.body as { status: string }).status, 'stored');
      assert.ok((await storedBlocks(standIns, flaky.tables.readings)) > 0);
    } finally {
      await flaky.stop();
    }
  });

  it('answer 503 with Retry-After and store nothing when the archive is down', async () => {
    const receiver = await startReadyReceiver(standIns, {
      now: () => NOW,
      overrides: {
        archive: {
          put: async () => {
            throw new Error('S3 unavailable');
          },
        },
      },
    });
    try {
      const [sent] = await sendReadyDeliveries(receiver.http.dataUrl, { meters: [{ meterId: 'kam-1' }], start: START });
      assert.equal(sent?.status, 503);
      assert.equal(await storedBlocks(standIns, receiver.tables.readings), 0);
    } finally {
      await receiver.stop();
    }
  });
});

describe('READY status callbacks over HTTP', () => {
  it('record state changes, ignore stale callbacks, and emit the inactive gauge', async () => {
    const receiver = await startReadyReceiver(standIns, { now: () => NOW });
    try {
      const url = receiver.http.statusUrl;
      const gaugeBefore = await metricSum(standIns.cloudwatch, 'SubscriptionInactive');
      const active = await sendReadyStatus(url, { subscriptionId: 'sub-9', status: 'Active', changedAt: new Date('2026-11-23T10:00:00Z') });
      assert.equal(active.status, 200);
      assert.equal((active.body as { outcome: string }).outcome, 'changed');
      const suspended = await sendReadyStatus(url, {
        subscriptionId: 'sub-9',
        status: 'Suspended',
        changedAt: new Date('2026-11-23T11:00:00Z'),
        reason: 'endpoint unreachable',
      });
      assert.equal((suspended.body as { outcome: string }).outcome, 'changed');
      const late = await sendReadyStatus(url, { subscriptionId: 'sub-9', status: 'Active', changedAt: new Date('2026-11-23T10:30:00Z') });
      assert.equal((late.body as { outcome: string }).outcome, 'stale');
      assert.equal((await metricSum(standIns.cloudwatch, 'SubscriptionStateChanges', { name: 'Status', value: 'suspended' })) >= 1, true);
      // active -> 0, suspended -> 1, stale -> no datum
      assert.equal((await metricSum(standIns.cloudwatch, 'SubscriptionInactive')) - gaugeBefore, 1);
      const unknown = await sendReadyStatus(url, { subscriptionId: 'sub-9', status: 'Hibernating' });
      assert.equal(unknown.status, 422);
    } finally {
      await receiver.stop();
    }
  });
});

describe('replay of archived READY callbacks', () => {
  it('stores an archived delivery once the cause of its rejection is fixed, and only once', async () => {
    // GIVEN a delivery refused as too large and archived
    const tight = await startReadyReceiver(standIns, { now: () => NOW, maxBodyBytes: 512 });
    let archivedKey: string;
    try {
      const [sent] = await sendReadyDeliveries(tight.http.dataUrl, {
        meters: [{ meterId: 'kam-1' }, { meterId: 'kam-2' }, { meterId: 'kam-3' }],
        start: START,
      });
      assert.equal(sent?.status, 413);
      const archived = await archivedObjects(standIns, `${tight.prefix}/data`);
      assert.equal(archived.length, 1);
      archivedKey = archived[0]!.key;
    } finally {
      await tight.stop();
    }
    // WHEN the limit is raised and the archived original replayed (the same tables, the default limit)
    const { RawArchive } = await import('../../lambdas/core/raw-archive.ts');
    const { replayArchived } = await import('../../lambdas/core/ready/replay.ts');
    const { localReadyDependencies } = await import('../../local/ready-http.ts');
    const { silentLog } = await import('../../shared/log.ts');
    const tables = await standIns.dynamo.freshTables();
    const base = localReadyDependencies({
      dynamodb: standIns.dynamo.client,
      tables,
      s3: standIns.s3.client,
      archiveBucket: READY_BUCKET,
      cloudwatch: standIns.cloudwatch.client(),
      log: silentLog,
    })();
    const deps = {
      ...base,
      clock: () => NOW,
      archive: new RawArchive({ client: standIns.s3.client, bucket: READY_BUCKET }),
      metrics: () => base.metrics,
    };
    const [first] = await replayArchived([archivedKey], deps);
    const [again] = await replayArchived([archivedKey, 'ready/data/none.json'], deps);
    // THEN
    assert.equal(first?.statusCode, 200, JSON.stringify(first?.body));
    assert.equal((first?.body as { status: string }).status, 'stored');
    assert.equal((again?.body as { status: string }).status, 'duplicate');
    assert.equal((await storedBlocks(standIns, tables.readings)) > 0, true);
    const [missing] = await replayArchived(['ready/data/none.json'], deps);
    assert.equal(missing?.statusCode, 404);
  });
});
