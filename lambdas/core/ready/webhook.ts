/**
 * The READY webhook: one HTTP request (already lifted out of API Gateway's event, see
 * api-gateway.ts) in, one HTTP response out. The Lambda handler and the local HTTP adapter both
 * call this, so what the tests exercise over loopback is what runs behind API Gateway.
 *
 * A callback with a body is archived FIRST, byte for byte, before anything can reject it: a
 * delivery our mapping does not understand, or that is too large, or that arrives with the wrong
 * content type, is still in S3 for an operator to replay. Then, in this order, one named step
 * each (judgeArchived; a replay of an archived callback runs the same steps):
 *
 *   size (413) -> credentials (503) -> signature, required unless the stage opts out (401/403)
 *   -> content type (415) -> JSON (400) -> verification handshake | status (422) | delivery:
 *   mapping (422 unknown shape) -> the store's day grid (422) -> ledger claim (a re-sent delivery
 *   is answered 200 without touching the store; its id with other readings is a 409 conflict)
 *   -> store -> metrics
 *
 * Every answer is JSON with a `code` a sender's engineer can search for, never a stack trace.
 * A transient failure (archive, store, secret) is a 5xx or 429 with Retry-After, so READY retries.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { parseUntrustedJson, preview } from '../../../shared/untrusted-json.ts';
import type { Claim, Ledger } from '../ledger.ts';
import type { Log } from '../../../shared/log.ts';
import type { Metrics } from '../metrics.ts';
import { READING_STATUS_METRIC } from '../metric-catalog.ts';
import type { RawArchive } from '../raw-archive.ts';
import type { ReadingStore, WriteReport } from '../reading-store.ts';
import { gridProblems, WRITE_STATUSES } from '../interval-block.ts';
import { looksLikeDelivery, mapDelivery, type MappedDelivery } from './delivery.ts';
import { DEFAULT_VERIFICATION, MAX_TOKEN_LENGTH, handshakeKeyIsSigningKey, verificationAnswer, type VerificationConfig } from './handshake.ts';
import type { CredentialsSource, ReadyCredentials } from './secret.ts';
import { parseStatusCallback, type SubscriptionStates } from './status.ts';

export type ReadyRoute = 'data' | 'status';

/** An HTTP request as the webhook sees it, whatever carried it (API Gateway, the local adapter). */
export interface ReadyRequest {
  /** Which callback URL was called; undefined for any other path. */
  route: ReadyRoute | undefined;
  method: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
  query: Record<string, string>;
  /** The body exactly as received. */
  body: Buffer;
  /** API Gateway's request id: on every log line, in every error body and in the archive key. */
  requestId: string;
  sourceIp?: string;
}

export interface ReadyResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** Error codes in response bodies; also the Reason of DeliveriesRejected. */
export type RejectCode =
  | 'not_found'
  | 'method_not_allowed'
  | 'too_large'
  | 'unauthenticated'
  | 'forbidden'
  | 'unsupported_media_type'
  | 'bad_json'
  | 'unknown_shape'
  | 'delivery_conflict'
  | 'missing_token';

export interface ReadyWebhookDependencies {
  archive: Pick<RawArchive, 'put'>;
  store: Pick<ReadingStore, 'write' | 'blockTimeZone'>;
  ledger: Pick<Ledger, 'claim' | 'complete' | 'release'>;
  subscriptions: SubscriptionStates;
  credentials: CredentialsSource;
  /** A fresh buffer for this request; flushed before the response is returned. */
  metrics: Metrics;
  log: Log;
  /**
   * Refuse callbacks without a valid signature (SIGNATURE_HEADER). No default on purpose: each
   * wiring says it. The Lambda entry takes it from READY_REQUIRE_SIGNATURE, which the construct
   * sets from the stage's `ready` settings (lib/ready-settings.ts); with no signing key in the
   * secret, a required signature cannot be checked and callbacks are answered 503 (retried).
   */
  requireSignature: boolean;
  /** @default DEFAULT_VERIFICATION (HMAC-SHA256, UTF-8 secret, text answer) */
  verification?: VerificationConfig;
  /**
   * Largest body accepted. API Gateway REST allows 10 MB and a synchronous Lambda invocation
   * 6 MB including the event around the body, so the limit that can be enforced with a JSON
   * answer and an archived original is the one checked here.
   * @default 4 MiB
   */
  maxBodyBytes?: number;
  /** Key prefix in the archive bucket. @default 'ready' */
  archivePrefix?: string;
  /** @default () => new Date() */
  clock?: () => Date;
}

