/**
 * What an SMT number or time stamp may look like, for both layouts (interval CSV and LSE): one
 * definition, so a value one parser refuses is never stored by the other.
 *
 * - Numbers: a decimal as meter exports write it (`0.213`, `-1.5`, `.5`, `12`, and the exponent
 *   forms `1e3` / `2.5E-2` that spreadsheet exports produce). Not what `Number()` also takes:
 *   `0x10`, `0b101`, `+7`, `5.`, ` ` (zero!), `Infinity`. A magnitude of 10^16 or more is refused:
 *   no meter reaches it in any unit, and a double no longer holds such a decimal's digits.
 * - Calendar: the fields must name a real date and time (`02/31` is not March 3) in a year from
 *   2000 on (readings before that are refused by the reading model anyway; a two-digit year
 *   would otherwise be taken as 19xx by Date.UTC).
 * - Revisions: a revision decides which of two values for an interval wins (a later one
 *   supersedes), so an implausible one poisons every later real revision: it may not lie before
 *   its usage day nor after now plus a small allowance for clock skew.
 */
import { EARLIEST_PLAUSIBLE } from '../../../../shared/reading.ts';

const DECIMAL = /^-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?$/;

/** Exclusive bound on a value's magnitude (see the module comment). */
export const MAX_MAGNITUDE = 1e16;

/** The value of a decimal field, or undefined when the text is not one (blank included: the caller decides what blank means). */
export function parseDecimal(text: string): number | undefined {
  if (!DECIMAL.test(text)) return undefined;
  const value = Number(text);
  return Math.abs(value) < MAX_MAGNITUDE ? value : undefined;
}

/** The earliest year a usage date or revision may carry. */
export const EARLIEST_YEAR = new Date(EARLIEST_PLAUSIBLE).getUTCFullYear();

/** Whether the fields name a real calendar date and time from EARLIEST_YEAR on (month 1-12). */
export function isCalendarDateTime(year: number, month: number, day: number, hour = 0, minute = 0, second = 0): boolean {
  if (!(
    year >= EARLIEST_YEAR &&
    year <= 9999 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    hour >= 0 &&
    hour <= 23 &&
    minute >= 0 &&
    minute <= 59 &&
    second >= 0 &&
    second <= 59
  ))
    return false;
  return day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * How far after `now` a revision may lie: SMT stamps revisions with its own clock, in local time;
 * an hour covers skew and nothing more (as the reading model's maxFutureSkewMs).
 */
export const REVISION_FUTURE_ALLOWANCE_MS = 3_600_000;

/**
 * Why a revision (epoch seconds) is implausible for data starting at `usageStartMs`, or
 * undefined when it is fine: before the usage day began, or after `now` plus the allowance.
 */
export function implausibleRevision(revisionSeconds: number, usageStartMs: number, now: Date): string | undefined {
  const ms = revisionSeconds * 1000;
  if (ms > now.getTime() + REVISION_FUTURE_ALLOWANCE_MS)
    return `lies in the future (now ${now.toISOString()}); it would make every later real revision stale`;
  if (ms < usageStartMs) return `lies before the usage it revises (${new Date(usageStartMs).toISOString()})`;
  return undefined;
}
