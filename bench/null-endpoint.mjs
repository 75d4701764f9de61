// A null AWS endpoint on loopback for the floor bench (bench/floor.bench.ts): answers every call
// with the least a caller needs to go on as against a warm, empty account, so what a process
// spends per request is its own work (building, signing, sending, parsing) and not a stand-in's.
// Runs in its own process, so its CPU is not counted against the bundle or the floor.
//
// - DynamoDB (JSON 1.0): `{}` (no item, no old image), except an UpdateItem asking for ALL_NEW
//   (the meter catalog's) gets its own values back, so the catalog caches the entry as it would.
// - Secrets Manager: GetSecretValue answers NULL_ENDPOINT_SECRET.
// - S3: PUT remembers the size, HEAD answers it (the archive checks what it stored).
// - Anything else (CloudWatch PutMetricData): 200 with an empty JSON or XML body.
// Plain JavaScript: run by plain node, no loader. Prints the port on stdout.
import { createServer } from 'node:http';

const secret = process.env.NULL_ENDPOINT_SECRET ?? '{}';
const sizes = new Map();

function dynamodb(target, body) {
  if (!target.endsWith('.UpdateItem') || !body.includes('"ALL_NEW"')) return '{}';
  const request = JSON.parse(body);
  const values = request.ExpressionAttributeValues ?? {};
  const attributes = {};
  for (const name of ['m', 'c', 'f', 'l', 'u', 'd', 'src', 'ua']) if (values[`:${name}`]) attributes[name] = values[`:${name}`];
  return JSON.stringify({ Attributes: attributes });
}

const server = createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const body = Buffer.concat(chunks);
    const target = request.headers['x-amz-target'];
    const path = (request.url ?? '/').split('?')[0];
    if (typeof target === 'string') {
      let text = '{}';
      if (target.startsWith('DynamoDB_')) text = dynamodb(target, body.toString('utf8'));
      else if (target === 'secretsmanager.GetSecretValue')
        text = JSON.stringify({ ARN: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:bench', Name: 'bench', SecretString: secret });
      response.writeHead(200, { 'content-type': 'application/x-amz-json-1.0', 'content-length': Buffer.byteLength(text) });
      response.end(text);
    } else if (request.method === 'PUT') {
      sizes.set(path, body.length);
      response.writeHead(200, { etag: '"bench"', 'content-length': 0 });
      response.end();
    } else if (request.method === 'HEAD') {
      const size = sizes.get(path);
      response.writeHead(size === undefined ? 404 : 200, { 'content-length': size ?? 0, etag: '"bench"' });
      response.end();
    } else {
      const text = '<?xml version="1.0"?><Response><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></Response>';
      response.writeHead(200, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(text) });
      response.end(text);
    }
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