export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

/** Header carrying `sha256=<Base64 HMAC-SHA256(signingKey, body)>` when a signing key is configured (assumed; see docs/ready.md). */
export const SIGNATURE_HEADER = 'x-ready-signature';

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };

function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): ReadyResponse {
  return { statusCode, headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) };
}

function problem(
  statusCode: number,
  code: string,
  message: string,
  requestId: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): ReadyResponse {
  return json(statusCode, { error: { code, message, requestId, ...extra } }, headers);
}

const REJECT_STATUS: Record<RejectCode, number> = {
  not_found: 404,
  method_not_allowed: 405,
  too_large: 413,
  unauthenticated: 401,
  forbidden: 403,
  unsupported_media_type: 415,
  bad_json: 400,
  unknown_shape: 422,
  delivery_conflict: 409,
  missing_token: 400,
};

function isThrottling(error: unknown): boolean {
  const name = (error as { name?: string } | undefined)?.name ?? '';
  return ['ProvisionedThroughputExceededException', 'ThrottlingException', 'RequestLimitExceeded', 'SlowDown', 'TooManyRequestsException'].includes(
    name,
  );
}

function utcPath(date: Date): string {
  const iso = date.toISOString();
  return `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}`;
}

/** S3 metadata travels as HTTP headers: printable ASCII only, and bounded. */
function asciiHeader(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '?').slice(0, 512);
}

/** `application/json`, optionally with `charset=utf-8`; anything else is not a READY callback. */
export function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  const [type, ...params] = value.split(';').map((part) => part.trim().toLowerCase());
  if (type !== 'application/json') return false;
  return params.every((param) => !param.startsWith('charset=') || param === 'charset=utf-8' || param === 'charset="utf-8"');
}

/** A delivery nests six levels (delivery, meters, meter, intervals, series, values); deeper JSON is not one. */
const MAX_BODY_DEPTH = 16;

function verifySignature(body: Buffer, header: string | undefined, signingKey: string): 'ok' | 'missing' | 'mismatch' {
  if (!header) return 'missing';
  const presented = header.startsWith('sha256=') ? header.slice('sha256='.length) : header;
  const expected = createHmac('sha256', signingKey).update(body).digest();
  const given = Buffer.from(presented, 'base64');
  return given.length === expected.length && timingSafeEqual(given, expected) ? 'ok' : 'mismatch';
}

export async function handleReadyRequest(request: ReadyRequest, deps: ReadyWebhookDependencies): Promise<ReadyResponse> {
  return answering(request, deps, () => receive(request, deps));
}

/** What a replay needs: everything but the archive's write side (the body is archived already). */
export type ArchivedCallbackDependencies = Omit<ReadyWebhookDependencies, 'archive' | 'archivePrefix'>;

/**
 * Judges a callback whose body is already archived at `archivedKey`: every step after archiving.
 * The webhook runs it right after archiving; a replay runs it on the archived original.
 */
export async function handleArchivedCallback(request: ReadyRequest, archivedKey: string, deps: ArchivedCallbackDependencies): Promise<ReadyResponse> {
  return answering(request, deps, () => judgeArchived(exchange(request, deps, archivedKey)));
}

/** Runs one request to its answer: nothing unexpected leaks out, metrics are flushed either way. */
async function answering(request: ReadyRequest, deps: ArchivedCallbackDependencies, work: () => Promise<ReadyResponse>): Promise<ReadyResponse> {
  try {
    return await work();
  } catch (error) {
    // Nothing unexpected may leak out: no stack, no SDK message. The request id finds the log line.
    deps.log.error('webhook request failed unexpectedly', {
      requestId: request.requestId,
      error: preview(error instanceof Error ? `${error.name}: ${error.message}` : String(error), 500),
    });
    deps.metrics.count('WebhookErrors', 1, { Step: 'unexpected' });
    return problem(
      500,
      'internal_error',
      'the request could not be processed; it will succeed when retried if the failure was transient',
      request.requestId,
    );
  } finally {
    await deps.metrics.flush();
  }
}

