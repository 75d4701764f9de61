/**
 * The READY webhook against hostile and clumsy senders, over HTTP on the real stand-ins
 * (DynamoDB Local, s3rver, the recording CloudWatch endpoint): a reused delivery id, unsigned
 * callbacks when signatures are required, a signing key equal to the handshake's client secret,
 * deliveries that could only be stored in part, and JSON nested too deep.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { buildReadyDelivery } from '../../local/ready-http.ts';
import { archivedObjects, metricSum, startReadyReceiver, startReadyStandIns, storedBlocks, type ReadyStandIns } from '../support/ready-webhook.ts';

let standIns: ReadyStandIns;
before(async () => {
  standIns = await startReadyStandIns();
});
after(async () => standIns?.stop());

const NOW = new Date('2026-11-23T12:00:00Z');
const START = new Date('2026-11-23T08:00:00Z');
const DAY = { from: new Date('2026-11-23T00:00:00Z'), to: new Date('2026-11-24T00:00:00Z') };

async function post(
  url: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: { status?: string; error?: { code: string; message: string; reasons?: string[] } } }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) };
}

function delivery(deliveryId: string, values?: number[], start = START): Record<string, unknown> {
  const { body } = buildReadyDelivery({ deliveryId, subscriptionId: 'sub-1', meters: [{ meterId: 'kam-1' }], start, intervalsPerHour: 4 });
  if (values) (body.meters as Array<{ intervals: Array<{ values: number[] }> }>)[0]!.intervals[0]!.values = values;
  return body;
}

describe('READY delivery ids and content', () => {
  it('answers a re-send duplicate even when re-serialized, and refuses a reused id with other readings 409 with DeliveriesConflicting, keeping the first readings', async () => {
    const receiver = await startReadyReceiver(standIns, { now: () => NOW });
    try {
      const first = await post(receiver.http.dataUrl, JSON.stringify(delivery('d-1', [1, 1, 1, 1])));
      assert.equal(first.status, 200);
      assert.equal(first.body.status, 'stored');
      // The same readings, spelled differently (indentation, another sentAt): a re-send.
      const resend = await post(receiver.http.dataUrl, JSON.stringify({ ...delivery('d-1', [1, 1, 1, 1]), sentAt: '2026-11-23T09:30:00Z' }, null, 2));
      assert.equal(resend.status, 200);
      assert.equal(resend.body.status, 'duplicate');

      const reused = await post(receiver.http.dataUrl, JSON.stringify(delivery('d-1', [2, 2, 2, 2])));
      assert.equal(reused.status, 409);
      assert.equal(reused.body.error?.code, 'delivery_conflict');
      assert.match(reused.body.error!.message, /delivery d-1 was received before with other readings/);
      assert.equal(await metricSum(standIns.cloudwatch, 'DeliveriesConflicting'), 1);
      assert.equal(await metricSum(standIns.cloudwatch, 'DeliveriesRejected', { name: 'Reason', value: 'delivery_conflict' }), 1);
      const intervals = await receiver.store.query({ meterId: 'kam-1', channel: 'water.volume.interval', ...DAY });
      assert.deepEqual(
        intervals.map((r) => r.value),
        [1, 1, 1, 1],
      );
      assert.equal((await archivedObjects(standIns, `${receiver.prefix}/data`)).length, 3, 'every body archived, the conflicting one included');
    } finally {
      await receiver.stop();
    }
  });

  it('refuses a delivery with the same identity twice, or an interval series at 10:07 beside one at 10:00, as a whole (422, nothing stored)', async () => {
    const receiver = await startReadyReceiver(standIns, { now: () => NOW });
    try {
      const twice = delivery('d-twice');
      const meter = (twice.meters as Array<{ intervals: unknown[] }>)[0]!;
      meter.intervals.push({ register: 'volume', start: START.toISOString(), intervalSeconds: 900, unit: 'm3', values: [5] });
      const duplicate = await post(receiver.http.dataUrl, JSON.stringify(twice));
      assert.equal(duplicate.status, 422);
      assert.match(duplicate.body.error!.reasons!.join('\n'), /kam-1 water\.volume\.interval 2026-11-23T08:00:00\.000Z: the same reading twice/);

      const shifted = delivery('d-shifted', undefined, new Date('2026-11-23T10:07:00Z'));
      const misaligned = await post(receiver.http.dataUrl, JSON.stringify(shifted));
      assert.equal(misaligned.status, 422);
      assert.equal(misaligned.body.error?.code, 'unknown_shape');
      assert.match(misaligned.body.error!.reasons!.join('\n'), /900 s interval 420 s off its day's grid/);
      assert.equal(await storedBlocks(standIns, receiver.tables.readings), 0);
    } finally {
      await receiver.stop();
    }
  });

  it('answers JSON nested 100,000 deep 400 bad_json (not a 500), archived', async () => {
    const receiver = await startReadyReceiver(standIns, { now: () => NOW });
    try {
      const deep = `{"meters":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
      const answer = await post(receiver.http.dataUrl, deep);
      assert.equal(answer.status, 400);
      assert.equal(answer.body.error?.code, 'bad_json');
      assert.match(answer.body.error!.message, /nests deeper than 16 levels/);
      const [archived] = await archivedObjects(standIns, `${receiver.prefix}/data`);
      assert.equal(archived?.body.toString('utf8'), deep);
    } finally {
      await receiver.stop();
    }
  });
});

describe('READY callers and keys', () => {
  it('refuses callbacks 503 (archived, WebhookErrors) while signatures are required and the secret has no signing key', async () => {
    const receiver = await startReadyReceiver(standIns, { now: () => NOW, overrides: { requireSignature: true } });
    try {
      const errorsBefore = await metricSum(standIns.cloudwatch, 'WebhookErrors', { name: 'Step', value: 'secret' });
      const answer = await post(receiver.http.dataUrl, JSON.stringify(delivery('d-unsigned')));
      assert.equal(answer.status, 503);
      assert.equal(answer.body.error?.code, 'signing_key_missing');
      assert.equal((await metricSum(standIns.cloudwatch, 'WebhookErrors', { name: 'Step', value: 'secret' })) - errorsBefore, 1);
      assert.equal(await storedBlocks(standIns, receiver.tables.readings), 0);
      assert.equal((await archivedObjects(standIns, `${receiver.prefix}/data`)).length, 1);
    } finally {
      await receiver.stop();
    }
    const signed = await startReadyReceiver(standIns, {
      now: () => NOW,
      credentials: { clientSecret: 'client-secret', signingKey: 'signing-key' },
      overrides: { requireSignature: true },
    });
    try {
      const body = JSON.stringify(delivery('d-signed'));
      assert.equal((await post(signed.http.dataUrl, body)).status, 401);
      const signature = `sha256=${createHmac('sha256', 'signing-key').update(body).digest('base64')}`;
      assert.equal((await post(signed.http.dataUrl, body, { 'x-ready-signature': signature })).status, 200);
    } finally {
      await signed.stop();
    }
  });

  it('refuses a signing key equal to the client secret: the unauthenticated handshake would sign any body', async () => {
    const receiver = await startReadyReceiver(standIns, {
      now: () => NOW,
      credentials: { clientSecret: 'same-key', signingKey: 'same-key' },
      overrides: { requireSignature: true },
    });
    try {
      const body = JSON.stringify(delivery('d-forged'));
      // The attack: ask the handshake to "verify" the body, and present its answer as the signature.
      const handshake = await fetch(`${receiver.http.dataUrl}?verificationToken=${encodeURIComponent(body)}`);
      assert.equal(handshake.status, 503);
      assert.equal(((await handshake.json()) as { error: { code: string } }).error.code, 'credentials_misconfigured');
      const forged = `sha256=${createHmac('sha256', 'same-key').update(body).digest('base64')}`;
      const answer = await post(receiver.http.dataUrl, body, { 'x-ready-signature': forged });
      assert.equal(answer.status, 503);
      assert.equal(answer.body.error?.code, 'credentials_misconfigured');
      assert.equal(await storedBlocks(standIns, receiver.tables.readings), 0);
    } finally {
      await receiver.stop();
    }
  });
});
