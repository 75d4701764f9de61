import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DynamoDBClient, UpdateItemCommand, ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { QUIET_SDK_LOGGER, wiringFromEnv } from '../../lambdas/core/wiring.ts';
import { silentLog } from '../../shared/log.ts';

/**
 * The SDK's logger middleware runs the command's input (and output) filter, a walk of every
 * attribute value of the request, whenever the client's logger has `info` (after a success) or
 * `error` (after a failure). The filter is counted where the middleware finds it, on the context.
 */
function countFilterRuns(client: DynamoDBClient): { runs: number } {
  const counter = { runs: 0 };
  client.middlewareStack.add(
    (next, context) => (args) => {
      const filter = context.inputFilterSensitiveLog as ((input: unknown) => unknown) | undefined;
      if (filter) {
        context.inputFilterSensitiveLog = (input: unknown) => {
          counter.runs += 1;
          return filter(input);
        };
      }
      return next(args);
    },
    { step: 'initialize', priority: 'high', name: 'countFilterRuns' },
  );
  return counter;
}

/** A DynamoDB-shaped loopback endpoint: `{}` for a write to table "ok", a failed condition for any other. */
let server: Server;
let endpoint: string;

const update = (table: string) =>
  new UpdateItemCommand({
    TableName: table,
    Key: { pk: { S: 'meter-1#energy' }, sk: { S: '2026-11-22' } },
    UpdateExpression: 'SET s0 = :s0',
    ExpressionAttributeValues: { ':s0': { L: [{ N: '1.5' }, { N: '0' }, { S: 'abcdef' }] } },
  });

async function sendBoth(client: DynamoDBClient): Promise<void> {
  await client.send(update('ok'));
  await assert.rejects(client.send(update('refuse')), ConditionalCheckFailedException);
}

describe('SDK clients of the wiring', () => {
  before(async () => {
    server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        const failed = (JSON.parse(body) as { TableName: string }).TableName !== 'ok';
        response.writeHead(failed ? 400 : 200, { 'content-type': 'application/x-amz-json-1.0' });
        response.end(
          failed
            ? JSON.stringify({
                __type: 'com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException',
                message: 'The conditional request failed',
              })
            : '{}',
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  const clientOptions = () => ({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });

  it('the default client runs the log filter on every request, succeeded or failed (what the quiet logger saves)', async () => {
    const client = new DynamoDBClient(clientOptions());
    const counter = countFilterRuns(client);
    await sendBoth(client);
    assert.equal(counter.runs, 2);
  });

  it('a client with QUIET_SDK_LOGGER never runs it, and still reports failures to the caller', async () => {
    const client = new DynamoDBClient({ ...clientOptions(), logger: QUIET_SDK_LOGGER });
    const counter = countFilterRuns(client);
    await sendBoth(client);
    assert.equal(counter.runs, 0);
  });

  it("a Lambda entry's wiring builds its DynamoDB client with QUIET_SDK_LOGGER", () => {
    process.env.LEDGER_TABLE = 'ledger';
    const wiring = wiringFromEnv('iot', silentLog, { stores: false });
    assert.equal(wiring.dynamodb.config.logger, QUIET_SDK_LOGGER);
  });
});