/** One request on its way through the steps. */
interface Exchange {
  request: ReadyRequest;
  deps: ArchivedCallbackDependencies;
  now: Date;
  /** Where the body is archived, once it is. */
  archivedKey?: string;
}

function exchange(request: ReadyRequest, deps: ArchivedCallbackDependencies, archivedKey?: string): Exchange {
  return { request, deps, now: deps.clock?.() ?? new Date(), ...(archivedKey ? { archivedKey } : {}) };
}

/** A 4xx refusal with its code, a DeliveriesRejected metric and a log line naming the archived original. */
function refuse(x: Exchange, code: RejectCode, message: string, extra: Record<string, unknown> = {}): ReadyResponse {
  x.deps.metrics.count('DeliveriesRejected', 1, { Reason: code });
  x.deps.log.warn('callback rejected', {
    requestId: x.request.requestId,
    route: x.request.route,
    code,
    reason: message,
    archivedKey: x.archivedKey,
    ...extra,
  });
  return problem(REJECT_STATUS[code], code, message, x.request.requestId, extra);
}

/** A step either hands on a value or ends the exchange with an answer. */
type Step<T> = { next: T } | { answer: ReadyResponse };

async function receive(request: ReadyRequest, deps: ReadyWebhookDependencies): Promise<ReadyResponse> {
  const x = exchange(request, deps);
  if (request.route === undefined)
    return refuse(x, 'not_found', 'no such callback; READY posts to the data (WebhookUri) and status (StatusUri) URLs');
  const method = request.method.toUpperCase();
  if (method === 'GET') {
    // Verification as a query parameter (the shape most webhook senders use for GET handshakes).
    return verify(x, request.query.verificationToken ?? request.query.validationToken);
  }
  if (method !== 'POST') {
    const refused = refuse(x, 'method_not_allowed', `${preview(method, 40)} is not accepted; READY callbacks are POST (or GET for verification)`);
    return { ...refused, headers: { ...refused.headers, allow: 'GET, POST' } };
  }
  deps.metrics.count('DeliveriesReceived', 1, { Step: request.route });
  const archived = await archiveBody(x, deps);
  if ('answer' in archived) return archived.answer;
  return judgeArchived({ ...x, archivedKey: archived.next });
}

/** Step 1: archive the body byte for byte; from here on nothing is lost, whatever the verdict. */
async function archiveBody(x: Exchange, deps: ReadyWebhookDependencies): Promise<Step<string>> {
  const { request, now } = x;
  const contentType = request.headers['content-type'];
  const key = `${deps.archivePrefix ?? 'ready'}/${request.route}/${utcPath(now)}/${now.toISOString().replace(/[:.]/g, '-')}-${request.requestId}.json`;
  try {
    const stored = await deps.archive.put(key, request.body, {
      contentType: contentType ?? 'application/octet-stream',
      // What a replay needs to judge the body again exactly as on arrival (see replay.ts).
      metadata: {
        route: request.route ?? 'unknown',
        requestid: request.requestId,
        receivedat: now.toISOString(),
        ...(request.sourceIp ? { sourceip: request.sourceIp } : {}),
        ...(contentType ? { contenttype: asciiHeader(contentType) } : {}),
        ...(request.headers[SIGNATURE_HEADER] ? { signature: asciiHeader(request.headers[SIGNATURE_HEADER]) } : {}),
      },
    });
    return { next: stored.key };
  } catch (error) {
    deps.metrics.count('WebhookErrors', 1, { Step: 'archive' });
    deps.log.error('could not archive the callback; asking the sender to retry', { requestId: request.requestId, key, error: String(error) });
    return {
      answer: problem(
        503,
        'archive_unavailable',
        'the callback could not be stored safely; retry later',
        request.requestId,
        {},
        { 'retry-after': '30' },
      ),
    };
  }
}

