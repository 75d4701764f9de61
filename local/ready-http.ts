/**
 * Local stand-in for API Gateway in front of the READY webhook: a real HTTP server on loopback
 * that turns each request into an API Gateway REST (v1) proxy event, runs the same function the
 * Lambda runs (handleApiGatewayEvent), and writes its result back as the HTTP response. Used by
 * the tests and by local mode (`npm start`).
 *
 * Also a simulated READY sender: `sendReadyDeliveries` posts deliveries in the assumed READY
 * shape, and `readyHandshake` performs the verification handshake the way we assume READY does
 * and checks the answer.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import type { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { consoleLog, type Log } from '../shared/log.ts';
import { RawArchive } from '../lambdas/core/raw-archive.ts';
import { handleApiGatewayEvent, READY_PATHS } from '../lambdas/core/ready/api-gateway.ts';
import { DEFAULT_VERIFICATION, verificationAnswer, type VerificationConfig } from '../lambdas/core/ready/handshake.ts';
import { staticCredentials, type ReadyCredentials } from '../lambdas/core/ready/secret.ts';
import { DynamoSubscriptionStates } from '../lambdas/core/ready/status.ts';
import { wireSource } from '../lambdas/core/wiring.ts';
import type { ReadyWebhookDependencies } from '../lambdas/core/ready/webhook.ts';

/** API Gateway REST's own payload limit: larger requests never reach the function. */
export const API_GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024;

export interface ReadyHttpOptions {
  /** 0 = any free port. @default 0 */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** Stage name used as the first path segment, like an execute-api URL. @default 'local' */
  stage?: string;
  /**
   * The webhook's dependencies for one request. A function because Metrics is a per-request
   * buffer (flushed at the end of each request), exactly as the Lambda handler builds it.
   */
  handlerDeps: () => ReadyWebhookDependencies;
}

export interface ReadyHttp {
  /** Base URL including the stage, e.g. http://127.0.0.1:PORT/local */
  url: string;
  /** The data callback URL (WebhookUri). */
  dataUrl: string;
  /** The status callback URL (StatusUri). */
  statusUrl: string;
  stop(): Promise<void>;
}

async function readBody(request: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Builds the proxy event API Gateway would hand the function (binaryMediaTypes `*\/*`: body base64). */
export function toApiGatewayEvent(input: {
  method: string;
  path: string;
  stage: string;
  headers: Record<string, string>;
  query: URLSearchParams;
  body: Buffer;
  sourceIp: string;
}): APIGatewayProxyEvent {
  const resource = input.path.startsWith(`/${input.stage}/`) ? input.path.slice(input.stage.length + 1) : input.path;
  const query: Record<string, string> = {};
  const multiQuery: Record<string, string[]> = {};
  for (const [name, value] of input.query) {
    query[name] = value;
    (multiQuery[name] ??= []).push(value);
  }
  const multiHeaders: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(input.headers)) multiHeaders[name] = [value];
  const requestId = randomUUID();
  const known = Object.values(READY_PATHS).includes(resource);
  return {
    resource: known ? resource : '/{proxy+}',
    path: resource,
    httpMethod: input.method,
    headers: input.headers,
    multiValueHeaders: multiHeaders,
    queryStringParameters: Object.keys(query).length ? query : null,
    multiValueQueryStringParameters: Object.keys(multiQuery).length ? multiQuery : null,
    pathParameters: null,
    stageVariables: null,
    body: input.body.length ? input.body.toString('base64') : null,
    isBase64Encoded: input.body.length > 0,
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      authorizer: undefined,
      protocol: 'HTTP/1.1',
      httpMethod: input.method,
      path: input.path,
      stage: input.stage,
      requestId,
      requestTimeEpoch: Date.now(),
      resourceId: 'local',
      resourcePath: resource,
      identity: {
        sourceIp: input.sourceIp,
        accessKey: null,
        accountId: null,
        apiKey: null,
        apiKeyId: null,
        caller: null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        user: null,
        userAgent: input.headers['user-agent'] ?? null,
        userArn: null,
      },
    },
  };
}

