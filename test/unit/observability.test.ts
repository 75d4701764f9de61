import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Context } from 'aws-lambda';
import { wireSource } from '../../lambdas/core/wiring.ts';
import { createLogger, lambdaHandler, loggedHandler } from '../../lambdas/observability.ts';
import { startLocalCloudWatch, type LocalCloudWatch } from '../support/cloudwatch.ts';

let cloudwatch: LocalCloudWatch;
before(async () => {
  cloudwatch = await startLocalCloudWatch();
});
after(async () => {
  await cloudwatch?.stop();
});

function lambdaContext(requestId: string): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'meterbridge-test-ingest',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:meterbridge-test-ingest',
    memoryLimitInMB: '256',
    awsRequestId: requestId,
    logGroupName: '/aws/lambda/meterbridge-test-ingest',
    logStreamName: 'stream',
    getRemainingTimeInMillis: () => 30_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** The JSON log lines written to stdout while `run` runs (Powertools writes there). */
async function stdoutLines<T>(run: () => Promise<T>): Promise<{ lines: Record<string, unknown>[]; result: T | Error }> {
  const written: string[] = [];
  const original = process.stdout.write.bind(process.stdout);
  // Only JSON log lines are taken: the test runner reports results through the same stdout, and
  // swallowing its frames would hide this file's other tests (and their failures).
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (!text.startsWith('{')) return (original as (...args: unknown[]) => boolean)(chunk, ...rest);
    written.push(text);
    return true;
  }) as typeof process.stdout.write;
  let result: T | Error;
  try {
    result = await run();
  } catch (error) {
    result = error as Error;
  } finally {
    process.stdout.write = original;
  }
  const lines = written
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { lines, result };
}

describe('Lambda observability middleware', () => {
  const { logger, log } = createLogger('observability-test');
  const wiring = () =>
    wireSource({
      source: 'iot',
      dynamodb: new DynamoDBClient({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } }),
      cloudwatch: cloudwatch.client(),
      tables: { ledger: 'unused' },
      stage: 'obs-test',
      log,
    });
  /** What CloudWatch (moto) stored for `name` on this test's stage: the sum and how many data points. */
  const stored = async (name: string) => {
    const totals = (await cloudwatch.totals()).filter((t) => t.name === name && t.dimensions.Stage === 'obs-test');
    return { sum: totals.reduce((total, t) => total + t.sum, 0), samples: totals.reduce((total, t) => total + t.sampleCount, 0) };
  };

  it('puts the Lambda context on every log line of the invocation and flushes its metrics once at the end', async () => {
    const handler = lambdaHandler<{ n: number }, string>(logger, wiring(), async (event, { metrics }) => {
      log.info('working', { n: event.n });
      metrics.count('MessagesReceived', event.n);
      assert.equal((await stored('MessagesReceived')).samples, 0, 'nothing is sent before the handler returns');
      return 'done';
    });
    const { lines, result } = await stdoutLines(() => handler({ n: 3 }, lambdaContext('req-1')));
    assert.equal(result, 'done');
    const working = lines.find((line) => line.message === 'working');
    assert.ok(working, 'the handler logged');
    assert.equal(working.function_request_id, 'req-1');
    assert.equal(working.function_name, 'meterbridge-test-ingest');
    assert.deepEqual(await stored('MessagesReceived'), { sum: 3, samples: 1 });
  });

  it('flushes the metrics of an invocation that throws, and lets the error through', async () => {
    const handler = lambdaHandler<unknown, string>(logger, wiring(), async (_event, { metrics }) => {
      metrics.count('MessagesRejected', 2, { Reason: 'invalid' });
      throw new Error('boom');
    });
    const { result } = await stdoutLines(() => handler({}, lambdaContext('req-2')));
    assert.ok(result instanceof Error && result.message === 'boom');
    assert.deepEqual(await stored('MessagesRejected'), { sum: 2, samples: 1 });
  });

  it('gives each invocation a buffer of its own', async () => {
    const seen = new Set<unknown>();
    const handler = lambdaHandler<unknown, number>(logger, wiring(), async (_event, { metrics }) => {
      seen.add(metrics);
      metrics.count('SequenceGaps', 1);
      return seen.size;
    });
    await stdoutLines(() => handler({}, lambdaContext('req-3')));
    await stdoutLines(() => handler({}, lambdaContext('req-4')));
    assert.equal(seen.size, 2);
    assert.deepEqual(await stored('SequenceGaps'), { sum: 2, samples: 2 }, 'two invocations, two flushes of one datum each');
  });

  it('puts the Lambda context on the log lines of a handler that publishes no metrics (the query API)', async () => {
    const handler = loggedHandler<{ path: string }, number>(logger, async (event) => {
      log.info('answering', { path: event.path });
      return 200;
    });
    const { lines, result } = await stdoutLines(() => handler({ path: '/meters' }, lambdaContext('req-5')));
    assert.equal(result, 200);
    const answering = lines.find((line) => line.message === 'answering');
    assert.ok(answering, 'the handler logged');
    assert.equal(answering.function_request_id, 'req-5');
  });
});