/** Every step after archiving, in order. */
async function judgeArchived(x: Exchange): Promise<ReadyResponse> {
  const tooLarge = checkSize(x);
  if (tooLarge) return tooLarge;
  const credentials = await loadCredentials(x);
  if ('answer' in credentials) return credentials.answer;
  const unsigned = checkSignature(x, credentials.next);
  if (unsigned) return unsigned;
  const wrongType = checkContentType(x);
  if (wrongType) return wrongType;
  const body = parseBody(x);
  if ('answer' in body) return body.answer;

  if (isVerificationRequest(body.next)) {
    const token = (body.next as { verificationToken: unknown }).verificationToken;
    return verify(x, typeof token === 'string' ? token : undefined, credentials.next);
  }
  if (x.request.route === 'status') return recordStatus(x, body.next);
  return storeDelivery(x, body.next);
}

/** Step 2: the size limit. */
function checkSize(x: Exchange): ReadyResponse | undefined {
  const maxBodyBytes = x.deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const size = x.request.body.length;
  return size > maxBodyBytes
    ? refuse(x, 'too_large', `body is ${size} bytes; the limit is ${maxBodyBytes}`, { limitBytes: maxBodyBytes })
    : undefined;
}

/**
 * Step 3: the credentials, refused when the handshake key is the signing key: the handshake
 * answers anyone who asks with an HMAC of their token, so it would sign any body for them.
 */
async function loadCredentials(x: Exchange): Promise<Step<ReadyCredentials>> {
  const { deps, request } = x;
  let credentials: ReadyCredentials;
  try {
    credentials = await deps.credentials.get();
  } catch (error) {
    deps.metrics.count('WebhookErrors', 1, { Step: 'secret' });
    deps.log.error('READY credentials unavailable', { requestId: request.requestId, error: String(error) });
    return {
      answer: problem(
        503,
        'credentials_unavailable',
        'the receiver is not configured yet; retry later',
        request.requestId,
        {},
        { 'retry-after': '60' },
      ),
    };
  }
  if (handshakeKeyIsSigningKey(credentials, deps.verification ?? DEFAULT_VERIFICATION)) {
    deps.metrics.count('WebhookErrors', 1, { Step: 'secret' });
    deps.log.error(
      'READY secret refused: signingKey equals the client secret the verification handshake answers with, so the handshake would sign any body; put the signing key READY issued',
      { requestId: request.requestId },
    );
    return {
      answer: problem(503, 'credentials_misconfigured', 'the receiver is misconfigured; retry later', request.requestId, {}, { 'retry-after': '60' }),
    };
  }
  return { next: credentials };
}

/** Step 4: the signature, required unless the stage opted out (then checked only when a signing key is set). */
function checkSignature(x: Exchange, credentials: ReadyCredentials): ReadyResponse | undefined {
  const { deps, request } = x;
  if (!credentials.signingKey) {
    if (!deps.requireSignature) return undefined;
    deps.metrics.count('WebhookErrors', 1, { Step: 'secret' });
    deps.log.error('signatures are required but the READY secret has no signingKey; callbacks are refused (503, archived) until it is put', {
      requestId: request.requestId,
    });
    return problem(503, 'signing_key_missing', 'the receiver is not configured yet; retry later', request.requestId, {}, { 'retry-after': '60' });
  }
  const verdict = verifySignature(request.body, request.headers[SIGNATURE_HEADER], credentials.signingKey);
  if (verdict === 'missing') return refuse(x, 'unauthenticated', `the ${SIGNATURE_HEADER} header is required`);
  if (verdict === 'mismatch') return refuse(x, 'forbidden', `the ${SIGNATURE_HEADER} header does not match the body`);
  return undefined;
}

/** Step 5: the content type. */
function checkContentType(x: Exchange): ReadyResponse | undefined {
  const contentType = x.request.headers['content-type'];
  if (isJsonContentType(contentType)) return undefined;
  return refuse(x, 'unsupported_media_type', `content type ${preview(contentType ?? '', 100)} is not accepted; send application/json (UTF-8)`);
}

