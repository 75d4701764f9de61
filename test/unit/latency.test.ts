/**
 * Local mode's latency figures (local/latency.ts): nearest-rank percentiles, the matching of each
 * source event to the write that stored that reading, and the backlog phase after an outage.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatLatency,
  latencyFigures,
  matchLatencies,
  observerLag,
  percentile,
  phaseOf,
  type LatencyOrigin,
  type StoreSighting,
} from '../../local/latency.ts';

const origin = (instant: number, value: number, at: number, revision?: number): LatencyOrigin => ({
  meterId: 'm1',
  channel: 'energy.active.import',
  instant,
  value,
  at,
  ...(revision === undefined ? {} : { revision }),
});
const sighting = (instant: number, value: number, at: number, revision = 1): StoreSighting => ({
  meterId: 'm1',
  channel: 'energy.active.import',
  instant,
  value,
  revision,
  at,
});

describe('percentile (nearest rank)', () => {
  it('gives the value at rank ceil(p/100 * n) of the sorted list', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
    assert.equal(percentile(sorted, 50), 50);
    assert.equal(percentile(sorted, 95), 95);
    assert.equal(percentile(sorted, 99), 99);
    assert.equal(percentile(sorted, 100), 100);
    assert.equal(percentile([7, 9, 30], 50), 9);
    assert.equal(percentile([7, 9, 30], 99), 30);
    assert.equal(percentile([4], 1), 4);
    assert.ok(Number.isNaN(percentile([], 50)));
  });
});

describe('matchLatencies', () => {
  it('times each reading to the first write that stored its value at or after its source event', () => {
    const { matched, notStored } = matchLatencies(
      [origin(0, 1.5, 1000), origin(900, 2.5, 1000)],
      [sighting(0, 1.5, 3500), sighting(0, 1.5, 9000), sighting(900, 2.5, 1800)],
    );
    assert.deepEqual(
      matched.map((m) => [m.origin.instant, m.latencyMs]),
      [
        [0, 2500],
        [900, 800],
      ],
    );
    assert.equal(notStored.length, 0);
  });

  it('does not take a write from before the source event, another value, another revision or another meter', () => {
    const { matched, notStored } = matchLatencies(
      [origin(0, 1.5, 5000), origin(900, 2.5, 0, 7), origin(1800, 3, 0)],
      [
        sighting(0, 1.5, 4000), // before the poll: an earlier, equal reading
        sighting(900, 2.5, 100, 6), // the same value under an earlier revision (the first file, not the re-delivery)
        { ...sighting(1800, 3, 100), meterId: 'm2' },
        sighting(1800, 3.5, 100),
      ],
    );
    assert.equal(matched.length, 0);
    assert.equal(notStored.length, 3);
  });

  it('matches a revision-tagged reading to the write of its revision only', () => {
    const first = origin(0, 1, 1000, 6);
    const redelivered = origin(0, 1, 2000, 7);
    const { matched } = matchLatencies([first, redelivered], [sighting(0, 1, 1500, 6), sighting(0, 1, 4000, 7)]);
    assert.deepEqual(
      matched.map((m) => m.latencyMs),
      [500, 2000],
    );
  });
});

describe('phases and figures', () => {
  it('counts as backlog what was produced during the outage and after it until that backlog was stored', () => {
    // Outage 10 s..20 s; what was polled during it was stored by 26 s; a poll at 22 s queued behind it.
    const polls = [origin(0, 1, 1000), origin(900, 1, 12_000), origin(1800, 1, 19_000), origin(2700, 1, 22_000), origin(3600, 1, 30_000)];
    const stored = [sighting(0, 1, 1500), sighting(900, 1, 25_000), sighting(1800, 1, 26_000), sighting(2700, 1, 26_500), sighting(3600, 1, 30_400)];
    const { matched } = matchLatencies(polls, stored);
    const phase = phaseOf(matched, [{ label: 'outage', from: 10_000, to: 20_000 }]);
    assert.deepEqual(
      matched.map((m) => phase(m)),
      ['steady', 'backlog', 'backlog', 'backlog', 'steady'],
    );
    const figures = latencyFigures('iot', matched, [{ label: 'outage', from: 10_000, to: 20_000 }]);
    assert.deepEqual(
      figures.map((f) => [f.phase, f.count, f.p50, f.p99, f.max]),
      [
        ['steady', 2, 400, 500, 500],
        ['backlog', 3, 7000, 13_000, 13_000],
      ],
    );
    assert.match(
      formatLatency(figures[1]!, 2, '(poll)'),
      /^iot {3}backlog n= {5}3 {2}p50 7\.00 s {2}p95 13\.0 s {2}p99 13\.0 s {2}max 13\.0 s {2}\(2 not stored/,
    );
  });

  it('is all steady without a disturbance, and leaves out a phase with no reading', () => {
    const { matched } = matchLatencies([origin(0, 1, 0)], [sighting(0, 1, 250)]);
    assert.deepEqual(
      latencyFigures('ready', matched).map((f) => [f.phase, f.count, f.p50]),
      [['steady', 1, 250]],
    );
  });
});

describe('observerLag', () => {
  it('is how long after the block write stamp each write was read, over the sightings that carry one', () => {
    const lag = observerLag([
      { ...sighting(0, 1, 10_300), writtenAt: 10_000 },
      { ...sighting(900, 1, 10_300), writtenAt: 10_000 },
      { ...sighting(1800, 1, 21_100), writtenAt: 20_000 },
      sighting(2700, 1, 99_000), // no stamp: not counted
    ]);
    assert.deepEqual(lag, { count: 3, p50: 300, p99: 1100, max: 1100 });
  });
});
