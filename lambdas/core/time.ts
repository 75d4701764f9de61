/**
 * Calendar arithmetic in an IANA time zone using only Intl (no tz database of our own).
 * Used to cut readings into local-day blocks and, by the SMT parser, to place a local day's
 * intervals on the UTC time line by position.
 */

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    // Constructing a DateTimeFormat costs ~50 µs; the store calls this per reading.
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** Throws a clear error for a misspelt zone instead of a RangeError deep inside a write. */
export function assertTimeZone(timeZone: string): void {
  try {
    formatterFor(timeZone);
  } catch {
    throw new Error(`unknown IANA time zone "${timeZone}" (e.g. America/Chicago, UTC)`);
  }
}

interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

function wallClock(epochMs: number, timeZone: string): WallClock {
  const parts: Record<string, number> = {};
  for (const part of formatterFor(timeZone).formatToParts(epochMs)) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return {
    year: parts.year!,
    month: parts.month!,
    day: parts.day!,
    hour: parts.hour!,
    minute: parts.minute!,
    second: parts.second!,
  };
}

/** Local time minus UTC at that instant, in milliseconds (e.g. -5 h for CDT). */
export function utcOffsetMs(epochMs: number, timeZone: string): number {
  const wall = wallClock(epochMs, timeZone);
  const wallAsUtc = Date.UTC(wall.year, wall.month - 1, wall.day, wall.hour, wall.minute, wall.second);
  return wallAsUtc - Math.floor(epochMs / 1000) * 1000;
}

/** The local calendar date (`YYYY-MM-DD`) of an instant. */
export function localDate(instant: Date, timeZone: string): string {
  const wall = wallClock(instant.getTime(), timeZone);
  return `${wall.year}-${pad(wall.month)}-${pad(wall.day)}`;
}

/**
 * The UTC instant at which a local calendar day begins. Zones that change their offset at
 * 02:00 (all of North America) always have a local midnight; the second pass covers a day whose
 * midnight lies on the other side of a change from the first guess.
 */
export function startOfLocalDay(date: string, timeZone: string): Date {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  if (!match) throw new Error(`not a calendar date: "${date}" (expected YYYY-MM-DD)`);
  const midnightAsUtc = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]));
  const firstGuess = midnightAsUtc - utcOffsetMs(midnightAsUtc, timeZone);
  const secondGuess = midnightAsUtc - utcOffsetMs(firstGuess, timeZone);
  return new Date(secondGuess);
}

/** The calendar date `days` after (or before) `date` (`YYYY-MM-DD`), independent of any zone. */
export function addDays(date: string, days: number): string {
  const shifted = new Date(`${date}T00:00:00Z`);
  shifted.setUTCDate(shifted.getUTCDate() + days);
  return shifted.toISOString().slice(0, 10);
}

function pad(value: number): string {
  return value < 10 ? `0${value}` : String(value);
}