/** Step 6: UTF-8 JSON of a bounded depth. */
function parseBody(x: Exchange): Step<unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(x.request.body);
  } catch {
    return { answer: refuse(x, 'bad_json', 'body is not valid UTF-8') };
  }
  const parsed = parseUntrustedJson(text, MAX_BODY_DEPTH);
  if (!parsed.ok) return { answer: refuse(x, 'bad_json', `body is not valid JSON of at most ${MAX_BODY_DEPTH} levels: ${parsed.reason}`) };
  return { next: parsed.value };
}

function isVerificationRequest(body: unknown): boolean {
  return (
    typeof body === 'object' &&
    body !== null &&
    !Array.isArray(body) &&
    'verificationToken' in body &&
    !looksLikeDelivery(body) &&
    !('status' in body)
  );
}

/** A status callback: the subscription's state. */
async function recordStatus(x: Exchange, body: unknown): Promise<ReadyResponse> {
  const { deps, request } = x;
  const parsed = parseStatusCallback(body);
  if (!parsed.ok) return refuse(x, 'unknown_shape', 'not a status callback this receiver understands', { reasons: parsed.reasons });
  const change = await deps.subscriptions.record(parsed.status);
  deps.metrics.count('StatusCallbacks', 1, { Status: parsed.status.status });
  if (change.outcome === 'changed') {
    deps.metrics.count('SubscriptionStateChanges', 1, { Status: change.state });
    deps.log.warn('subscription state changed', {
      requestId: request.requestId,
      subscriptionId: parsed.status.subscriptionId,
      from: change.previous,
      to: change.state,
      reason: parsed.status.reason,
    });
  }
  if (change.outcome !== 'stale') deps.metrics.record('SubscriptionInactive', change.state === 'active' ? 0 : 1, 'None');
  return json(200, { status: 'recorded', outcome: change.outcome, requestId: request.requestId });
}

/** A data delivery: map, fit the grid, claim, store, count. */
async function storeDelivery(x: Exchange, body: unknown): Promise<ReadyResponse> {
  const mapped = mapDelivery(body, x.request.body, { now: x.now });
  if (!mapped.ok)
    return refuse(x, 'unknown_shape', 'not a delivery this receiver understands; it is archived and can be replayed once mapped', {
      reasons: mapped.reasons,
    });
  const misfits = gridProblems(mapped.readings, x.deps.store.blockTimeZone);
  if (misfits.length > 0)
    return refuse(x, 'unknown_shape', "readings do not fit the store's day blocks (an interval off its day's grid would overlap its neighbours)", {
      reasons: misfits,
    });

  const claimed = await claimDelivery(x, mapped);
  if ('answer' in claimed) return claimed.answer;
  const report = await writeDelivery(x, mapped, claimed.next);
  if ('answer' in report) return report.answer;
  countStored(x, mapped, report.next);
  return json(200, { status: 'stored', deliveryId: mapped.deliveryId, requestId: x.request.requestId, counts: report.next.counts });
}

type Mapped = Extract<MappedDelivery, { ok: true }>;

/**
 * Claims the delivery in the ledger under its id; the record keeps the content hash. A completed
 * id with the same content is a re-send (200 duplicate); with other content it is a reuse of the
 * id that would silently drop readings, refused 409 with DeliveriesConflicting.
 */
async function claimDelivery(x: Exchange, mapped: Mapped): Promise<Step<Claim>> {
  const { deps, request } = x;
  const claimed = await deps.ledger.claim('ready-delivery', mapped.unitId, {
    detail: { archiveKey: x.archivedKey ?? '', readings: mapped.readings.length, contentHash: mapped.contentHash },
  });
  if (claimed.status === 'claimed') return { next: claimed.claim };
  const recorded = claimed.record.detail?.contentHash;
  if (recorded !== undefined && recorded !== mapped.contentHash) {
    deps.metrics.count('DeliveriesConflicting');
    return {
      answer: refuse(
        x,
        'delivery_conflict',
        `delivery ${mapped.deliveryId} was received before with other readings; a delivery id is used once (this one is archived, nothing of it stored)`,
        {
          deliveryId: mapped.deliveryId,
          firstArchivedKey: claimed.record.detail?.archiveKey,
        },
      ),
    };
  }
  if (claimed.status === 'in_progress') {
    return {
      answer: problem(
        503,
        'in_progress',
        'this delivery is being stored by another request; retry later',
        request.requestId,
        { deliveryId: mapped.deliveryId },
        { 'retry-after': '30' },
      ),
    };
  }
  deps.metrics.count('DeliveriesDuplicate');
  deps.log.info('delivery already stored', { requestId: request.requestId, unitId: mapped.unitId });
  return { answer: json(200, { status: 'duplicate', deliveryId: mapped.deliveryId, requestId: request.requestId }) };
}

