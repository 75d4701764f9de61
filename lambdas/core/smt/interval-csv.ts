/**
 * SMT's 15-minute interval CSV (header in ../shared/DESIGN.md §3, validated exactly: layouts drift
 * and a silently shifted column would store wrong numbers).
 *
 *   ESIID,USAGE_DATE,REVISION_DATE,USAGE_START_TIME,USAGE_END_TIME,USAGE_KWH,ESTIMATED_ACTUAL,CONSUMPTION_SURPLUSGENERATION
 *   '10443720004766435,11/20/2026,11/21/2026 06:12:45,00:00,00:15,0.213,A,Consumption
 *
 * Rows are grouped per (ESIID, channel, local date); a group is emitted as one SmtDay as soon as
 * it holds the day's rows (96, or 100 on the fall-back day, 96 with a blank phantom hour on the
 * spring-forward day), so memory holds only days in progress, whatever the file's size or order.
 * Rows are placed by position within their day (see local-day.ts). A blank USAGE_KWH is a
 * missing interval (never zero); REVISION_DATE (local time) in epoch seconds is the revision.
 */
import { CHANNELS, type Quality } from '../reading.ts';
import { localDayGrid, localWallTimeToUtc, type LocalDayGrid } from './local-day.ts';
import { SMT_TIME_ZONE, SmtLayoutError, type IntervalReading, type ParseOptions, type SmtDay } from './model.ts';

export const INTERVAL_CSV_HEADER = [
  'ESIID',
  'USAGE_DATE',
  'REVISION_DATE',
  'USAGE_START_TIME',
  'USAGE_END_TIME',
  'USAGE_KWH',
  'ESTIMATED_ACTUAL',
  'CONSUMPTION_SURPLUSGENERATION',
] as const;

const CHANNEL_OF: Readonly<Record<string, string>> = {
  consumption: CHANNELS.activeEnergyImport,
  'surplus generation': CHANNELS.activeEnergyExport,
};

const ESIID = /^\d{17}$|^\d{22}$/;
const DATE = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/;
const REVISION = /^(\d{1,2})\/(\d{1,2})\/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})$/;
const TIME = /^(\d{1,2}):(\d{2})$/;

/** True when `line` is the interval CSV header (case and surrounding blanks ignored). */
export function isIntervalCsvHeader(line: string): boolean {
  return splitCsv(line).map((f) => f.toUpperCase()).join(',') === INTERVAL_CSV_HEADER.join(',');
}

interface Row {
  kwh: string;
  flag: string;
  revision: number;
  start: string;
  end: string;
  line: number;
}

interface Group {
  meterId: string;
  channel: string;
  grid: LocalDayGrid;
  rows: Row[];
}

export class IntervalCsvParser {
  private readonly timeZone: string;
  private readonly originId: string;
  private readonly open = new Map<string, Group>();
  private readonly emitted = new Set<string>();
  private readonly revisions = new Map<string, number>();
  private readonly dates = new Map<string, string>();
  private headerSeen = false;

  constructor(options: ParseOptions) {
    this.timeZone = options.timeZone ?? SMT_TIME_ZONE;
    this.originId = options.originId;
  }

  /** Takes one line (1-based number for messages); returns the days it completed. */
  push(line: string, lineNumber: number): SmtDay[] {
    if (!this.headerSeen) {
      if (!isIntervalCsvHeader(line)) {
        throw new SmtLayoutError(`unknown header ${JSON.stringify(line.slice(0, 200))}; expected ${INTERVAL_CSV_HEADER.join(',')}`, lineNumber);
      }
      this.headerSeen = true;
      return [];
    }
    if (line.trim() === '') return [];
    const fields = splitCsv(line);
    if (fields.length !== INTERVAL_CSV_HEADER.length) {
      throw new SmtLayoutError(`expected ${INTERVAL_CSV_HEADER.length} fields, found ${fields.length}`, lineNumber);
    }
    const [esiidField, dateField, revisionField, startField, endField, kwh, flag, channelField] = fields as [string, string, string, string, string, string, string, string];
    const meterId = esiidField.startsWith("'") ? esiidField.slice(1) : esiidField;
    if (!ESIID.test(meterId)) throw new SmtLayoutError(`ESIID ${JSON.stringify(esiidField)} is not 17 or 22 digits`, lineNumber);
    const channel = CHANNEL_OF[channelField.toLowerCase()];
    if (!channel) {
      throw new SmtLayoutError(`CONSUMPTION_SURPLUSGENERATION ${JSON.stringify(channelField)} is neither Consumption nor Surplus Generation`, lineNumber);
    }
    const date = this.date(dateField, lineNumber);
    const key = `${meterId}|${channel}|${date}`;
    let group = this.open.get(key);
    if (!group) {
      if (this.emitted.has(key)) throw new SmtLayoutError(`more rows for ${meterId} ${channelField} ${date} after its day was complete`, lineNumber);
      group = { meterId, channel, grid: localDayGrid(date, this.timeZone), rows: [] };
      this.open.set(key, group);
    }
    group.rows.push({ kwh, flag, revision: this.revision(revisionField, lineNumber), start: startField, end: endField, line: lineNumber });
    if (group.rows.length < group.grid.rows) return [];
    this.open.delete(key);
    this.emitted.add(key);
    return [this.toDay(group)];
  }

