/**
 * S3 as real S3 answers a role without s3:ListBucket: a loopback proxy in front of s3rver that turns
 * a HeadObject 404 into 403 with an empty body, which is what S3 sends for a key that does not exist
 * when the caller may not list the bucket. s3rver and moto enforce no such rule (moto checks the
 * action's IAM policy, then answers 404), so this one rewrite is the stand-in; everything else is
 * s3rver's answer, byte for byte.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import { localS3Client } from '../../local/s3-server.ts';
import type { S3Client } from '@aws-sdk/client-s3';

export interface S3WithoutList {
  endpoint: string;
  client: S3Client;
  /** HEAD requests answered 403 in place of s3rver's 404. */
  forbiddenHeads: string[];
  stop(): Promise<void>;
}

export async function startS3WithoutList(target: string): Promise<S3WithoutList> {
  const forbiddenHeads: string[] = [];
  const upstream = new URL(target);
  const server: Server = createServer((incoming, outgoing) => {
    const forward = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: incoming.method, path: incoming.url, headers: incoming.headers },
      (answer) => {
        if (incoming.method === 'HEAD' && answer.statusCode === 404) {
          answer.resume();
          forbiddenHeads.push(incoming.url ?? '');
          outgoing.writeHead(403, { 'x-amz-request-id': 'no-list-bucket' });
          outgoing.end();
          return;
        }
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(outgoing);
      },
    );
    forward.on('error', (error) => outgoing.destroy(error));
    incoming.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const endpoint = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const client = localS3Client(endpoint);
  return {
    endpoint,
    client,
    forbiddenHeads,
    async stop() {
      client.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
