import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { Metrics } from '../../lambdas/core/metrics.ts';
import { silentLog } from '../../shared/log.ts';

describe('Metrics.record', () => {
  it('records a value several times in one call, as that many observations', () => {
    const metrics = new Metrics({ client: new CloudWatchClient({ region: 'us-east-1' }), log: silentLog, clock: () => new Date(0) });
    metrics.record('IngestLatency', 40, 'Seconds', {}, 3);
    metrics.record('IngestLatency', 40, 'Seconds');
    metrics.record('IngestLatency', 55, 'Seconds', {}, 0);
    const [datum] = metrics.pending();
    assert.deepEqual([datum?.Values, datum?.Counts], [[40], [4]]);
  });
});
