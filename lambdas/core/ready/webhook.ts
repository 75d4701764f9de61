/**
 * The READY webhook: one HTTP request (already lifted out of API Gateway's event, see
 * api-gateway.ts) in, one HTTP response out. The Lambda handler and the local HTTP adapter both
 * call this, so what the tests exercise over loopback is what runs behind API Gateway.
 *
 * A callback with a body is archived FIRST, byte for byte, before anything can reject it: a
 * delivery our mapping does not understand, or that is too large, or that arrives with the wrong
 * content type, is still in S3 for an operator to replay. Then, in this order:
 *
 *   size (413) -> signature, if a signing key is configured (401/403) -> content type (415)
 *   -> JSON (400) -> verification handshake | delivery (422 unknown shape) | status (422)
 *   -> ledger claim (a re-sent delivery is answered 200 without touching the store) -> store
 *
 * Every answer is JSON with a `code` a sender's engineer can search for, never a stack trace.
 * A transient failure (archive, store, secret) is a 5xx or 429 with Retry-After, so READY retries.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Ledger } from '../ledger.ts';
import type { Log } from '../../../shared/log.ts';
import type { Metrics } from '../metrics.ts';
import { READING_STATUS_METRIC } from '../metric-catalog.ts';
import type { RawArchive } from '../raw-archive.ts';
import type { ReadingStore, WriteReport } from '../reading-store.ts';
import { WRITE_STATUSES } from '../interval-block.ts';
import { looksLikeDelivery, mapDelivery } from './delivery.ts';
import { DEFAULT_VERIFICATION, MAX_TOKEN_LENGTH, verificationAnswer, type VerificationConfig } from './handshake.ts';
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
  | 'missing_token';

export interface ReadyWebhookDependencies {
  archive: Pick<RawArchive, 'put'>;
  store: Pick<ReadingStore, 'write'>;
  ledger: Pick<Ledger, 'claim' | 'complete' | 'release'>;
  subscriptions: SubscriptionStates;
  credentials: CredentialsSource;
  /** A fresh buffer for this request; flushed before the response is returned. */
  metrics: Metrics;
  log: Log;
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

/** Header carrying `sha256=<Base64 HMAC-SHA256(signingKey, body)>` when a signing key is configured (assumed; see README). */
export const SIGNATURE_HEADER = 'x-ready-signature';

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };

function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): ReadyResponse {
  return { statusCode, headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) };
}

function problem(statusCode: number, code: string, message: string, requestId: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): ReadyResponse {
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
  missing_token: 400,
};

