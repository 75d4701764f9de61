/**
 * A loopback stand-in for Kamstrup's side of the subscription flow: an Azure-AD-style token
 * endpoint (client credentials) and the assumed READY subscription API. It records every request
 * and can be told to answer the next requests with 429/503 (and a Retry-After).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';

export interface StubRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface ReadyApiStub {
  url: string;
  tokenUrl: string;
  requests: StubRequest[];
  /** Tokens issued, in order. */
  issued: string[];
  /** expires_in of the next tokens. */
  expiresIn: number;
  /** Answers queued for the next requests to `path` (token or API), before normal handling. */
  failNext(path: 'token' | 'api', status: number, retryAfter?: string, times?: number): void;
  /** Subscriptions the API holds. */
  subscriptions: Map<string, Record<string, unknown>>;
  clientId: string;
  clientSecret: string;
  /** Makes the API refuse a token it issued (revoked before its expiry). */
  revoke(token: string): void;
  close(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startReadyApiStub(options: { tenantId?: string; clientId?: string; clientSecret?: string } = {}): Promise<ReadyApiStub> {
  const tenant = options.tenantId ?? 'tenant-1';
  const failures: Record<'token' | 'api', Array<{ status: number; retryAfter?: string }>> = { token: [], api: [] };
  const stub = {
    requests: [] as StubRequest[],
    issued: [] as string[],
    expiresIn: 3600,
    subscriptions: new Map<string, Record<string, unknown>>(),
    clientId: options.clientId ?? 'client-1',
    clientSecret: options.clientSecret ?? 's3cr3t/with+chars=',
  };
  const valid = new Set<string>();
  const server: Server = createServer(async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://stub');
    const body = await readBody(request);
    stub.requests.push({ method: request.method ?? '', path: url.pathname, headers: request.headers, body });
    const send = (status: number, json?: unknown, headers: Record<string, string> = {}) => {
      response.writeHead(status, { ...(json !== undefined ? { 'content-type': 'application/json' } : {}), ...headers });
      response.end(json !== undefined ? JSON.stringify(json) : undefined);
    };
    const kind = url.pathname === `/${tenant}/oauth2/v2.0/token` ? 'token' : 'api';
    const failure = failures[kind].shift();
    if (failure) return send(failure.status, { error: 'throttled' }, failure.retryAfter ? { 'retry-after': failure.retryAfter } : {});

    if (kind === 'token') {
      const form = new URLSearchParams(body);
      if (request.method !== 'POST' || form.get('grant_type') !== 'client_credentials') return send(400, { error: 'unsupported_grant_type' });
      if (form.get('client_id') !== stub.clientId || form.get('client_secret') !== stub.clientSecret) {
        return send(401, { error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.\nTrace ID: x' });
      }
      const token = `tok-${stub.issued.length + 1}-${randomUUID().slice(0, 6)}`;
      stub.issued.push(token);
      valid.add(token);
      return send(200, { token_type: 'Bearer', expires_in: stub.expiresIn, access_token: token });
    }

    const auth = request.headers.authorization ?? '';
    if (!auth.startsWith('Bearer ') || !valid.has(auth.slice(7))) return send(401, { error: 'invalid_token' });
    const base = '/api/v1/webhooks/subscriptions';
    if (url.pathname === base && request.method === 'POST') {
      const input = JSON.parse(body) as Record<string, unknown>;
      const id = `sub-${stub.subscriptions.size + 1}`;
      const subscription = { subscriptionId: id, ...input, status: 'Pending' };
      stub.subscriptions.set(id, subscription);
      return send(201, subscription);
    }
    if (url.pathname === base && request.method === 'GET') return send(200, [...stub.subscriptions.values()]);
    if (url.pathname.startsWith(`${base}/`) && request.method === 'DELETE') {
      const id = decodeURIComponent(url.pathname.slice(base.length + 1));
      if (!stub.subscriptions.delete(id)) return send(404, { error: 'not found' });
      return send(204);
    }
    return send(404, { error: 'no such route' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return Object.assign(stub, {
    url,
    tokenUrl: `${url}/${tenant}/oauth2/v2.0/token`,
    failNext(path: 'token' | 'api', status: number, retryAfter?: string, times = 1) {
      for (let i = 0; i < times; i += 1) failures[path].push({ status, ...(retryAfter !== undefined ? { retryAfter } : {}) });
    },
    revoke(token: string) {
      valid.delete(token);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}
