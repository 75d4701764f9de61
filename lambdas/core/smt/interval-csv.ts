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

/** True when `line` is the interval CSV header (case and surrounding blanks ignored). */
export function isIntervalCsvHeader(line: string): boolean {
  return splitCsv(line).map((f) => f.toUpperCase()).join(',') === INTERVAL_CSV_HEADER.join(',');
}

/** Rows of one (ESIID, channel, local date) until the day is whole; typed arrays keep garbage low on gigabyte files. */
interface Group {
  meterId: string;
  channel: string;
  channelField: string;
  grid: LocalDayGrid;
  count: number;
  /** kWh per row position; NaN where the row is blank. */
  values: Float64Array;
  /** 1 actual, 2 estimated, 0 blank. */
  quality: Uint8Array;
  revisions: Float64Array;
  done: boolean;
}

/** The last row's group, found again without slicing when the next row starts with the same fields. */
interface LastRow {
  /** The line up to the third comma: ESIID, USAGE_DATE, REVISION_DATE. */
  prefix: string;
  /** The last field, CONSUMPTION_SURPLUSGENERATION, as written. */
  channelField: string;
  revision: number;
  group: Group;
}

const COLON = 58;
const SPACE = 32;

export class IntervalCsvParser {
  private readonly timeZone: string;
  private readonly originId: string;
  private readonly open = new Map<string, Group>();
  private readonly emitted = new Set<string>();
  private readonly revisions = new Map<string, number>();
  private readonly dates = new Map<string, string>();
  private readonly commas = new Int32Array(7);
  private last: LastRow | undefined;
  private headerSeen = false;

  constructor(options: ParseOptions) {
    this.timeZone = options.timeZone ?? SMT_TIME_ZONE;
    this.originId = options.originId;
  }

