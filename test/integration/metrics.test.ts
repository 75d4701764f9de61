import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from '../../lambdas/core/metrics.ts';
import { silentLog, type Log } from '../../shared/log.ts';
import { startCloudWatchEndpoint, type CloudWatchEndpoint } from '../support/cloudwatch-endpoint.ts';

let cloudwatch: CloudWatchEndpoint;
before(async () => {
  cloudwatch = await startCloudWatchEndpoint();
});
after(async () => {
  await cloudwatch?.close();
});
beforeEach(() => {
  cloudwatch.requests.length = 0;
  cloudwatch.mode = 'ok';
});

const at = new Date('2026-11-23T10:00:00Z');

describe('Metrics through the real CloudWatch SDK client', () => {
  it('sends counters summed per name and dimensions, and values as a distribution, in one PutMetricData', async () => {
    const metrics = new Metrics({ client: cloudwatch.client(), namespace: 'MeterbridgeTest', defaultDimensions: { Stage: 'test' }, clock: () => at });
    metrics.count('ReadingsStored', 90, { Source: 'smt' });
    metrics.count('ReadingsStored', 6, { Source: 'smt' });
    metrics.count('ReadingsDuplicate', 0, { Source: 'smt' });
    metrics.record('IngestLatency', 120, 'Milliseconds', { Source: 'iot' });
    metrics.record('IngestLatency', 120, 'Milliseconds', { Source: 'iot' });
    metrics.record('IngestLatency', 300, 'Milliseconds', { Source: 'iot' });

    const report = await metrics.flush();

    assert.deepEqual(report, { datums: 3, requests: 1, failedRequests: 0, lostDatums: 0 });
    assert.equal(cloudwatch.requests.length, 1);
    const [request] = cloudwatch.requests;
    assert.equal(request!.target, 'GraniteServiceVersion20100801.PutMetricData');
    assert.equal(request!.body.Namespace, 'MeterbridgeTest');
    const byName = Object.fromEntries(request!.body.MetricData.map((d) => [d.MetricName, d]));
    assert.equal(byName.ReadingsStored?.Value, 96);
    assert.equal(byName.ReadingsStored?.Unit, 'Count');
    assert.deepEqual(byName.ReadingsStored?.Dimensions, [{ Name: 'Source', Value: 'smt' }, { Name: 'Stage', Value: 'test' }]);
    assert.equal(byName.ReadingsDuplicate?.Value, 0);
    assert.deepEqual(byName.IngestLatency?.Values, [120, 300]);
    assert.deepEqual(byName.IngestLatency?.Counts, [2, 1]);
    assert.equal(byName.IngestLatency?.Unit, 'Milliseconds');
    assert.equal(new Date(Number(byName.ReadingsStored?.Timestamp) * 1000).toISOString(), at.toISOString());
  });

  it('splits more than 1,000 datums over several requests, and the SDK gzips the large bodies', async () => {
    const metrics = new Metrics({ client: cloudwatch.client(), clock: () => at });
    const sources = ['iot', 'smt', 'ready'];
    const reasons = Array.from({ length: 840 }, (_, i) => `reason-${i}`);
    for (const source of sources) for (const reason of reasons) metrics.count('MessagesRejected', 1, { Source: source, Reason: reason });

    const report = await metrics.flush();

    assert.equal(report.datums, 2520);
    assert.equal(report.requests, 3);
    assert.deepEqual(cloudwatch.requests.map((r) => r.body.MetricData.length), [1000, 1000, 520]);
    assert.ok(cloudwatch.requests.every((r) => r.contentEncoding === 'gzip'), 'bodies over 10 KB are sent gzip-compressed');
    const total = cloudwatch.requests.flatMap((r) => r.body.MetricData).reduce((sum, d) => sum + (d.Value ?? 0), 0);
    assert.equal(total, 2520);
  });

  it('splits a value series with more than 150 distinct values into several datums', async () => {
    const metrics = new Metrics({ client: cloudwatch.client(), clock: () => at });
    for (let i = 0; i < 400; i++) metrics.record('IngestLatency', i, 'Seconds');

    await metrics.flush();

    const datums = cloudwatch.requests[0]!.body.MetricData;
    assert.deepEqual(datums.map((d) => d.Values?.length), [150, 150, 100]);
  });

  it('does not throw into the caller when CloudWatch fails, and reports and logs the loss', async () => {
    cloudwatch.mode = 'fail';
    const warnings: string[] = [];
    const log: Log = { ...silentLog, warn: (message) => warnings.push(message) };
    const metrics = new Metrics({ client: cloudwatch.client(), log });
    metrics.count('ReadingsStored', 5);

    const report = await metrics.flush();

    assert.equal(report.failedRequests, 1);
    assert.equal(report.lostDatums, 1);
    assert.equal(cloudwatch.requests.length, 1, 'the request did reach the endpoint');
    assert.deepEqual(warnings, ['metrics flush failed; datums dropped']);
  });

  it('gives up on a CloudWatch that does not answer within the timeout', async () => {
    cloudwatch.mode = 'hang';
    const metrics = new Metrics({ client: cloudwatch.client(), timeoutMs: 300, log: silentLog });
    metrics.count('ReadingsStored');

    const started = Date.now();
    const report = await metrics.flush();

    assert.equal(report.failedRequests, 1);
    assert.ok(Date.now() - started < 5000, 'flush returned instead of waiting for the hung endpoint');
  });

  it('empties its buffer on flush, so nothing is sent twice', async () => {
    const metrics = new Metrics({ client: cloudwatch.client() });
    metrics.count('ReadingsStored');
    await metrics.flush();

    const second = await metrics.flush();

    assert.equal(second.datums, 0);
    assert.equal(second.requests, 0);
    assert.equal(cloudwatch.requests.length, 1);
  });

  it('refuses a high-cardinality dimension such as a meter id', () => {
    const metrics = new Metrics({ client: cloudwatch.client() });

    assert.throws(() => metrics.count('ReadingsStored', 1, { MeterId: '1044372' } as never), /dimension "MeterId" is not allowed/);
  });
});