async function writeDelivery(x: Exchange, mapped: Mapped, claim: Claim): Promise<Step<WriteReport>> {
  const { deps, request } = x;
  try {
    const report = await deps.store.write(mapped.readings);
    await deps.ledger.complete(claim, report.counts, { archiveKey: x.archivedKey ?? '', contentHash: mapped.contentHash });
    return { next: report };
  } catch (error) {
    await deps.ledger.release(claim).catch(() => undefined); // the lock expires anyway
    deps.metrics.count('WebhookErrors', 1, { Step: 'store' });
    deps.log.error('delivery not stored; the sender will retry', { requestId: request.requestId, unitId: mapped.unitId, error: String(error) });
    if (isThrottling(error))
      return { answer: problem(429, 'throttled', 'the store is busy; retry later', request.requestId, {}, { 'retry-after': '10' }) };
    return {
      answer: problem(503, 'store_unavailable', 'the delivery could not be stored; retry later', request.requestId, {}, { 'retry-after': '30' }),
    };
  }
}

function countStored(x: Exchange, mapped: Mapped, report: WriteReport): void {
  const { deps, request, now } = x;
  for (const status of WRITE_STATUSES) deps.metrics.count(READING_STATUS_METRIC[status], report.counts[status]);
  for (const event of mapped.events) deps.metrics.count('MeterEvents', 1, { Reason: event.code });
  for (const outcome of report.outcomes) {
    if (outcome.status === 'conflict')
      deps.log.warn('reading conflict', {
        requestId: request.requestId,
        unitId: mapped.unitId,
        meterId: outcome.reading.meterId,
        reason: outcome.reason,
      });
    if (outcome.status === 'stored' || outcome.status === 'superseded') {
      const end = outcome.reading.kind === 'interval' ? outcome.reading.end : outcome.reading.at;
      deps.metrics.record('IngestLatency', Math.round((now.getTime() - end.getTime()) / 1000), 'Seconds');
    }
  }
  deps.log.info('delivery stored', { requestId: request.requestId, unitId: mapped.unitId, counts: report.counts, events: mapped.events.length });
}

/** The verification handshake: the token's hash under the client secret. */
async function verify(x: Exchange, token: string | undefined, known?: ReadyCredentials): Promise<ReadyResponse> {
  const { deps, request } = x;
  const { metrics, log } = deps;
  metrics.count('VerificationRequests');
  if (token === undefined || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
    metrics.count('VerificationFailures', 1, { Reason: 'missing_token' });
    metrics.count('DeliveriesRejected', 1, { Reason: 'missing_token' });
    return problem(400, 'missing_token', `a verification request carries verificationToken (1-${MAX_TOKEN_LENGTH} characters)`, request.requestId);
  }
  let credentials = known;
  if (!credentials) {
    const loaded = await loadCredentials(x);
    if ('answer' in loaded) {
      metrics.count('VerificationFailures', 1, { Reason: 'secret' });
      return loaded.answer;
    }
    credentials = loaded.next;
  }
  const config = deps.verification ?? DEFAULT_VERIFICATION;
  let answer: string;
  try {
    answer = verificationAnswer(token, credentials.clientSecret, config);
  } catch (error) {
    metrics.count('VerificationFailures', 1, { Reason: 'secret' });
    log.error('verification impossible: client secret unusable with the configured encoding', { requestId: request.requestId, error: String(error) });
    return problem(500, 'verification_misconfigured', 'the receiver cannot compute the verification answer', request.requestId);
  }
  log.info('verification answered', {
    requestId: request.requestId,
    route: request.route,
    algorithm: config.algorithm,
    secretEncoding: config.secretEncoding,
  });
  if (config.answerFormat === 'json') return json(200, { verificationHash: answer });
  return { statusCode: 200, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }, body: answer };
}
