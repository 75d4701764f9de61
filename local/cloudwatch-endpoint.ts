/**
 * A loopback HTTP endpoint that speaks enough of CloudWatch's wire protocol (awsJson1_0,
 * `X-Amz-Target: GraniteServiceVersion20100801.PutMetricData`) for the real SDK client to talk
 * to it, and records what it decoded. CloudWatch has no local stand-in; this is the recording
 * endpoint the tests assert against. It can also be told to fail or to hang.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';

export interface RecordedRequest {
  target: string;
  contentEncoding?: string;
  body: {
    Namespace: string;
    MetricData: Array<{
      MetricName: string;
      Unit?: string;
      Value?: number;
      Values?: number[];
      Counts?: number[];
      Timestamp?: number | string;
      Dimensions?: Array<{ Name: string; Value: string }>;
    }>;
  };
}

export interface CloudWatchEndpoint {
  url: string;
  requests: RecordedRequest[];
  /** What the next requests get: a normal answer, a 500, or no answer at all. */
  mode: 'ok' | 'fail' | 'hang';
  client(): CloudWatchClient;
  close(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function startCloudWatchEndpoint(options: { port?: number } = {}): Promise<CloudWatchEndpoint> {
  const endpoint: Partial<CloudWatchEndpoint> & { requests: RecordedRequest[]; mode: CloudWatchEndpoint['mode'] } = { requests: [], mode: 'ok' };
  const server: Server = createServer(async (request, response) => {
    const raw = await readBody(request);
    const encoding = request.headers['content-encoding'];
    const text = (encoding === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
    const target = String(request.headers['x-amz-target'] ?? '');
    if (endpoint.mode === 'hang') return; // never answer: the client must time out
    endpoint.requests.push({ target, contentEncoding: encoding, body: JSON.parse(text) });
    if (endpoint.mode === 'fail') {
      response.writeHead(500, { 'content-type': 'application/x-amz-json-1.0' });
      response.end(JSON.stringify({ __type: 'InternalServiceFault', message: 'injected failure' }));
      return;
    }
    response.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
    response.end('{}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const clients: CloudWatchClient[] = [];
  return Object.assign(endpoint, {
    url,
    client() {
      const client = new CloudWatchClient({
        endpoint: url,
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        maxAttempts: 1,
      });
      clients.push(client);
      return client;
    },
    async close() {
      for (const client of clients) client.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  }) as CloudWatchEndpoint;
}
