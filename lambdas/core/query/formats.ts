/**
 * Output formats of the query core: JSON (the API's body; the CLI prints the same readings as
 * JSON lines), CSV and Green Button (espi.ts). One function per format, shared by API and CLI.
 */
import { readingToJson, type Reading } from '../../../shared/reading.ts';
import type { MeterSummary } from './readings-query.ts';

export const FORMATS = ['json', 'csv', 'espi'] as const;
export type Format = (typeof FORMATS)[number];

export const CONTENT_TYPES: Record<Format, string> = {
  json: 'application/json',
  csv: 'text/csv; charset=utf-8; header=present',
  // What Green Button Download My Data files are served as.
  espi: 'application/atom+xml',
};

export const CSV_HEADER = 'meterId,channel,start,end,value,unit,quality,revision,source';

/** RFC 4180 quoting, for the fields that could ever need it (ids and channels cannot today). */
function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * One CSV row. An interval fills `start` and `end`; a register read puts its read time `at` in
 * `start` and leaves `end` empty (an empty end is how a reader tells a register read apart).
 * Values are JavaScript's shortest round-trip decimal, times ISO-8601 UTC with milliseconds.
 */
export function csvRow(reading: Reading): string {
  const [start, end] = reading.kind === 'interval' ? [reading.start.toISOString(), reading.end.toISOString()] : [reading.at.toISOString(), ''];
  return [
    reading.meterId,
    reading.channel,
    start,
    end,
    String(reading.value),
    reading.unit,
    reading.quality,
    String(reading.revision),
    reading.source,
  ]
    .map(csvField)
    .join(',');
}

export function readingsCsv(readings: readonly Reading[], withHeader = true): string {
  const rows = readings.map(csvRow);
  if (withHeader) rows.unshift(CSV_HEADER);
  return `${rows.join('\r\n')}\r\n`;
}

/** The API's JSON body for a page of readings. */
export function readingsJson(page: { meterId: string; from: Date; to: Date; readings: readonly Reading[]; nextCursor?: string }): string {
  return JSON.stringify({
    meterId: page.meterId,
    from: page.from.toISOString(),
    to: page.to.toISOString(),
    readings: page.readings.map(readingToJson),
    ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}),
  });
}

/** A meter as the API and `meters list` show it: times ISO-8601 UTC. */
export function meterToJson(meter: MeterSummary) {
  return {
    meterId: meter.meterId,
    sources: meter.sources,
    first: meter.first.toISOString(),
    last: meter.last.toISOString(),
    channels: meter.channels.map((c) => ({
      channel: c.channel,
      units: c.units,
      intervalSeconds: c.intervalSeconds,
      sources: c.sources,
      first: c.first.toISOString(),
      last: c.last.toISOString(),
    })),
  };
}
