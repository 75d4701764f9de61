/**
 * locate answers from the local days it has seen (interval-block.ts, localDayOf). It must answer
 * exactly as the Intl computation does, including on days with an offset change, and in zones
 * whose change happens at midnight (the day then has no local midnight, or two).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { locate } from '../../lambdas/core/interval-block.ts';
import { localDate, startOfLocalDay } from '../../lambdas/core/time.ts';
import { interval } from '../support/readings.ts';

function direct(instant: Date, zone: string) {
  const day = localDate(instant, zone);
  const blockStart = startOfLocalDay(day, zone).getTime() / 1000;
  return { sk: day, blockStart, slot: `s${instant.getTime() / 1000 - blockStart}` };
}

/** Every 15 minutes from `from` for `days` days. */
function* quarterHours(from: string, days: number): Generator<Date> {
  for (let t = Date.parse(from); t < Date.parse(from) + days * 86_400_000; t += 900_000) yield new Date(t);
}

describe('locate across offset changes', () => {
  const cases: Array<[string, string]> = [
    ['America/Chicago', '2025-11-01T00:00:00Z'], // fall back at 02:00
    ['America/Chicago', '2026-03-07T00:00:00Z'], // spring forward at 02:00
    ['America/Santiago', '2026-04-03T00:00:00Z'], // fall back at 24:00
    ['America/Santiago', '2025-09-05T00:00:00Z'], // spring forward at 24:00 (no local midnight)
    ['America/Havana', '2026-03-06T00:00:00Z'], // spring forward at 00:00
    ['UTC', '2026-11-20T00:00:00Z'],
  ];
  for (const [zone, from] of cases) {
    it(`places every quarter hour of 4 days from ${from} in ${zone} as Intl does`, () => {
      // Twice: the first pass fills the cache, the second answers from it.
      for (let pass = 0; pass < 2; pass++) {
        for (const start of quarterHours(from, 4)) {
          const located = locate(interval({ start }), zone);
          assert.deepEqual(
            { sk: located.key.sk, blockStart: located.blockStart, slot: located.slot },
            direct(start, zone),
            `${start.toISOString()} pass ${pass}`,
          );
        }
      }
    });
  }
});
