/** The missing-days rule (lambdas/core/smt/esiid-days.ts): window edges, ordering, nothing recorded. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findMissingDays } from '../../lambdas/core/smt/esiid-days.ts';

describe('findMissingDays', () => {
  const entries = [
    { esiid: 'A', lastDay: '2026-03-10' },
    { esiid: 'B', lastDay: '2026-03-10' },
    { esiid: 'C', lastDay: '2026-03-09' },
    // Exactly N days before the newest day: still in the window.
    { esiid: 'E', lastDay: '2026-03-03' },
    { esiid: 'D', lastDay: '2026-03-03' },
    // One day more: taken as gone.
    { esiid: 'F', lastDay: '2026-03-02' },
  ];

  it('lists ESIIDs whose last day is within N days before the newest day, oldest first, then by ESIID', () => {
    assert.deepEqual(findMissingDays(entries, 7), {
      newestDay: '2026-03-10',
      windowDays: 7,
      reporting: 2,
      missing: [
        { esiid: 'D', lastDay: '2026-03-03' },
        { esiid: 'E', lastDay: '2026-03-03' },
        { esiid: 'C', lastDay: '2026-03-09' },
      ],
      silentLonger: 1,
    });
  });

  it('a one-day window keeps only yesterday; month and DST boundaries are calendar days', () => {
    assert.deepEqual(
      findMissingDays(entries, 1).missing.map((e) => e.esiid),
      ['C'],
    );
    const across = findMissingDays(
      [
        { esiid: 'X', lastDay: '2026-11-02' },
        { esiid: 'Y', lastDay: '2026-10-31' },
      ],
      2,
    );
    assert.deepEqual(across.missing, [{ esiid: 'Y', lastDay: '2026-10-31' }]);
  });

  it('nothing recorded: no newest day, nothing missing; a window below one day is refused', () => {
    assert.deepEqual(findMissingDays([], 7), { windowDays: 7, reporting: 0, missing: [], silentLonger: 0 });
    assert.throws(() => findMissingDays(entries, 0), /whole number/);
  });
});
