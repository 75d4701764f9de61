import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { batches } from '../../lambdas/core/metrics.ts';

describe('metric batches', () => {
  it('caps a request at 1,000 datums', () => {
    const datums = Array.from({ length: 2001 }, (_, i) => ({ MetricName: `m${i}`, Value: 1 }));
    assert.deepEqual(
      batches(datums).map((b) => b.length),
      [1000, 1000, 1],
    );
  });

  it('caps a request below 1 MB of datums', () => {
    const big = { MetricName: 'm', Values: Array.from({ length: 150 }, (_, i) => i + 0.123456789), Counts: Array.from({ length: 150 }, () => 1) };
    const size = JSON.stringify(big).length;
    const perRequest = Math.floor(900_000 / size);
    const result = batches(Array.from({ length: perRequest * 2 + 1 }, () => big));
    assert.ok(result.length >= 3);
    assert.ok(result.every((b) => JSON.stringify(b).length < 1_000_000));
  });

  it('sends nothing for nothing', () => assert.deepEqual(batches([]), []));
});
