import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { addDays, assertTimeZone, localDate, startOfLocalDay, utcOffsetMs } from '../../lambdas/core/time.ts';

const chicago = 'America/Chicago';

describe('time zone helpers', () => {
  it('finds local midnight in standard and daylight time', () => {
    assert.equal(startOfLocalDay('2026-01-15', chicago).toISOString(), '2026-01-15T06:00:00.000Z');
    assert.equal(startOfLocalDay('2026-07-15', chicago).toISOString(), '2026-07-15T05:00:00.000Z');
  });

  it('gives the spring-forward day 23 hours and the fall-back day 25', () => {
    const hours = (date: string) => (startOfLocalDay(addDays(date, 1), chicago).getTime() - startOfLocalDay(date, chicago).getTime()) / 3_600_000;
    assert.equal(hours('2026-03-08'), 23);
    assert.equal(hours('2026-11-01'), 25);
    assert.equal(hours('2026-11-02'), 24);
  });

  it('names the local date of an instant, on either side of local midnight', () => {
    assert.equal(localDate(new Date('2026-11-02T05:59:59Z'), chicago), '2026-11-01');
    assert.equal(localDate(new Date('2026-11-02T06:00:00Z'), chicago), '2026-11-02');
    assert.equal(localDate(new Date('2026-11-02T05:59:59Z'), 'UTC'), '2026-11-02');
  });

  it('reports the UTC offset including daylight saving', () => {
    assert.equal(utcOffsetMs(Date.parse('2026-07-01T12:00:00Z'), chicago), -5 * 3_600_000);
    assert.equal(utcOffsetMs(Date.parse('2026-12-01T12:00:00Z'), chicago), -6 * 3_600_000);
  });

  it('adds days across month and year ends', () => {
    assert.equal(addDays('2026-12-31', 1), '2027-01-01');
    assert.equal(addDays('2026-03-01', -1), '2026-02-28');
  });

  it('refuses an unknown zone with a clear message', () => {
    assert.throws(() => assertTimeZone('America/Chicgo'), /unknown IANA time zone "America\/Chicgo"/);
    assert.throws(() => startOfLocalDay('2026-13-45x', chicago), /not a calendar date/);
  });
});
