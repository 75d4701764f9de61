/**
 * What the SMT parsers produce: whole local days per ESIID and channel, each already placed on
 * the UTC time line, as canonical interval readings. The process step writes one day as one
 * store delivery; the CLI prints the readings.
 */
import type { Reading } from '../../../shared/reading.ts';

/** The zone SMT's local prevailing times are in (ERCOT). */
export const SMT_TIME_ZONE = 'America/Chicago';

export type IntervalReading = Extract<Reading, { kind: 'interval' }>;
export type RegisterReading = Extract<Reading, { kind: 'register' }>;

/** Every reading of a day, intervals first. */
export function readingsOf(day: SmtDay): Reading[] {
  return day.registers ? [...day.readings, ...day.registers] : day.readings;
}

export interface SmtDay {
  /** ESIID without SMT's leading apostrophe. */
  meterId: string;
  channel: string;
  /** Local calendar date, `YYYY-MM-DD`. */
  date: string;
  /** Which layout it came from. */
  layout: SmtLayout;
  /** Present intervals in time order (missing ones are left out, never zero); none for `daily-reads`. */
  readings: IntervalReading[];
  /** Register reads (`daily-reads`: the meter's register at the end of the day), on their own channel. */
  registers?: RegisterReading[];
  /** Intervals the file left blank. */
  missing: number;
  /**
   * LSE status codes that are neither actual nor estimated as far as we know, by reading start
   * (ISO). Kept beside the reading rather than guessed at; see docs/decisions.md.
   */
  unknownStatuses?: Record<string, string>;
}

/** The layouts the parsers read (each recognised by its first line). */
export type SmtLayout = 'interval-csv' | 'lse' | 'daily-reads';

/**
 * Why clear content is refused: `layout` (a known type that breaks its rules), `unknown-type`
 * (a header we do not recognise), `unsupported-type` (recognised and refused by decision: monthly
 * billing summaries, docs/smt.md), `bundle` (a ZIP beyond its member count or size limits).
 */
export type SmtRefusal = 'layout' | 'unknown-type' | 'unsupported-type' | 'bundle';

/** The file is not in a layout we understand, or breaks its own rules. Never retried: replay after a fix. */
export class SmtLayoutError extends Error {
  constructor(
    message: string,
    readonly line?: number,
    readonly reason: SmtRefusal = 'layout',
  ) {
    super(line === undefined ? message : `line ${line}: ${message}`);
    this.name = 'SmtLayoutError';
  }
}

export interface ParseOptions {
  /** Source of the readings' originId (the archive key, or the file name in the CLI). */
  originId: string;
  /** @default SMT_TIME_ZONE */
  timeZone?: string;
  /**
   * Revision for LSE cuts that carry no 00000004 time stamp (epoch seconds); typically the
   * file's modification time on the SMT server. Interval CSVs always carry REVISION_DATE.
   */
  fallbackRevision?: number;
  /** The clock revisions are judged by (none may lie in the future; see values.ts). @default new Date() */
  now?: Date;
  /**
   * Only SMT's own spellings (`MM/DD/YYYY HH:MM:SS` revisions): refuse the unambiguous variants a
   * spreadsheet writes when it re-saves an export (see docs/smt.md). @default false
   */
  strict?: boolean;
}
