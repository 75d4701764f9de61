/**
 * Fuzzing the READY webhook (lambdas/core/ready/webhook.ts) with hostile bodies and headers:
 * any bytes, any JSON, near-valid deliveries with one thing wrong, deep nesting, huge strings,
 * odd content types and signatures, handshakes and status callbacks. Store, ledger and
 * subscription states are DynamoDB Local; the archive and the metrics client record what they
 * were given.
 *
 * Invariants: never a 5xx for bad input (the dependencies are all up, so a 5xx is a bug); every
 * refusal is JSON with a known code and counted in DeliveriesRejected; every POST to a callback URL is archived byte for byte
 * before it is judged; a delivery the generator broke on purpose (the same identity twice, an
 * interval off the 15-minute grid, a wrong signature) is never stored.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { Ledger } from '../../lambdas/core/ledger.ts';
import { Metrics } from '../../lambdas/core/metrics.ts';
import type { RawArchive } from '../../lambdas/core/raw-archive.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { staticCredentials } from '../../lambdas/core/ready/secret.ts';
import { DynamoSubscriptionStates } from '../../lambdas/core/ready/status.ts';
import { handleReadyRequest, SIGNATURE_HEADER, type ReadyRequest, type ReadyWebhookDependencies } from '../../lambdas/core/ready/webhook.ts';
import { silentLog } from '../../shared/log.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';
import { fc, fuzz, type Verdict } from './support.ts';

const NOW = new Date('2026-11-23T12:00:00Z');
const SIGNING_KEY = 'signing-key-from-ready';
/** Codes a refusal may carry (RejectCode) and the answers of a handshake that went wrong. */
const REFUSAL_CODES = new Set([
  'not_found',
  'method_not_allowed',
  'too_large',
  'unauthenticated',
  'forbidden',
  'unsupported_media_type',
  'bad_json',
  'unknown_shape',
  'delivery_conflict',
  'missing_token',
]);

let dynamo: LocalDynamo;
/**
 * What the webhook's metrics sent, per case. The HTTP tests assert metrics at the recording
 * CloudWatch endpoint; here a round trip per case would be 80 % of the run, so the client
 * records the PutMetricData input in memory instead.
 */
let sentMetrics: Array<NonNullable<PutMetricDataCommand['input']['MetricData']>[number]> = [];
const cloudwatchClient = {
  send: async (command: PutMetricDataCommand) => {
    sentMetrics.push(...(command.input.MetricData ?? []));
    return {};
  },
} as unknown as CloudWatchClient;
let store: ReadingStore;
let ledger: Ledger;
let subscriptions: DynamoSubscriptionStates;
before(async () => {
  dynamo = await startDynamoDbLocal();
  const tables = await dynamo.freshTables();
  store = new ReadingStore({ client: dynamo.client, tableName: tables.readings, blockTimeZone: 'America/Chicago' });
  ledger = new Ledger({ client: dynamo.client, tableName: tables.ledger, lockSeconds: 60, clock: () => NOW });
  subscriptions = new DynamoSubscriptionStates({ client: dynamo.client, tableName: tables.ledger });
});
after(async () => {
  await dynamo?.stop();
});

interface Case {
  request: Omit<ReadyRequest, 'requestId'>;
  /** Sign with the stage's key (signatures required), or accept unsigned (an opted-out stage). */
  signed: boolean;
  mustNotStore?: string;
}

let counter = 0;
const deliveryId = () => fc.integer({ min: 0, max: 1e9 }).map((n) => `d-${n}`);

const delivery = fc.record({
  deliveryId: deliveryId(),
  subscriptionId: fc.constantFrom('sub-1', 'sub-2'),
  resource: fc.constantFrom('meterReadings', 'meterReadings', 'other'),
  sentAt: fc.constant('2026-11-23T11:00:00Z'),
  meters: fc.array(
    fc.record({
      meterId: fc.constantFrom('kam-1', 'kam-2', ''),
      utility: fc.constantFrom('water', 'heat', 'gas'),
      registers: fc.array(
        fc.record({
          register: fc.constantFrom('volume', 'energy', 'nope'),
          value: fc.integer({ min: 0, max: 1e6 }),
          unit: fc.constantFrom('m3', 'kWh', 'm³', 'furlong'),
          readAt: fc.constantFrom('2026-11-23T10:00:00Z', '2031-01-01T00:00:00Z', 'yesterday'),
        }),
        { maxLength: 2 },
      ),
      intervals: fc.array(
        fc.record({
          register: fc.constantFrom('volume', 'energy'),
          start: fc.constantFrom('2026-11-23T08:00:00Z', '2026-11-23T08:15:00Z'),
          intervalSeconds: fc.constantFrom(900, 3600, 30),
          unit: fc.constantFrom('m3', 'kWh', 'L'),
          values: fc.array(fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constant(null)), { minLength: 1, maxLength: 4 }),
        }),
        { maxLength: 2 },
      ),
    }),
    { minLength: 0, maxLength: 2 },
  ),
});

