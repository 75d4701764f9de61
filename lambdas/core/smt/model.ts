/**
 * What the SMT parsers produce: whole local days per ESIID and channel, each already placed on
 * the UTC time line, as canonical interval readings. The process step writes one day as one
 * store delivery; the CLI prints the readings.
 */
import type { Reading } from '../../../shared/reading.ts';

/** The zone SMT's local prevailing times are in (ERCOT). */
export const SMT_TIME_ZONE = 'America/Chicago';

export type IntervalReading = Extract<Reading, { kind: 'interval' }>;

export interface SmtDay {
  /** ESIID without SMT's leading apostrophe. */
  meterId: string;
  channel: string;
  /** Local calendar date, `YYYY-MM-DD`. */
  date: string;
  /** Which layout it came from. */
  layout: 'interval-csv' | 'lse';
  /** Present intervals in time order (missing ones are left out, never zero). */
  readings: IntervalReading[];
  /** Intervals the file left blank. */
  missing: number;
  /**
   * LSE status codes that are neither actual nor estimated as far as we know, by reading start
   * (ISO). Kept beside the reading rather than guessed at; see docs/decisions.md.
   */
  unknownStatuses?: Record<string, string>;
}

/** The file is not in a layout we understand, or breaks its own rules. Never retried: replay after a fix. */
export class SmtLayoutError extends Error {
  constructor(
    message: string,
    readonly line?: number,
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
}
