import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CloudWatchClient, ListMetricsCommand, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { startMoto, type Moto } from '../support/moto.ts';

let moto: Moto;
before(async () => {
  moto = await startMoto();
});
after(async () => {
  await moto?.stop();
});

describe('moto launcher', () => {
  it('serves AWS APIs on a loopback port, and reset forgets what was stored', async () => {
    assert.match(moto.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    const client = new CloudWatchClient({ endpoint: moto.endpoint, region: moto.region, credentials: moto.credentials });
    await client.send(new PutMetricDataCommand({ Namespace: 'MotoSelfTest', MetricData: [{ MetricName: 'Probe', Value: 1, Unit: 'Count' }] }));
    const before = await client.send(new ListMetricsCommand({ Namespace: 'MotoSelfTest' }));
    assert.deepEqual(
      before.Metrics?.map((m) => m.MetricName),
      ['Probe'],
    );
    await moto.reset();
    const afterReset = await client.send(new ListMetricsCommand({ Namespace: 'MotoSelfTest' }));
    assert.deepEqual(afterReset.Metrics ?? [], []);
    client.destroy();
  });

  it('stop ends the server: the endpoint no longer answers', async () => {
    const second = await startMoto();
    await second.stop();
    await assert.rejects(fetch(`${second.endpoint}/moto-api/`, { signal: AbortSignal.timeout(3000) }));
  });
});