function isThrottling(error: unknown): boolean {
  const name = (error as { name?: string } | undefined)?.name ?? '';
  return ['ProvisionedThroughputExceededException', 'ThrottlingException', 'RequestLimitExceeded', 'SlowDown', 'TooManyRequestsException'].includes(name);
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

function verifySignature(body: Buffer, header: string | undefined, signingKey: string): 'ok' | 'missing' | 'mismatch' {
  if (!header) return 'missing';
  const presented = header.startsWith('sha256=') ? header.slice('sha256='.length) : header;
  const expected = createHmac('sha256', signingKey).update(body).digest();
  const given = Buffer.from(presented, 'base64');
  return given.length === expected.length && timingSafeEqual(given, expected) ? 'ok' : 'mismatch';
}

export async function handleReadyRequest(request: ReadyRequest, deps: ReadyWebhookDependencies): Promise<ReadyResponse> {
  try {
    return await route(request, deps);
  } catch (error) {
    // Nothing unexpected may leak out: no stack, no SDK message. The request id finds the log line.
    deps.log.error('webhook request failed unexpectedly', { requestId: request.requestId, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
    deps.metrics.count('WebhookErrors', 1, { Step: 'unexpected' });
    return problem(500, 'internal_error', 'the request could not be processed; it will succeed when retried if the failure was transient', request.requestId);
  } finally {
    await deps.metrics.flush();
  }
}

async function route(request: ReadyRequest, deps: ReadyWebhookDependencies): Promise<ReadyResponse> {
  const { metrics, log } = deps;
  const { requestId } = request;
  const now = deps.clock?.() ?? new Date();

  const reject = (code: RejectCode, message: string, extra: Record<string, unknown> = {}, archivedKey?: string): ReadyResponse => {
    metrics.count('DeliveriesRejected', 1, { Reason: code });
    log.warn('callback rejected', { requestId, route: request.route, code, reason: message, archivedKey, ...extra });
    return problem(REJECT_STATUS[code], code, message, requestId, extra);
  };

  if (request.route === undefined) return reject('not_found', 'no such callback; READY posts to the data (WebhookUri) and status (StatusUri) URLs');
  const method = request.method.toUpperCase();

  if (method === 'GET') {
    // Verification as a query parameter (the shape most webhook senders use for GET handshakes).
    const token = request.query.verificationToken ?? request.query.validationToken;
    return verify(token, request, deps);
  }
  if (method !== 'POST') return { ...reject('method_not_allowed', `${method} is not accepted; READY callbacks are POST (or GET for verification)`), headers: { ...JSON_HEADERS, allow: 'GET, POST' } };

  metrics.count('DeliveriesReceived', 1, { Step: request.route });

  // 1. Archive first: from here on nothing is lost, whatever the verdict.
  const contentType = request.headers['content-type'];
  let key = `${deps.archivePrefix ?? 'ready'}/${request.route}/${utcPath(now)}/${now.toISOString().replace(/[:.]/g, '-')}-${requestId}.json`;
  try {
    // The archive says where it put the body (a replay answers with the original's key).
    ({ key } = await deps.archive.put(key, request.body, {
      contentType: contentType ?? 'application/octet-stream',
      // What a replay needs to judge the body again exactly as on arrival (see replay.ts).
      metadata: {
        route: request.route,
        requestid: requestId,
        receivedat: now.toISOString(),
        ...(request.sourceIp ? { sourceip: request.sourceIp } : {}),
        ...(contentType ? { contenttype: asciiHeader(contentType) } : {}),
        ...(request.headers[SIGNATURE_HEADER] ? { signature: asciiHeader(request.headers[SIGNATURE_HEADER]) } : {}),
      },
    }));
  } catch (error) {
    metrics.count('WebhookErrors', 1, { Step: 'archive' });
    log.error('could not archive the callback; asking the sender to retry', { requestId, key, error: String(error) });
    return problem(503, 'archive_unavailable', 'the callback could not be stored safely; retry later', requestId, {}, { 'retry-after': '30' });
  }
  const rejectArchived = (code: RejectCode, message: string, extra: Record<string, unknown> = {}) => reject(code, message, extra, key);

  // 2. Size, 3. signature, 4. content type, 5. JSON.
  const maxBodyBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (request.body.length > maxBodyBytes) return rejectArchived('too_large', `body is ${request.body.length} bytes; the limit is ${maxBodyBytes}`, { limitBytes: maxBodyBytes });

  let credentials: ReadyCredentials;
  try {
    credentials = await deps.credentials.get();
  } catch (error) {
    metrics.count('WebhookErrors', 1, { Step: 'secret' });
    log.error('READY credentials unavailable', { requestId, error: String(error) });
    return problem(503, 'credentials_unavailable', 'the receiver is not configured yet; retry later', requestId, {}, { 'retry-after': '60' });
  }
  if (credentials.signingKey) {
    const verdict = verifySignature(request.body, request.headers[SIGNATURE_HEADER], credentials.signingKey);
    if (verdict === 'missing') return rejectArchived('unauthenticated', `the ${SIGNATURE_HEADER} header is required`);
    if (verdict === 'mismatch') return rejectArchived('forbidden', `the ${SIGNATURE_HEADER} header does not match the body`);
  }

  if (!isJsonContentType(contentType)) {
    return rejectArchived('unsupported_media_type', `content type ${JSON.stringify(contentType ?? '')} is not accepted; send application/json (UTF-8)`);
  }
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(request.body));
  } catch (error) {
    return rejectArchived('bad_json', `body is not valid UTF-8 JSON: ${error instanceof Error ? error.message.slice(0, 200) : 'parse error'}`);
  }

  // 6. What kind of callback it is.
  if (typeof body === 'object' && body !== null && !Array.isArray(body) && 'verificationToken' in body && !looksLikeDelivery(body) && !('status' in body)) {
    const token = (body as { verificationToken: unknown }).verificationToken;
    return verify(typeof token === 'string' ? token : undefined, request, deps, credentials);
  }

  if (request.route === 'status') {
    const parsed = parseStatusCallback(body);
    if (!parsed.ok) return rejectArchived('unknown_shape', 'not a status callback this receiver understands', { reasons: parsed.reasons });
    const change = await deps.subscriptions.record(parsed.status);
    metrics.count('StatusCallbacks', 1, { Status: parsed.status.status });
    if (change.outcome === 'changed') {
      metrics.count('SubscriptionStateChanges', 1, { Status: change.state });
      log.warn('subscription state changed', { requestId, subscriptionId: parsed.status.subscriptionId, from: change.previous, to: change.state, reason: parsed.status.reason });
    }
    if (change.outcome !== 'stale') metrics.record('SubscriptionInactive', change.state === 'active' ? 0 : 1, 'None');
    return json(200, { status: 'recorded', outcome: change.outcome, requestId });
  }

  const mapped = mapDelivery(body, request.body, { now });
  if (!mapped.ok) return rejectArchived('unknown_shape', 'not a delivery this receiver understands; it is archived and can be replayed once mapped', { reasons: mapped.reasons });

  // 7. Claim, store, complete.
  const claimed = await deps.ledger.claim('ready-delivery', mapped.unitId, { detail: { archiveKey: key, readings: mapped.readings.length } });
  if (claimed.status === 'completed' || claimed.status === 'failed') {
    metrics.count('DeliveriesDuplicate');
    log.info('delivery already stored', { requestId, unitId: mapped.unitId });
    return json(200, { status: 'duplicate', deliveryId: mapped.deliveryId, requestId });
  }
  if (claimed.status === 'in_progress') {
    return problem(503, 'in_progress', 'this delivery is being stored by another request; retry later', requestId, { deliveryId: mapped.deliveryId }, { 'retry-after': '30' });
  }

  let report: WriteReport;
  try {
    report = await deps.store.write(mapped.readings);
    await deps.ledger.complete(claimed.claim, report.counts, { archiveKey: key });
  } catch (error) {
    await deps.ledger.release(claimed.claim).catch(() => undefined); // the lock expires anyway
    metrics.count('WebhookErrors', 1, { Step: 'store' });
    log.error('delivery not stored; the sender will retry', { requestId, unitId: mapped.unitId, error: String(error) });
    if (isThrottling(error)) return problem(429, 'throttled', 'the store is busy; retry later', requestId, {}, { 'retry-after': '10' });
    return problem(503, 'store_unavailable', 'the delivery could not be stored; retry later', requestId, {}, { 'retry-after': '30' });
  }

  for (const status of WRITE_STATUSES) metrics.count(READING_STATUS_METRIC[status], report.counts[status]);
  for (const event of mapped.events) metrics.count('MeterEvents', 1, { Reason: event.code });
  for (const outcome of report.outcomes) {
    if (outcome.status === 'conflict') log.warn('reading conflict', { requestId, unitId: mapped.unitId, meterId: outcome.reading.meterId, reason: outcome.reason });
    if (outcome.status === 'stored' || outcome.status === 'superseded') {
      const end = outcome.reading.kind === 'interval' ? outcome.reading.end : outcome.reading.at;
      metrics.record('IngestLatency', Math.round((now.getTime() - end.getTime()) / 1000), 'Seconds');
    }
  }
  log.info('delivery stored', { requestId, unitId: mapped.unitId, counts: report.counts, events: mapped.events.length });
  return json(200, { status: 'stored', deliveryId: mapped.deliveryId, requestId, counts: report.counts });
}

async function verify(token: string | undefined, request: ReadyRequest, deps: ReadyWebhookDependencies, known?: ReadyCredentials): Promise<ReadyResponse> {
  const { metrics, log } = deps;
  metrics.count('VerificationRequests');
  if (token === undefined || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
    metrics.count('VerificationFailures', 1, { Reason: 'missing_token' });
    metrics.count('DeliveriesRejected', 1, { Reason: 'missing_token' });
    return problem(400, 'missing_token', `a verification request carries verificationToken (1-${MAX_TOKEN_LENGTH} characters)`, request.requestId);
  }
  let credentials = known;
  try {
    credentials ??= await deps.credentials.get();
  } catch (error) {
    metrics.count('VerificationFailures', 1, { Reason: 'secret' });
    log.error('verification impossible: READY credentials unavailable', { requestId: request.requestId, error: String(error) });
    return problem(503, 'credentials_unavailable', 'the receiver is not configured yet; retry later', request.requestId, {}, { 'retry-after': '60' });
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
  log.info('verification answered', { requestId: request.requestId, route: request.route, algorithm: config.algorithm, secretEncoding: config.secretEncoding });
  if (config.answerFormat === 'json') return json(200, { verificationHash: answer });
  return { statusCode: 200, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }, body: answer };
}