export interface LocalReadyDependencyOptions {
  dynamodb: DynamoDBClient;
  tables: { readings: string; ledger: string };
  /** @default 'UTC' */
  blockTimeZone?: string;
  s3: S3Client;
  archiveBucket: string;
  cloudwatch: CloudWatchClient;
  /** What the Secrets Manager secret would hold. @default { clientSecret: LOCAL_READY_CLIENT_SECRET } */
  credentials?: ReadyCredentials;
  verification?: VerificationConfig;
  maxBodyBytes?: number;
  /**
   * Refuse unsigned callbacks. Off by default here: local mode listens on loopback only and its
   * simulated sender does not sign. The deployed function requires signatures unless the stage
   * opts out (lib/ready-settings.ts). @default false
   */
  requireSignature?: boolean;
  /** @default 'local' */
  stage?: string;
  /** @default consoleLog */
  log?: Log;
}

/** Client secret local mode uses when none is given (the simulated sender needs it for the handshake). */
export const LOCAL_READY_CLIENT_SECRET = 'bG9jYWwtcmVhZHktc2VjcmV0';

/**
 * The webhook's dependencies wired the way lambdas/ready-webhook.ts wires them, on whatever
 * clients are given (DynamoDB Local, s3rver, a local CloudWatch endpoint): pass the result as
 * `handlerDeps` to startReadyHttp.
 */
export function localReadyDependencies(options: LocalReadyDependencyOptions): () => ReadyWebhookDependencies {
  const log = options.log ?? consoleLog;
  const wiring = wireSource({
    source: 'ready',
    dynamodb: options.dynamodb,
    cloudwatch: options.cloudwatch,
    tables: options.tables,
    blockTimeZone: options.blockTimeZone ?? 'UTC',
    stage: options.stage ?? 'local',
    log,
  });
  const store = wiring.store();
  const ledger = wiring.ledger;
  const subscriptions = new DynamoSubscriptionStates({ client: options.dynamodb, tableName: options.tables.ledger });
  const archive = new RawArchive({ client: options.s3, bucket: options.archiveBucket });
  const credentials = staticCredentials(options.credentials ?? { clientSecret: LOCAL_READY_CLIENT_SECRET });
  return () => ({
    archive,
    store,
    ledger,
    subscriptions,
    credentials,
    metrics: wiring.metrics(),
    log,
    requireSignature: options.requireSignature ?? false,
    ...(options.verification ? { verification: options.verification } : {}),
    ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}),
  });
}

export async function startReadyHttp(options: ReadyHttpOptions): Promise<ReadyHttp> {
  const served = await serveApiGatewayHttp({
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.host !== undefined ? { host: options.host } : {}),
    ...(options.stage !== undefined ? { stage: options.stage } : {}),
    name: 'ready-http',
    failure: 'the webhook function failed',
    handle: (event) => handleApiGatewayEvent(event, options.handlerDeps()),
  });
  return { url: served.url, dataUrl: `${served.url}${READY_PATHS.data}`, statusUrl: `${served.url}${READY_PATHS.status}`, stop: served.stop };
}

/**
 * A loopback HTTP server standing in for API Gateway REST in front of one Lambda function: each
 * request becomes a proxy event (toApiGatewayEvent), the function's result the HTTP response.
 * Shared by the READY webhook and the query API (local/query-http.ts).
 */
