import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { CloudWatchClient, GetMetricDataCommand, ListMetricsCommand } from '@aws-sdk/client-cloudwatch';
import { Metrics } from '../../lambdas/core/metrics.ts';
import { silentLog, type Log } from '../../shared/log.ts';
import { startLocalCloudWatch, type LocalCloudWatch, type MetricTotal } from '../support/cloudwatch.ts';

let cloudwatch: LocalCloudWatch;
before(async () => {
  cloudwatch = await startLocalCloudWatch();
});
after(async () => {
  await cloudwatch?.stop();
});
beforeEach(async () => {
  await cloudwatch.reset();
});

const at = new Date('2026-11-23T10:00:00Z');

const find = (totals: MetricTotal[], name: string) => totals.filter((t) => t.name === name);

/**
 * CloudWatch failing or not answering at all cannot be asked of moto: the smallest stand-in that
 * answers every request with a 500, or never answers. It records how many requests reached it.
 */
async function faultyEndpoint(mode: 'fail' | 'hang'): Promise<{ url: string; hits: number; close(): Promise<void> }> {
  const state = { hits: 0 };
  const server: Server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      state.hits += 1;
      if (mode === 'hang') return;
      response.writeHead(500, { 'content-type': 'application/x-amz-json-1.0' });
      response.end(JSON.stringify({ __type: 'InternalServiceFault', message: 'injected failure' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return Object.assign(state, {
    url,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  }) as { url: string; hits: number; close(): Promise<void> };
}

const faultyClient = (url: string) =>
  new CloudWatchClient({ endpoint: url, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });

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
    const totals = await cloudwatch.totals('MeterbridgeTest');
    const [stored] = find(totals, 'ReadingsStored');
    assert.equal(stored?.sum, 96);
    assert.equal(stored?.sampleCount, 1, 'the two increments were summed into one datum before sending');
    assert.deepEqual(stored?.dimensions, { Source: 'smt', Stage: 'test' });
    const [duplicate] = find(totals, 'ReadingsDuplicate');
    assert.equal(duplicate?.sum, 0);
    assert.equal(duplicate?.sampleCount, 1, 'a zero is stored as data');
    const [latency] = find(totals, 'IngestLatency');
    assert.equal(latency?.sum, 540, 'values 120 x 2 and 300 x 1');
    assert.equal(latency?.sampleCount, 3);
    assert.deepEqual(latency?.dimensions, { Source: 'iot', Stage: 'test' });
    // Unit and timestamp as stored: a query for the Milliseconds unit in the one second at `at` finds all three values.
    const answer = await cloudwatch.client().send(
      new GetMetricDataCommand({
        StartTime: at,
        EndTime: new Date(at.getTime() + 1000),
        MetricDataQueries: [
          {
            Id: 'ms',
            MetricStat: {
              Metric: {
                Namespace: 'MeterbridgeTest',
                MetricName: 'IngestLatency',
                Dimensions: [
                  { Name: 'Source', Value: 'iot' },
                  { Name: 'Stage', Value: 'test' },
                ],
              },
              Period: 1,
              Stat: 'SampleCount',
              Unit: 'Milliseconds',
            },
          },
          {
            Id: 'count',
            MetricStat: {
              Metric: {
                Namespace: 'MeterbridgeTest',
                MetricName: 'ReadingsStored',
                Dimensions: [
                  { Name: 'Source', Value: 'smt' },
                  { Name: 'Stage', Value: 'test' },
                ],
              },
              Period: 1,
              Stat: 'Sum',
              Unit: 'Count',
            },
          },
        ],
      }),
    );
    const byId = Object.fromEntries((answer.MetricDataResults ?? []).map((r) => [r.Id, r.Values]));
    assert.deepEqual(byId.ms, [3]);
    assert.deepEqual(byId.count, [96]);
  });

  it('splits more than 1,000 datums over several requests, and the SDK gzips the large bodies', async () => {
    const metrics = new Metrics({ client: cloudwatch.client(), clock: () => at });
    const sources = ['iot', 'smt', 'ready'];
    const reasons = Array.from({ length: 840 }, (_, i) => `reason-${i}`);
    for (const source of sources) for (const reason of reasons) metrics.count('MessagesRejected', 1, { Source: source, Reason: reason });

    const report = await metrics.flush();

    assert.equal(report.datums, 2520);
    assert.equal(report.requests, 3);
    // Reading 2,520 series back one by one is slow in moto; ListMetrics shows every series arrived, and the
    // first, a middle and the last series (one in each request) hold their value.
    const client = cloudwatch.client();
    let listed = 0;
    let nextToken: string | undefined;
    do {
      const page = await client.send(new ListMetricsCommand({ Namespace: 'Meterbridge', MetricName: 'MessagesRejected', NextToken: nextToken }));
      listed += page.Metrics?.length ?? 0;
      nextToken = page.NextToken;
    } while (nextToken);
    assert.equal(listed, 2520, 'every series arrived'); // the SDK gzips bodies over 10 KB; the moto client sends them plain, see local/cloudwatch.ts
    for (const [source, reason] of [
      ['iot', 'reason-0'],
      ['smt', 'reason-400'],
      ['ready', 'reason-839'],
    ] as const) {
      const answer = await client.send(
        new GetMetricDataCommand({
          StartTime: new Date(at.getTime() - 60_000),
          EndTime: new Date(at.getTime() + 60_000),
          MetricDataQueries: [
            {
              Id: 'v',
              MetricStat: {
                Metric: {
                  Namespace: 'Meterbridge',
                  MetricName: 'MessagesRejected',
                  Dimensions: [
                    { Name: 'Reason', Value: reason },
                    { Name: 'Source', Value: source },
                  ],
                },
                Period: 120,
                Stat: 'Sum',
              },
            },
          ],
        }),
      );
      assert.deepEqual(answer.MetricDataResults?.[0]?.Values, [1], `${source} ${reason}`);
    }
  });

  it('splits a value series with more than 150 distinct values into several datums', async () => {
    const metrics = new Metrics({ client: cloudwatch.client(), clock: () => at });
    for (let i = 0; i < 400; i++) metrics.record('IngestLatency', i, 'Seconds');

    const datums = metrics.pending();
    const report = await metrics.flush();

    assert.deepEqual(
      datums.map((d) => d.Values?.length),
      [150, 150, 100],
    );
    assert.deepEqual(report, { datums: 3, requests: 1, failedRequests: 0, lostDatums: 0 });
    const [latency] = find(await cloudwatch.totals(), 'IngestLatency');
    assert.equal(latency?.sampleCount, 400);
    assert.equal(latency?.sum, (399 * 400) / 2);
  });

  it('does not throw into the caller when CloudWatch fails, and reports and logs the loss', async () => {
    const failing = await faultyEndpoint('fail');
    const warnings: string[] = [];
    const log: Log = { ...silentLog, warn: (message) => warnings.push(message) };
    const client = faultyClient(failing.url);
    const metrics = new Metrics({ client, log });
    metrics.count('ReadingsStored', 5);

    const report = await metrics.flush();
    client.destroy();
    await failing.close();

    assert.equal(report.failedRequests, 1);
    assert.equal(report.lostDatums, 1);
    assert.equal(failing.hits, 1, 'the request did reach the endpoint');
    assert.deepEqual(warnings, ['metrics flush failed; datums dropped']);
  });

  it('gives up on a CloudWatch that does not answer within the timeout', async () => {
    const hanging = await faultyEndpoint('hang');
    const client = faultyClient(hanging.url);
    const metrics = new Metrics({ client, timeoutMs: 300, log: silentLog });
    metrics.count('ReadingsStored');

    const started = Date.now();
    const report = await metrics.flush();
    client.destroy();
    await hanging.close();

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
    const [stored] = find(await cloudwatch.totals(), 'ReadingsStored');
    assert.equal(stored?.sampleCount, 1, 'one datum stored, not two');
  });

  it('refuses a high-cardinality dimension such as a meter id', () => {
    const metrics = new Metrics({ client: cloudwatch.client() });

    assert.throws(() => metrics.count('ReadingsStored', 1, { MeterId: '1044372' } as never), /dimension "MeterId" is not allowed/);
  });
});