  /** Call at the end of the input: a day left incomplete is a layout error (no guessing which rows are missing). */
  end(): SmtDay[] {
    if (!this.headerSeen) throw new SmtLayoutError('empty file: no interval CSV header');
    const incomplete = [...this.open.values()][0];
    if (incomplete) {
      throw new SmtLayoutError(
        `${incomplete.meterId} ${incomplete.channel} ${incomplete.grid.date} has ${incomplete.rows.length} rows; a whole day has ${incomplete.grid.rows}` +
          (this.open.size > 1 ? ` (and ${this.open.size - 1} more incomplete days)` : ''),
      );
    }
    return [];
  }

  private toDay(group: Group): SmtDay {
    const { grid } = group;
    const readings: IntervalReading[] = [];
    let missing = 0;
    const stepMs = grid.intervalSeconds * 1000;
    const checkLabels = grid.rows === grid.intervals && grid.intervals * grid.intervalSeconds === 86_400;
    group.rows.forEach((row, position) => {
      if (checkLabels) {
        // On ordinary days the labels are unambiguous: a mismatch means rows out of order or a shifted file.
        const expectedStart = label(position * grid.intervalSeconds);
        const expectedEnd = label(((position + 1) * grid.intervalSeconds) % 86_400);
        if (normalTime(row.start) !== expectedStart || (normalTime(row.end) !== expectedEnd && !(position === grid.rows - 1 && normalTime(row.end) === '24:00'))) {
          throw new SmtLayoutError(
            `row ${position + 1} of ${group.meterId} ${grid.date} is labelled ${row.start.trim()}-${row.end.trim()}, expected ${expectedStart}-${expectedEnd} (rows must be in time order)`,
            row.line,
          );
        }
      }
      const interval = grid.intervalOfRow(position);
      const kwh = row.kwh;
      if (interval < 0) {
        if (kwh !== '') throw new SmtLayoutError(`${group.meterId} ${grid.date}: the non-existent hour of the spring-forward day carries a value (${kwh})`, row.line);
        return;
      }
      if (kwh === '') {
        missing += 1;
        return;
      }
      const value = Number(kwh);
      if (!Number.isFinite(value) || !/^-?\d*\.?\d+(?:[eE][-+]?\d+)?$/.test(kwh)) throw new SmtLayoutError(`USAGE_KWH ${JSON.stringify(kwh)} is not a number`, row.line);
      const quality = qualityOf(row.flag, row.line);
      const start = grid.startMs + interval * stepMs;
      readings.push({
        kind: 'interval',
        meterId: group.meterId,
        channel: group.channel,
        start: new Date(start),
        end: new Date(start + stepMs),
        value,
        unit: 'kWh',
        quality,
        revision: row.revision,
        source: 'smt',
        originId: this.originId,
      });
    });
    return { meterId: group.meterId, channel: group.channel, date: grid.date, layout: 'interval-csv', readings, missing };
  }

  private date(field: string, line: number): string {
    const cached = this.dates.get(field);
    if (cached) return cached;
    const match = DATE.exec(field);
    if (!match) throw new SmtLayoutError(`USAGE_DATE ${JSON.stringify(field)} is not MM/DD/YYYY`, line);
    const [, month, day, year] = match as unknown as [string, string, string, string];
    const iso = `${year}-${month.padStart(2, '0')}-${day.padStart(2, '0')}`;
    const check = new Date(`${iso}T00:00:00Z`);
    if (Number.isNaN(check.getTime()) || check.toISOString().slice(0, 10) !== iso) throw new SmtLayoutError(`USAGE_DATE ${JSON.stringify(field)} is not a calendar date`, line);
    this.dates.set(field, iso);
    return iso;
  }

  private revision(field: string, line: number): number {
    const cached = this.revisions.get(field);
    if (cached !== undefined) return cached;
    const match = REVISION.exec(field);
    if (!match) throw new SmtLayoutError(`REVISION_DATE ${JSON.stringify(field)} is not MM/DD/YYYY HH:MM:SS`, line);
    const [month, day, year, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) {
      throw new SmtLayoutError(`REVISION_DATE ${JSON.stringify(field)} is not a valid date and time`, line);
    }
    const seconds = Math.floor(localWallTimeToUtc(year, month, day, hour, minute, second, this.timeZone) / 1000);
    if (this.revisions.size > 10_000) this.revisions.clear();
    this.revisions.set(field, seconds);
    return seconds;
  }
}

function qualityOf(flag: string, line: number): Quality {
  if (flag === 'A' || flag === 'a') return 'actual';
  if (flag === 'E' || flag === 'e') return 'estimated';
  throw new SmtLayoutError(`ESTIMATED_ACTUAL ${JSON.stringify(flag)} must be A or E when USAGE_KWH is given`, line);
}

/** Splits a CSV line; SMT writes no quoted commas, but tolerate fields wrapped in quotes and blanks. */
export function splitCsv(line: string): string[] {
  const fields = line.split(',');
  for (let i = 0; i < fields.length; i++) {
    let field = fields[i]!.trim();
    if (field.length >= 2 && field.startsWith('"') && field.endsWith('"')) field = field.slice(1, -1).trim();
    fields[i] = field;
  }
  return fields;
}

function normalTime(field: string): string {
  const match = TIME.exec(field.trim());
  if (!match) return field.trim();
  return `${match[1]!.padStart(2, '0')}:${match[2]}`;
}

function label(secondsOfDay: number): string {
  const hours = Math.floor(secondsOfDay / 3600);
  const minutes = Math.floor((secondsOfDay % 3600) / 60);
  return `${hours < 10 ? '0' : ''}${hours}:${minutes < 10 ? '0' : ''}${minutes}`;
}