const bytes = (value: unknown) => Buffer.from(typeof value === 'string' ? value : (JSON.stringify(value) ?? 'null'));

/** A valid delivery made wrong on purpose: the same interval twice, or a series at 10:07 beside one at 10:00 (15-minute data). */
const broken = fc.tuple(deliveryId(), fc.constantFrom('twice', 'shifted'), fc.integer({ min: 1, max: 14 })).map(([id, how, shift]) => {
  const series = (start: string) => ({ register: 'volume', start, intervalSeconds: 900, unit: 'm3', values: [1, 1, 1, 1] });
  const second =
    how === 'twice' ? series('2026-11-23T08:00:00Z') : series(new Date(Date.parse('2026-11-23T09:00:00Z') + shift * 60_000).toISOString());
  const body = {
    deliveryId: id,
    subscriptionId: 'sub-1',
    resource: 'meterReadings',
    sentAt: '2026-11-23T11:00:00Z',
    meters: [{ meterId: 'kam-9', utility: 'water', intervals: [series('2026-11-23T08:00:00Z'), second] }],
  };
  return { body: bytes(body), mustNotStore: how === 'twice' ? 'the same interval twice' : 'an interval series off the 15-minute grid' };
});

const deep = fc.tuple(fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constantFrom(1_000, 20_000, 100_000)), fc.boolean()).map(([depth, asUnit]) => {
  const nested = `${'['.repeat(depth)}${']'.repeat(depth)}`;
  // In a register's unit, where the unknown-unit message once serialized it whole.
  if (asUnit)
    return Buffer.from(
      `{"deliveryId":"d-deep","subscriptionId":"sub-1","resource":"meterReadings","sentAt":"2026-11-23T11:00:00Z","meters":[{"meterId":"kam-1","utility":"water","registers":[{"register":"volume","value":1,"unit":${nested},"readAt":"2026-11-23T10:00:00Z"}]}]}`,
    );
  return Buffer.from(`{"meters":${nested}}`);
});
// Over the 4 MiB limit now and then; each such case costs a few MB of strings and a hash.
const huge = fc
  .oneof({ weight: 8, arbitrary: fc.integer({ min: 1_000, max: 100_000 }) }, { weight: 1, arbitrary: fc.constant(4 * 1024 * 1024 + 1) })
  .map((length) =>
    bytes({
      deliveryId: 'd-huge',
      subscriptionId: 'sub-1',
      resource: 'meterReadings',
      sentAt: '2026-11-23T11:00:00Z',
      meters: [
        { meterId: 'kam-1', utility: 'water', registers: [{ register: 'x'.repeat(length), value: 1, unit: 'm3', readAt: '2026-11-23T10:00:00Z' }] },
      ],
    }),
  );
const status = fc.record({
  subscriptionId: fc.constantFrom('sub-1', 'sub-2'),
  status: fc.constantFrom('active', 'suspended', 'unknown', ''),
  changedAt: fc.constantFrom('2026-11-23T10:00:00Z', 'soon'),
});

const body: fc.Arbitrary<{ body: Buffer; mustNotStore?: string }> = fc.oneof(
  { weight: 4, arbitrary: delivery.map((d) => ({ body: bytes(d) })) },
  { weight: 1, arbitrary: broken },
  { weight: 1, arbitrary: deep.map((b) => ({ body: b })) },
  { weight: 1, arbitrary: huge.map((b) => ({ body: b })) },
  { weight: 1, arbitrary: status.map((s) => ({ body: bytes(s) })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 5000 }).map((token) => ({ body: bytes({ verificationToken: token }) })) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 5 }).map((v) => ({ body: bytes(v) })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }).map((b) => ({ body: Buffer.from(b) })) },
);

const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  {
    weight: 1,
    arbitrary: fc.constantFrom('application/json; charset=utf-8', 'application/json; charset=latin1', 'text/plain', 'APPLICATION/JSON', ''),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 600 }) },
);
const signature = fc.oneof(
  { weight: 6, arbitrary: fc.constant('right') },
  { weight: 1, arbitrary: fc.constant('none') },
  { weight: 1, arbitrary: fc.oneof(fc.constant('sha256='), fc.base64String({ maxLength: 64 }), fc.string({ maxLength: 600 })) },
);

