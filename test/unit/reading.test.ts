import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateReading, toReading, InvalidReadingError } from '../../shared/reading.ts';

const now = new Date('2026-11-23T12:00:00Z');
const valid = {
  kind: 'interval',
  meterId: '10443720004766435',
  channel: 'energy.active.import',
  start: '2026-11-22T06:00:00Z',
  end: '2026-11-22T06:15:00Z',
  value: 0.42,
  unit: 'kWh',
  quality: 'actual',
  revision: 1732300000,
  source: 'smt',
  originId: 'IntervalMeterUsage20261122.csv',
};

function reasonsFor(overrides: Record<string, unknown>): string[] {
  const result = validateReading({ ...valid, ...overrides }, { now });
  assert.equal(result.ok, false, 'expected the reading to be rejected');
  return result.ok ? [] : result.reasons;
}

describe('validateReading', () => {
  it('accepts a valid interval reading and turns its instants into Dates', () => {
    const result = validateReading(valid, { now });
    assert.ok(result.ok);
    assert.equal(result.reading.kind, 'interval');
    assert.ok(result.reading.kind === 'interval' && result.reading.start instanceof Date);
    assert.equal(result.reading.kind === 'interval' && result.reading.end.toISOString(), '2026-11-22T06:15:00.000Z');
  });

  it('accepts offsets other than Z and normalises them to the same instant', () => {
    const result = validateReading({ ...valid, start: '2026-11-22T00:00:00-06:00', end: '2026-11-22T00:15:00-06:00' }, { now });
    assert.ok(result.ok && result.reading.kind === 'interval');
    assert.equal(result.reading.start.toISOString(), '2026-11-22T06:00:00.000Z');
  });

  it('accepts a register read with `at`', () => {
    const { start: _start, end: _end, ...common } = valid;
    const result = validateReading({ ...common, kind: 'register', at: '2026-11-22T06:00:00Z', unit: 'm3', channel: 'water.volume' }, { now });
    assert.ok(result.ok, JSON.stringify(result));
  });

  it('rejects non-finite values', () => {
    assert.match(reasonsFor({ value: Number.NaN }).join(), /value: must be a finite number/);
    assert.match(reasonsFor({ value: Number.POSITIVE_INFINITY }).join(), /value: must be a finite number/);
    assert.match(reasonsFor({ value: '1.5' }).join(), /value/);
  });

  it('rejects an end at or before the start', () => {
    assert.match(reasonsFor({ end: valid.start }).join(), /end: must be after start/);
    assert.match(reasonsFor({ end: '2026-11-22T05:45:00Z' }).join(), /end: must be after start/);
  });

  it('rejects unknown units and names the known ones', () => {
    assert.match(reasonsFor({ unit: 'kwh' }).join(), /unknown unit "kwh"; known: Wh, kWh/);
  });

  it('rejects timestamps far in the future but allows an hour of clock skew', () => {
    assert.match(reasonsFor({ start: '2027-01-01T00:00:00Z', end: '2027-01-01T00:15:00Z' }).join(), /start: .* is in the future/);
    const skewed = validateReading({ ...valid, start: '2026-11-23T12:30:00Z', end: '2026-11-23T12:45:00Z' }, { now });
    assert.ok(skewed.ok);
  });

  it('rejects a device clock that was never set', () => {
    assert.match(reasonsFor({ start: '1970-01-01T00:00:00Z', end: '1970-01-01T00:15:00Z' }).join(), /before 2000-01-01/);
  });

  it('rejects sub-second instants, too-short intervals, bad ids and unknown fields', () => {
    assert.match(reasonsFor({ start: '2026-11-22T06:00:00.500Z' }).join(), /whole second/);
    assert.match(reasonsFor({ end: '2026-11-22T06:00:30Z' }).join(), /shorter than 60 s/);
    assert.match(reasonsFor({ meterId: "'10443720004766435" }).join(), /meterId/);
    assert.match(reasonsFor({ channel: 'Energy Import' }).join(), /channel/);
    assert.match(reasonsFor({ colour: 'blue' }).join(), /colour/);
    assert.match(reasonsFor({ revision: -1 }).join(), /revision/);
    assert.match(reasonsFor({ quality: 'guessed' }).join(), /quality/);
  });

  it('toReading throws an InvalidReadingError that carries every reason', () => {
    assert.throws(
      () => toReading({ ...valid, value: Number.NaN, unit: 'parsecs' }, { now }),
      (error: unknown) => error instanceof InvalidReadingError && error.reasons.length === 2,
    );
  });
});