export async function serveApiGatewayHttp(options: {
  port?: number;
  host?: string;
  stage?: string;
  /** Prefix of the stderr line when the handler throws. */
  name: string;
  /** Message of the 502 answer when the handler throws. */
  failure: string;
  handle(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult>;
  /**
   * Answers requests outside the stage that are not API Gateway's (local mode's page beside the
   * query API); resolves false to leave the request to the function, as API Gateway would.
   */
  serveBeside?(request: IncomingMessage, response: ServerResponse, url: URL): Promise<boolean>;
}): Promise<{ url: string; stop(): Promise<void> }> {
  const stage = options.stage ?? 'local';
  const host = options.host ?? '127.0.0.1';
  const server: Server = createServer(async (request, response) => {
    try {
      const body = await readBody(request, API_GATEWAY_MAX_BODY_BYTES);
      if (body === undefined) {
        // What API Gateway's REQUEST_TOO_LARGE gateway response (configured JSON in lib/ready-ingestion.ts) says.
        response.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
        response.end(JSON.stringify({ error: { code: 'too_large', message: "request body exceeds API Gateway's 10 MB limit" } }));
        return;
      }
      const url = new URL(request.url ?? '/', 'http://local');
      if (!url.pathname.startsWith(`/${stage}/`) && (await options.serveBeside?.(request, response, url))) return;
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(request.headers))
        if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
      const event = toApiGatewayEvent({
        method: request.method ?? 'GET',
        path: url.pathname,
        stage,
        headers,
        query: url.searchParams,
        body,
        sourceIp: request.socket.remoteAddress ?? '127.0.0.1',
      });
      const result = await options.handle(event);
      const outHeaders: Record<string, string> = {};
      for (const [name, value] of Object.entries(result.headers ?? {})) outHeaders[name] = String(value);
      response.writeHead(result.statusCode, outHeaders);
      response.end(result.isBase64Encoded ? Buffer.from(result.body, 'base64') : result.body);
    } catch (error) {
      // API Gateway's answer when the integration fails; never a stack trace.
      response.writeHead(502, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: 'bad_gateway', message: options.failure } }));
      process.stderr.write(`${options.name}: handler failed: ${String(error)}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://${host}:${port}/${stage}`,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// --- simulated READY sender -------------------------------------------------------------------

export interface SimulatedMeter {
  meterId: string;
  /** @default 'water' */
  utility?: 'water' | 'heat' | 'cooling' | 'electricity';
}

export interface SendReadyOptions {
  meters: SimulatedMeter[];
  /** @default 'sub-local' */
  subscriptionId?: string;
  /** Deliveries to send, each covering the hour after the previous one. @default 1 */
  deliveries?: number;
  /** Start of the first delivery's hour. @default the start of the previous full UTC hour */
  start?: Date;
  /** Interval values per delivery hour (15-minute values when 4). @default 4 */
  intervalsPerHour?: number;
  /** Also raise these alarm codes on the first meter in the first delivery. */
  events?: Array<'leak' | 'burst' | 'tamper' | 'dry'>;
  /** Send each delivery this many times (a re-delivering sender). @default 1 */
  repeat?: number;
  /** Signs bodies as assumed (x-ready-signature) when the receiver has a signing key. */
  signingKey?: string;
}

export interface SentDelivery {
  deliveryId: string;
  status: number;
  body: unknown;
  readings: number;
}

const REGISTER_OF: Record<NonNullable<SimulatedMeter['utility']>, { register: string; unit: string }> = {
  water: { register: 'volume', unit: 'm3' },
  heat: { register: 'energy', unit: 'kWh' },
  cooling: { register: 'energy', unit: 'kWh' },
  electricity: { register: 'energyImport', unit: 'kWh' },
};

/** Builds one delivery body in the assumed READY shape (deterministic for a given input). */
export function buildReadyDelivery(options: {
  deliveryId: string;
  subscriptionId: string;
  meters: SimulatedMeter[];
  start: Date;
  intervalsPerHour: number;
  events?: string[];
}): { body: Record<string, unknown>; readings: number } {
  const intervalSeconds = 3600 / options.intervalsPerHour;
  let readings = 0;
  const meters = options.meters.map((meter, index) => {
    const utility = meter.utility ?? 'water';
    const { register, unit } = REGISTER_OF[utility];
    const hourIndex = Math.floor(options.start.getTime() / 3_600_000);
    const values = Array.from(
      { length: options.intervalsPerHour },
      (_, i) => Math.round((0.01 + ((index * 7 + i + hourIndex) % 13) / 1000) * 1e6) / 1e6,
    );
    const end = new Date(options.start.getTime() + 3_600_000);
    const events = index === 0 && options.events ? options.events.map((code) => ({ code, active: true, at: end.toISOString() })) : undefined;
    readings += values.length + 1 + (events?.length ?? 0);
    return {
      meterId: meter.meterId,
      utility,
      registers: [{ register, value: Math.round((1000 + hourIndex / 100 + index) * 1000) / 1000, unit, readAt: end.toISOString() }],
      intervals: [{ register, start: options.start.toISOString(), intervalSeconds, unit, values }],
      ...(events ? { events } : {}),
    };
  });
  return {
    body: {
      deliveryId: options.deliveryId,
      subscriptionId: options.subscriptionId,
      resource: 'meterReadings',
      sentAt: new Date(options.start.getTime() + 3_600_000).toISOString(),
      meters,
    },
    readings,
  };
}

async function post(url: string, body: string, signingKey?: string): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (signingKey) {
    const { createHmac } = await import('node:crypto');
    headers['x-ready-signature'] = `sha256=${createHmac('sha256', signingKey).update(body).digest('base64')}`;
  }
  const response = await fetch(url, { method: 'POST', headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed };
}

/**
 * Posts deliveries to a data URL (WebhookUri) the way we assume READY does.
 * @param url the data callback URL, e.g. `startReadyHttp(...).dataUrl`
 */
export async function sendReadyDeliveries(url: string, options: SendReadyOptions): Promise<SentDelivery[]> {
  const subscriptionId = options.subscriptionId ?? 'sub-local';
  const first = options.start ?? new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000);
  const sent: SentDelivery[] = [];
  for (let d = 0; d < (options.deliveries ?? 1); d += 1) {
    const start = new Date(first.getTime() + d * 3_600_000);
    const deliveryId = `${subscriptionId}-${start.toISOString().replace(/[:.]/g, '')}`;
    const { body, readings } = buildReadyDelivery({
      deliveryId,
      subscriptionId,
      meters: options.meters,
      start,
      intervalsPerHour: options.intervalsPerHour ?? 4,
      ...(d === 0 && options.events ? { events: options.events } : {}),
    });
    const text = JSON.stringify(body);
    for (let r = 0; r < (options.repeat ?? 1); r += 1) {
      const response = await post(url, text, options.signingKey);
      sent.push({ deliveryId, status: response.status, body: response.body, readings });
    }
  }
  return sent;
}

/** Posts a status callback (assumed shape) to a status URL (StatusUri). */
export async function sendReadyStatus(
  url: string,
  status: { subscriptionId: string; status: string; changedAt?: Date; reason?: string },
  signingKey?: string,
): Promise<{ status: number; body: unknown }> {
  const body = JSON.stringify({
    subscriptionId: status.subscriptionId,
    status: status.status,
    changedAt: (status.changedAt ?? new Date()).toISOString(),
    ...(status.reason ? { reason: status.reason } : {}),
  });
  return post(url, body, signingKey);
}

/**
 * Does the verification handshake as READY is assumed to: GET `<url>?verificationToken=<token>`,
 * then compares the answer with what the client secret gives. Resolves with what was seen.
 */
export async function readyHandshake(
  url: string,
  options: { clientSecret: string; token?: string; verification?: VerificationConfig },
): Promise<{ ok: boolean; status: number; answer: string; expected: string }> {
  const token = options.token ?? randomUUID();
  const config = options.verification ?? DEFAULT_VERIFICATION;
  const response = await fetch(`${url}?verificationToken=${encodeURIComponent(token)}`);
  const text = await response.text();
  const answer = config.answerFormat === 'json' ? String((JSON.parse(text) as { verificationHash?: unknown }).verificationHash) : text;
  const expected = verificationAnswer(token, options.clientSecret, config);
  return { ok: response.status === 200 && answer === expected, status: response.status, answer, expected };
}