const arbitrary: fc.Arbitrary<Case> = fc
  .record({
    route: fc.oneof(
      { weight: 8, arbitrary: fc.constant('data' as const) },
      { weight: 2, arbitrary: fc.constant('status' as const) },
      { weight: 1, arbitrary: fc.constant(undefined) },
    ),
    method: fc.oneof({ weight: 10, arbitrary: fc.constant('POST') }, { weight: 1, arbitrary: fc.constantFrom('GET', 'PUT', 'post', 'DELETE') }),
    payload: body,
    contentType,
    signature,
    signed: fc.boolean(),
    query: fc.dictionary(fc.constantFrom('verificationToken', 'validationToken', 'x'), fc.string({ maxLength: 5000 }), { maxKeys: 2 }),
  })
  .map(({ route, method, payload, contentType: type, signature: sig, signed, query }): Case => {
    const headers: Record<string, string> = {};
    if (type !== '') headers['content-type'] = type;
    const wrongSignature = signed && sig !== 'right';
    if (sig === 'right') headers[SIGNATURE_HEADER] = `sha256=${createHmac('sha256', SIGNING_KEY).update(payload.body).digest('base64')}`;
    else if (sig !== 'none') headers[SIGNATURE_HEADER] = sig;
    const mustNotStore = payload.mustNotStore ?? (wrongSignature ? 'a wrong or missing signature' : undefined);
    return { request: { route, method, headers, query, body: payload.body }, signed, ...(mustNotStore ? { mustNotStore } : {}) };
  });

async function check(input: Case): Promise<Verdict> {
  const archived: Array<{ key: string; body: Buffer }> = [];
  const archive: Pick<RawArchive, 'put'> = {
    put: async (key, value) => {
      const copy = Buffer.from(value as Uint8Array);
      archived.push({ key, body: copy });
      return { bucket: 'fuzz', key, size: copy.length };
    },
  };
  const deps: ReadyWebhookDependencies = {
    archive,
    store,
    ledger,
    subscriptions,
    credentials: staticCredentials(input.signed ? { clientSecret: 'client-secret', signingKey: SIGNING_KEY } : { clientSecret: 'client-secret' }),
    requireSignature: input.signed,
    metrics: new Metrics({ client: cloudwatchClient, defaultDimensions: { Source: 'ready' }, log: silentLog }),
    log: silentLog,
    clock: () => NOW,
  };
  const request: ReadyRequest = { ...input.request, requestId: `fuzz-${++counter}` };
  sentMetrics = [];
  const response = await handleReadyRequest(request, deps);

  assert.ok(response.statusCode < 500, `${response.statusCode} for bad input: ${response.body.slice(0, 300)}`);
  if (request.route !== undefined && request.method.toUpperCase() === 'POST') {
    assert.equal(archived.length, 1, 'a POSTed callback is archived once');
    assert.ok(archived[0]!.body.equals(request.body), 'archived byte for byte');
  }
  if (response.statusCode >= 400) {
    const answer = JSON.parse(response.body) as { error?: { code?: string; message?: string } };
    assert.ok(answer.error?.code && REFUSAL_CODES.has(answer.error.code), `untyped refusal: ${response.body.slice(0, 300)}`);
    assert.ok(typeof answer.error.message === 'string' && answer.error.message.length > 0);
    assert.ok(response.body.length < 64 * 1024, `an answer of ${response.body.length} bytes: input echoed back`);
    const counted = sentMetrics.some(
      (d) => d.MetricName === 'DeliveriesRejected' && d.Dimensions?.some((x) => x.Name === 'Reason' && x.Value === answer.error!.code),
    );
    assert.ok(counted, `refusal ${answer.error.code} without its DeliveriesRejected metric`);
    return { outcome: 'refused' };
  }
  const stored =
    response.headers['content-type']?.startsWith('application/json') && (JSON.parse(response.body) as { status?: string }).status === 'stored';
  return { outcome: 'accepted', ...(stored && input.mustNotStore ? { wronglyAccepted: input.mustNotStore } : {}) };
}

describe('fuzz: READY webhook bodies and headers', () => {
  it('never answers bad input with a 5xx, types every refusal, archives every body first, and stores nothing broken or unsigned', async () => {
    const report = await fuzz({ name: 'ready-webhook', arbitrary, check, deadlineMs: 15_000 });
    assert.ok(report.accepted > 0 && report.refused > 0, `accepted ${report.accepted}, refused ${report.refused}`);
  });
});