  /** Takes one line (1-based number for messages); returns the days it completed. */
  push(rawLine: string, lineNumber: number): SmtDay[] {
    if (!this.headerSeen) {
      if (!isIntervalCsvHeader(rawLine)) {
        throw new SmtLayoutError(`unknown header ${JSON.stringify(rawLine.slice(0, 200))}; expected ${INTERVAL_CSV_HEADER.join(',')}`, lineNumber);
      }
      this.headerSeen = true;
      return [];
    }
    // SMT writes no quotes; tolerate a quoting exporter by dropping them (no field contains a comma).
    const line = rawLine.includes('"') ? rawLine.replace(/"/g, '') : rawLine;
    if (line.length < 16 && line.trim() === '') return [];
    const c = this.commas;
    let found = 0;
    for (let at = line.indexOf(','); at !== -1; at = line.indexOf(',', at + 1)) {
      if (found === 7) throw new SmtLayoutError(`expected ${INTERVAL_CSV_HEADER.length} fields, found more`, lineNumber);
      c[found++] = at;
    }
    if (found !== 7) throw new SmtLayoutError(`expected ${INTERVAL_CSV_HEADER.length} fields, found ${found + 1}`, lineNumber);

    let last = this.last;
    const channelLength = line.length - c[6]! - 1;
    if (!(last && c[2] === last.prefix.length && channelLength === last.channelField.length && line.startsWith(last.prefix) && line.endsWith(last.channelField))) {
      last = this.locate(line, lineNumber);
    }
    const group = last.group;
    if (group.done) throw new SmtLayoutError(`more rows for ${group.meterId} ${group.channelField} ${group.grid.date} after its day was complete`, lineNumber);
    const grid = group.grid;
    const position = group.count;

    if (grid.rows === grid.intervals && grid.intervals * grid.intervalSeconds === 86_400) {
      // On ordinary days the labels are unambiguous: a mismatch means rows out of order or a shifted file.
      const expectedStart = LABELS[position]!;
      const expectedEnd = LABELS[(position + 1) % 96]!;
      if (!timeEquals(line, c[2]! + 1, c[3]!, expectedStart) || !(timeEquals(line, c[3]! + 1, c[4]!, expectedEnd) || (position === 95 && timeEquals(line, c[3]! + 1, c[4]!, '24:00')))) {
        throw new SmtLayoutError(
          `row ${position + 1} of ${group.meterId} ${grid.date} is labelled ${line.slice(c[2]! + 1, c[3]).trim()}-${line.slice(c[3]! + 1, c[4]).trim()}, expected ${expectedStart}-${expectedEnd} (rows must be in time order)`,
          lineNumber,
        );
      }
    }

    let from = c[4]! + 1;
    let to = c[5]!;
    while (from < to && line.charCodeAt(from) === SPACE) from++;
    while (to > from && line.charCodeAt(to - 1) === SPACE) to--;
    if (from === to) {
      group.values[position] = Number.NaN;
      group.quality[position] = 0;
    } else {
      const kwh = line.slice(from, to);
      const value = Number(kwh);
      if (!Number.isFinite(value) || !NUMBER.test(kwh)) throw new SmtLayoutError(`USAGE_KWH ${JSON.stringify(kwh)} is not a number`, lineNumber);
      if (grid.phantomRows.has(position)) throw new SmtLayoutError(`${group.meterId} ${grid.date}: the non-existent hour of the spring-forward day carries a value (${kwh})`, lineNumber);
      group.values[position] = value;
      group.quality[position] = flagCode(line, c[5]! + 1, c[6]!, lineNumber);
    }
    group.revisions[position] = last.revision;
    group.count = position + 1;
    if (group.count < grid.rows) return [];
    group.done = true;
    this.open.delete(`${group.meterId}|${group.channel}|${grid.date}`);
    this.emitted.add(`${group.meterId}|${group.channel}|${grid.date}`);
    return [this.toDay(group)];
  }

  /** The slow path: a row whose ESIID, date, revision or channel differ from the previous row's. */
  private locate(line: string, lineNumber: number): LastRow {
    const c = this.commas;
    const esiidField = line.slice(0, c[0]).trim();
    // Copies, not slices: a slice keeps the whole 1 MB chunk it came from alive for as long as the
    // readings and the emitted-days set hold it (gigabytes over a large file).
    const meterId = detach(esiidField.startsWith("'") ? esiidField.slice(1) : esiidField);
    if (!ESIID.test(meterId)) throw new SmtLayoutError(`ESIID ${JSON.stringify(esiidField)} is not 17 or 22 digits`, lineNumber);
    const channelField = detach(line.slice(c[6]! + 1));
    const channel = CHANNEL_OF[channelField.trim().toLowerCase()];
    if (!channel) {
      throw new SmtLayoutError(`CONSUMPTION_SURPLUSGENERATION ${JSON.stringify(channelField.trim())} is neither Consumption nor Surplus Generation`, lineNumber);
    }
    const date = this.date(line.slice(c[0]! + 1, c[1]).trim(), lineNumber);
    const revision = this.revision(line.slice(c[1]! + 1, c[2]).trim(), lineNumber);
    const key = `${meterId}|${channel}|${date}`;
    let group = this.open.get(key);
    if (!group) {
      if (this.emitted.has(key)) throw new SmtLayoutError(`more rows for ${meterId} ${channelField.trim()} ${date} after its day was complete`, lineNumber);
      const grid = localDayGrid(date, this.timeZone);
      group = {
        meterId, channel, channelField: channelField.trim(), grid, count: 0, done: false,
        values: new Float64Array(grid.rows), quality: new Uint8Array(grid.rows), revisions: new Float64Array(grid.rows),
      };
      this.open.set(key, group);
    }
    this.last = { prefix: detach(line.slice(0, c[2])), channelField, revision, group };
    return this.last;
  }

  /** Call at the end of the input: a day left incomplete is a layout error (no guessing which rows are missing). */
  end(): SmtDay[] {
    if (!this.headerSeen) throw new SmtLayoutError('empty file: no interval CSV header');
    const incomplete = [...this.open.values()][0];
    if (incomplete) {
      throw new SmtLayoutError(
        `${incomplete.meterId} ${incomplete.channel} ${incomplete.grid.date} has ${incomplete.count} rows; a whole day has ${incomplete.grid.rows}` +
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
    // Consecutive intervals share the instant between them: one Date serves as end and next start.
    let previousEnd: Date | undefined;
    let previousEndMs = Number.NaN;
    for (let position = 0; position < grid.rows; position++) {
      const interval = grid.intervalOfRow(position);
      if (interval < 0) continue;
      const quality = group.quality[position];
      if (quality === 0) {
        missing += 1;
        continue;
      }
      const startMs = grid.startMs + interval * stepMs;
      const start = previousEndMs === startMs && previousEnd ? previousEnd : new Date(startMs);
      const end = new Date(startMs + stepMs);
      previousEnd = end;
      previousEndMs = startMs + stepMs;
      readings.push({
        kind: 'interval',
        meterId: group.meterId,
        channel: group.channel,
        start,
        end,
        value: group.values[position]!,
        unit: 'kWh',
        quality: quality === 1 ? 'actual' : 'estimated',
        revision: group.revisions[position]!,
        source: 'smt',
        originId: this.originId,
      });
    }
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
    if (this.dates.size > 10_000) this.dates.clear();
    this.dates.set(detach(field), iso);
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
    this.revisions.set(detach(field), seconds);
    return seconds;
  }
}

const NUMBER = /^-?\d*\.?\d+(?:[eE][-+]?\d+)?$/;

/** A flat copy of a (short) string that shares no memory with the text it was sliced from. */
function detach(text: string): string {
  return Buffer.from(text, 'utf8').toString('utf8');
}

/** `HH:MM` labels of an ordinary day's 96 quarter hours. */
const LABELS = Array.from({ length: 96 }, (_, i) => label(i * 900));

/** Whether line[from, to), blanks trimmed, is the time `expected` (`HH:MM`; `H:MM` accepted). */
function timeEquals(line: string, from: number, to: number, expected: string): boolean {
  while (from < to && line.charCodeAt(from) === SPACE) from++;
  while (to > from && line.charCodeAt(to - 1) === SPACE) to--;
  const length = to - from;
  if (length === 5) return line.startsWith(expected, from);
  if (length === 4 && expected.charCodeAt(0) === 48 && line.charCodeAt(from + 1) === COLON) {
    return line.charCodeAt(from) === expected.charCodeAt(1) && line.startsWith(expected.slice(2), from + 1);
  }
  return false;
}

/** ESTIMATED_ACTUAL of line[from, to): 1 actual, 2 estimated. */
function flagCode(line: string, from: number, to: number, lineNumber: number): number {
  while (from < to && line.charCodeAt(from) === SPACE) from++;
  while (to > from && line.charCodeAt(to - 1) === SPACE) to--;
  if (to - from === 1) {
    const code = line.charCodeAt(from) | 0x20; // lower case
    if (code === 97) return 1; // a
    if (code === 101) return 2; // e
  }
  return qualityOf(line.slice(from, to), lineNumber) === 'actual' ? 1 : 2;
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

function label(secondsOfDay: number): string {
  const hours = Math.floor(secondsOfDay / 3600);
  const minutes = Math.floor((secondsOfDay % 3600) / 60);
  return `${hours < 10 ? '0' : ''}${hours}:${minutes < 10 ? '0' : ''}${minutes}`;
}
