import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProgress, tallyMetrics } from '../../local/progress.ts';
import type { MetricTotal } from '../../local/cloudwatch.ts';

const datum = (name: string, sum: number, Source: string): MetricTotal => ({ name, sum, sampleCount: 1, dimensions: { Stage: 'local', Source } });
const request = (...data: MetricTotal[]): MetricTotal[] => data;

describe('local mode progress', () => {
  it('sums what the handlers published, per source', () => {
    const tallies = tallyMetrics([
      ...request(datum('ReadingsStored', 96, 'iot'), datum('ReadingsDuplicate', 4, 'iot'), datum('MessagesRejected', 1, 'iot')),
      ...request(
        datum('ReadingsStored', 4, 'iot'),
        datum('ReadingsSuperseded', 10, 'smt'),
        datum('ReadingsStored', 3, 'ready'),
        datum('MessagesReceived', 50, 'iot'),
      ),
    ]);
    assert.deepEqual(tallies.iot, { stored: 100, superseded: 0, duplicate: 4, stale: 0, conflict: 0, rejected: 1, resent: 0 });
    assert.equal(tallies.smt.superseded, 10);
    assert.equal(tallies.ready.stored, 3);
  });

  it('shows readings per second since the previous window', () => {
    const first = formatProgress(tallyMetrics(request(datum('ReadingsStored', 100, 'iot'))), undefined, 1000, {});
    const second = formatProgress(tallyMetrics(request(datum('ReadingsStored', 300, 'iot'))), first.window, 3000, { iot: 7 });
    assert.match(second.lines[0]!, /^iot\s+100 readings\/s\s+stored\s+300 .* backlog\s+7$/);
  });
});
