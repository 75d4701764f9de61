/**
 * A recording HTTP proxy in front of a local AWS stand-in (DynamoDB Local, s3rver, moto): every
 * request a Lambda bundle sends is forwarded unchanged, and the IAM (action, resource ARN,
 * condition keys) it amounts to is derived from the wire — `X-Amz-Target` for the JSON protocols,
 * `Action=` for query protocols, method + path for S3 — and recorded with the caller. The caller is
 * the function whose session token (AWS_SESSION_TOKEN, which the runtime sets per function) signed it.
 *
 * S3 answers HeadObject/GetObject on a missing key with 403, not 404, when the caller may not
 * s3:ListBucket. s3rver enforces no IAM, so the proxy does it: a 404 for an object goes back as
 * 403 AccessDenied unless `mayListBucket` says the caller's policies allow ListBucket.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import type { AwsCall } from './iam.ts';

export interface RecordedCall extends AwsCall {
  /** Function logical id taken from the session token; `unknown` when the token is not ours. */
  caller: string;
  /** Signing name from the SigV4 credential scope (dynamodb, s3, sqs, secretsmanager, monitoring). */
  service: string;
  /** What was asked, for messages: `PUT /bucket/key` or the operation name. */
  request: string;
  /** Status the caller received. */
  status: number;
}

/** The session token prefix that names the calling function. */
export const SESSION_TOKEN_PREFIX = 'meterbridge-artifact-';

export interface RecorderOptions {
  /** Base URL of the stand-in. */
  target: string;
  region: string;
  account: string;
  /** Secrets Manager: the full ARN of a secret a call named by name (the ARN ends in a random suffix). */
  secretArn?(nameOrArn: string): string;
  /**
   * Forward gzip request bodies uncompressed: moto 5.2 gunzips them twice and answers 500 (see
   * local/cloudwatch.ts), while a Lambda's CloudWatch client compresses large PutMetricData bodies.
   * Done here rather than with AWS_DISABLE_REQUEST_COMPRESSION, which the function's environment lacks.
   */
  decompressRequests?: boolean;
  /** Whether the caller's policies allow s3:ListBucket on the bucket (decides 404 vs 403 for a missing object). */
  mayListBucket?(caller: string, bucketArn: string, key: string): boolean;
}

