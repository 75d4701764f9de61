/** Builders for readings in tests: valid by default, every field overridable. */
import { toReading, type IntervalReading, type Reading, type RegisterReading } from '../../shared/reading.ts';

export function interval(
  overrides: Partial<Omit<IntervalReading, 'start' | 'end'>> & { start?: string | Date; minutes?: number } = {},
): IntervalReading {
  const { start = '2026-03-10T06:00:00Z', minutes = 15, ...rest } = overrides;
  const startDate = new Date(start);
  return toReading(
    {
      kind: 'interval',
      meterId: '10443720004766435',
      channel: 'energy.active.import',
      value: 0.25,
      unit: 'kWh',
      quality: 'actual',
      revision: 1,
      source: 'smt',
      originId: 'test-file',
      ...rest,
      start: startDate,
      end: new Date(startDate.getTime() + minutes * 60_000),
    },
    { now: new Date('2030-01-01T00:00:00Z') },
  ) as IntervalReading;
}

export function register(overrides: Partial<Omit<RegisterReading, 'at'>> & { at?: string | Date } = {}): RegisterReading {
  const { at = '2026-03-10T06:00:00Z', ...rest } = overrides;
  return toReading(
    {
      kind: 'register',
      meterId: 'kamstrup-71234567',
      channel: 'water.volume',
      value: 1234.567,
      unit: 'm3',
      quality: 'actual',
      revision: 0,
      source: 'ready',
      originId: 'delivery-1',
      ...rest,
      at: new Date(at),
    },
    { now: new Date('2030-01-01T00:00:00Z') },
  ) as RegisterReading;
}

/** A whole day of consecutive intervals starting at `dayStart` (UTC instant of the local midnight). */
export function day(dayStart: string, count: number, overrides: Partial<IntervalReading> = {}, value = (i: number) => i / 100): IntervalReading[] {
  const start = new Date(dayStart).getTime();
  return Array.from({ length: count }, (_, i) => interval({ ...overrides, value: value(i), start: new Date(start + i * 15 * 60_000) }));
}

export function valuesOf(readings: Reading[]): number[] {
  return readings.map((reading) => reading.value);
}