export interface Recorder {
  url: string;
  calls: RecordedCall[];
  /** Requests whose IAM action could not be derived: each one fails the run. */
  unmapped: string[];
  stop(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function jsonBody(body: Buffer, encoding: string | undefined): Record<string, unknown> {
  const text = (encoding === 'gzip' ? gunzipSync(body) : body).toString('utf8');
  return text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
}

/** IAM service prefix by SigV4 signing name. */
const IAM_PREFIX: Record<string, string> = {
  monitoring: 'cloudwatch',
  dynamodb: 'dynamodb',
  s3: 's3',
  sqs: 'sqs',
  secretsmanager: 'secretsmanager',
  events: 'events',
  firehose: 'firehose',
};

type Derived = Array<Omit<AwsCall, 'context'> & { context?: Record<string, string> }>;

/** The IAM calls one request amounts to; throws for anything it does not know (never guesses). */
export function deriveCalls(
  service: string,
  method: string,
  url: URL,
  headers: IncomingMessage['headers'],
  body: Buffer,
  options: RecorderOptions,
): Derived {
  const arnBase = (svc: string) => `arn:aws:${svc}:${options.region}:${options.account}`;
  if (service === 's3') return deriveS3(method, url, headers, arnBase);
  if (service === 'iot') return deriveIot(method, url, headers, body, arnBase);
  const prefix = IAM_PREFIX[service];
  if (prefix === undefined) throw new Error(`no IAM mapping for service ${service}`);
  const target = headers['x-amz-target'];
  let operation: string;
  let input: Record<string, unknown>;
  if (typeof target === 'string') {
    operation = target.slice(target.lastIndexOf('.') + 1);
    input = jsonBody(body, headers['content-encoding'] as string | undefined);
  } else {
    const form = new URLSearchParams(body.toString('utf8'));
    operation = form.get('Action') ?? '';
    input = Object.fromEntries(form);
  }
  if (operation === '') throw new Error(`${service}: request without X-Amz-Target or Action`);
  const action = `${prefix}:${operation}`;
  switch (service) {
    case 'dynamodb': {
      const table = (name: unknown, index?: unknown) => `${arnBase('dynamodb')}:table/${String(name)}${index ? `/index/${String(index)}` : ''}`;
      if (['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem', 'Query', 'Scan', 'DescribeTable'].includes(operation))
        return [{ action, resource: table(input.TableName, input.IndexName) }];
      if (operation === 'BatchWriteItem' || operation === 'BatchGetItem')
        return Object.keys(input.RequestItems as object).map((name) => ({ action, resource: table(name) }));
      if (operation === 'TransactWriteItems') {
        // IAM checks each item's own action; there is no TransactWriteItems action.
        const actions: Record<string, string> = { Put: 'PutItem', Update: 'UpdateItem', Delete: 'DeleteItem', ConditionCheck: 'ConditionCheckItem' };
        return (input.TransactItems as Array<Record<string, { TableName: string }>>).map((item) => {
          const [kind, spec] = Object.entries(item)[0] as [string, { TableName: string }];
          return { action: `dynamodb:${actions[kind]}`, resource: table(spec.TableName) };
        });
      }
      throw new Error(`dynamodb ${operation}: no resource mapping`);
    }
    case 'monitoring':
      // PutMetricData and the read APIs have no resource-level permissions.
      return [{ action, resource: '*', context: typeof input.Namespace === 'string' ? { 'cloudwatch:namespace': input.Namespace } : {} }];
    case 'sqs': {
      const queueUrl = input.QueueUrl;
      if (typeof queueUrl !== 'string') throw new Error(`sqs ${operation}: no QueueUrl`);
      const [account, name] = new URL(queueUrl).pathname.split('/').filter(Boolean).slice(-2);
      return [{ action, resource: `arn:aws:sqs:${options.region}:${account}:${name}` }];
    }
    case 'events': {
      if (operation !== 'PutEvents') throw new Error(`events ${operation}: no resource mapping`);
      // IAM checks PutEvents per entry, on the bus it names (a name or an ARN; the default bus without one).
      const buses = new Set((input.Entries as Array<{ EventBusName?: string }>).map((entry) => entry.EventBusName ?? 'default'));
      return [...buses].map((bus) => ({ action, resource: bus.startsWith('arn:') ? bus : `${arnBase('events')}:event-bus/${bus}` }));
    }
    case 'firehose': {
      const name = input.DeliveryStreamName;
      if (typeof name !== 'string') throw new Error(`firehose ${operation}: no DeliveryStreamName`);
      return [{ action, resource: `${arnBase('firehose')}:deliverystream/${name}` }];
    }
    case 'secretsmanager': {
      const id = input.SecretId;
      if (typeof id !== 'string' || !options.secretArn) throw new Error(`secretsmanager ${operation}: no SecretId`);
      return [{ action, resource: options.secretArn(id) }];
    }
    default:
      throw new Error(`no IAM mapping for service ${service}`);
  }
}

/**
 * IoT's control plane is REST: the operation is the method and path. The certificate actions act
 * on the certificate (`cert/<id>`), the thing-principal ones on the thing; the two list calls made
 * by certificate are mapped to `*` (the policy grants them on `*`: read-only lists).
 */
function deriveIot(method: string, url: URL, headers: IncomingMessage['headers'], body: Buffer, arnBase: (svc: string) => string): Derived {
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const cert = (id: string) => `${arnBase('iot')}:cert/${id}`;
  const thing = (name: string) => `${arnBase('iot')}:thing/${name}`;
  const call = (operation: string, resource: string) => [{ action: `iot:${operation}`, resource }];
  const route = `${method} /${parts[0] ?? ''}${parts.length > 2 ? `/_/${parts[2]}` : parts.length > 1 ? '/_' : ''}`;
  const target = () => String((JSON.parse(body.toString('utf8') || '{}') as { target?: unknown }).target ?? '');
  switch (route) {
    case 'GET /certificates/_':
      return call('DescribeCertificate', cert(parts[1]!));
    case 'PUT /certificates/_':
      return call('UpdateCertificate', cert(parts[1]!));
    case 'GET /principals/_': // /principals/things
      return call('ListPrincipalThings', '*');
    case 'POST /attached-policies/_':
      return call('ListAttachedPolicies', '*');
    case 'PUT /target-policies/_':
      return call('AttachPolicy', target());
    case 'POST /target-policies/_':
      return call('DetachPolicy', target());
    case 'GET /things/_/principals':
      return call('ListThingPrincipals', thing(parts[1]!));
    case 'PUT /things/_/principals':
      return call('AttachThingPrincipal', thing(parts[1]!));
    case 'DELETE /things/_/principals':
      return call('DetachThingPrincipal', thing(parts[1]!));
    default:
      throw new Error(`iot ${method} ${url.pathname}: no IAM mapping (${String(headers['x-amzn-principal'] ?? '')})`);
  }
}

function deriveS3(method: string, url: URL, headers: IncomingMessage['headers'], _arnBase: (svc: string) => string): Derived {
  // Path-style (the SDK uses it for an IP endpoint): /<bucket>/<key...>
  const [bucket, ...keyParts] = url.pathname.slice(1).split('/');
  const key = decodeURIComponent(keyParts.join('/'));
  if (!bucket) throw new Error(`s3 ${method} ${url.pathname}: no bucket`);
  const bucketArn = `arn:aws:s3:::${bucket}`;
  const objectArn = `${bucketArn}/${key}`;
  const q = url.searchParams;
  if (key === '') {
    if (method === 'GET' && q.has('uploads')) return [{ action: 's3:ListBucketMultipartUploads', resource: bucketArn }];
    if (method === 'GET' && q.has('versions'))
      return [{ action: 's3:ListBucketVersions', resource: bucketArn, context: { 's3:prefix': q.get('prefix') ?? '' } }];
    if (method === 'GET' || method === 'HEAD')
      return [{ action: 's3:ListBucket', resource: bucketArn, context: { 's3:prefix': q.get('prefix') ?? '' } }];
    throw new Error(`s3 ${method} on bucket ${bucket}: no mapping`);
  }
  const versioned = q.has('versionId');
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (q.has('uploadId')) return [{ action: 's3:ListMultipartUploadParts', resource: objectArn }];
      if (q.has('tagging')) return [{ action: versioned ? 's3:GetObjectVersionTagging' : 's3:GetObjectTagging', resource: objectArn }];
      return [{ action: versioned ? 's3:GetObjectVersion' : 's3:GetObject', resource: objectArn }];
    case 'PUT': {
      const calls: Derived = [{ action: q.has('tagging') ? 's3:PutObjectTagging' : 's3:PutObject', resource: objectArn }];
      if (headers['x-amz-tagging']) calls.push({ action: 's3:PutObjectTagging', resource: objectArn });
      const copySource = headers['x-amz-copy-source'];
      if (typeof copySource === 'string')
        calls.push({ action: 's3:GetObject', resource: `arn:aws:s3:::${decodeURIComponent(copySource.replace(/^\//, '').split('?')[0] ?? '')}` });
      return calls;
    }
    case 'POST':
      // CreateMultipartUpload (?uploads) and CompleteMultipartUpload (?uploadId) are s3:PutObject.
      if (q.has('uploads') || q.has('uploadId')) return [{ action: 's3:PutObject', resource: objectArn }];
      throw new Error(`s3 POST ${url.pathname}${url.search}: no mapping`);
    case 'DELETE':
      if (q.has('uploadId')) return [{ action: 's3:AbortMultipartUpload', resource: objectArn }];
      return [{ action: versioned ? 's3:DeleteObjectVersion' : 's3:DeleteObject', resource: objectArn }];
    default:
      throw new Error(`s3 ${method}: no mapping`);
  }
}

function callerOf(headers: IncomingMessage['headers']): string {
  const token = headers['x-amz-security-token'];
  return typeof token === 'string' && token.startsWith(SESSION_TOKEN_PREFIX) ? token.slice(SESSION_TOKEN_PREFIX.length) : 'unknown';
}

function signingService(headers: IncomingMessage['headers']): string {
  const scope = /Credential=[^/]+\/\d{8}\/[^/]+\/([^/]+)\/aws4_request/.exec(String(headers.authorization ?? ''));
  return scope?.[1] ?? 'unsigned';
}

export async function startRecorder(options: RecorderOptions): Promise<Recorder> {
  const target = new URL(options.target);
  const calls: RecordedCall[] = [];
  const unmapped: string[] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      let body = await readBody(req);
      const headers = { ...req.headers, host: target.host };
      if (options.decompressRequests && req.headers['content-encoding'] === 'gzip') {
        body = gunzipSync(body);
        delete headers['content-encoding'];
        headers['content-length'] = String(body.length);
      }
      const url = new URL(req.url ?? '/', 'http://recorder');
      const service = signingService(req.headers);
      const caller = callerOf(req.headers);
      let derived: Derived = [];
      try {
        derived = deriveCalls(service, req.method ?? 'GET', url, headers, body, options);
      } catch (error) {
        unmapped.push(
          `${caller}: ${req.method} ${url.pathname}${url.search} (${service}): ${error instanceof Error ? error.message : String(error)}`,
        );
      }
      const upstream = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (answer) => {
        let status = answer.statusCode ?? 502;
        const objectRead = derived.find((call) => call.action === 's3:GetObject' || call.action === 's3:GetObjectVersion');
        if (service === 's3' && status === 404 && objectRead && options.mayListBucket) {
          const bucketArn = objectRead.resource.slice(0, objectRead.resource.indexOf('/'));
          const key = objectRead.resource.slice(bucketArn.length + 1);
          if (!options.mayListBucket(caller, bucketArn, key)) {
            // What real S3 answers without s3:ListBucket: the caller may not learn whether the key exists.
            answer.resume();
            status = 403;
            const xml = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>';
            res.writeHead(403, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(req.method === 'HEAD' ? '' : xml) });
            res.end(req.method === 'HEAD' ? undefined : xml);
            for (const call of derived) calls.push({ context: {}, ...call, caller, service, request: `${req.method} ${url.pathname}`, status });
            return;
          }
        }
        res.writeHead(status, answer.headers);
        answer.pipe(res);
        for (const call of derived)
          calls.push({
            context: {},
            ...call,
            caller,
            service,
            request: `${req.method} ${url.pathname}${target.protocol === 'http:' && req.headers['x-amz-target'] ? ` ${String(req.headers['x-amz-target'])}` : ''}`,
            status,
          });
      });
      upstream.on('error', (error) => {
        res.writeHead(502);
        res.end(String(error));
      });
      upstream.end(body);
    })().catch((error: unknown) => {
      res.writeHead(500);
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    unmapped,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
