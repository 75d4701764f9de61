/**
 * SMT's other CSV reports, recognised by their header like the interval CSV:
 *
 * - Daily register reads (`DailyMeterUsage…`): one row per ESIID and day, the meter's register at
 *   the start and end of the local day. Stored as register readings (END_READING at the next
 *   local midnight, kWh) on their own channel, `energy.active.import.register`, so they never
 *   share an identity with the interval channel.
 *     ESIID,USAGE_DATE,REVISION_DATE,START_READING,END_READING,USAGE_KWH
 * - Monthly billing summaries (`MonthlyBilling…`): recognised (ESIID, START_DATE, END_DATE and a
 *   kWh/kW column) and refused `unsupported-type` by decision (docs/smt.md): the original stays
 *   in the archive.
 *
 * The column names of both are as SMT's portal exports name them in public descriptions; no
 * real delivery of either was at hand, so the recognisers are strict and anything else is
 * refused `unknown-type` rather than guessed at.
 */
import { CHANNELS } from '../../../../shared/reading.ts';
import { SMT_TIME_ZONE, SmtLayoutError, type ParseOptions, type RegisterReading, type SmtDay } from '../model.ts';
import { INTERVAL_CSV_HEADER, revisionOf, splitCsv, usageDateOf } from './interval-csv.ts';
import { localDayGrid } from './local-day.ts';
import { implausibleRevision, parseDecimal } from './values.ts';

export const DAILY_READS_HEADER = ['ESIID', 'USAGE_DATE', 'REVISION_DATE', 'START_READING', 'END_READING', 'USAGE_KWH'] as const;

/** The register channel of daily reads (the interval channel is CHANNELS.activeEnergyImport). */
export const DAILY_READ_CHANNEL = CHANNELS.activeEnergyImportRegister;

const ESIID = /^\d{17}$|^\d{22}$/;

const upperFields = (line: string) => splitCsv(line).map((field) => field.toUpperCase());

export function isDailyReadsHeader(line: string): boolean {
  return upperFields(line).join(',') === DAILY_READS_HEADER.join(',');
}

export function isMonthlyBillingHeader(line: string): boolean {
  const fields = upperFields(line);
  return fields[0] === 'ESIID' && fields.includes('START_DATE') && fields.includes('END_DATE') && fields.some((f) => /(^|_)KWH?($|_)/.test(f));
}

/**
 * A header that shares most of its columns with the interval CSV's is that report drifted
 * (a renamed column): a `layout` error, as before. Anything else is a type we do not know.
 */
export function looksLikeIntervalCsv(line: string): boolean {
  const fields = new Set(upperFields(line));
  return INTERVAL_CSV_HEADER.filter((name) => fields.has(name)).length >= INTERVAL_CSV_HEADER.length / 2;
}

/** Daily register reads, one SmtDay per row (text lines: these files are small). */
export class DailyReadsParser {
  private readonly timeZone: string;
  private readonly seen = new Set<string>();
  private headerSeen = false;

  constructor(private readonly options: ParseOptions) {
    this.timeZone = options.timeZone ?? SMT_TIME_ZONE;
  }

  push(line: string, lineNumber: number): SmtDay[] {
    if (!this.headerSeen) {
      this.headerSeen = true;
      return [];
    }
    if (line.trim() === '') return [];
    const fields = splitCsv(line);
    if (fields.length !== DAILY_READS_HEADER.length)
      throw new SmtLayoutError(`expected ${DAILY_READS_HEADER.length} fields, found ${fields.length}`, lineNumber);
    const [esiidField, dateField, revisionField, , endField] = fields as [string, string, string, string, string, string];
    const meterId = esiidField.startsWith("'") ? esiidField.slice(1) : esiidField;
    if (!ESIID.test(meterId)) throw new SmtLayoutError(`ESIID ${JSON.stringify(esiidField)} is not 17 or 22 digits`, lineNumber);
    const strict = this.options.strict === true;
    const date = usageDateOf(dateField, lineNumber, strict);
    const revision = revisionOf(revisionField, lineNumber, this.timeZone, strict);
    const grid = localDayGrid(date, this.timeZone);
    const implausible = implausibleRevision(revision, grid.startMs, this.options.now ?? new Date());
    if (implausible) throw new SmtLayoutError(`REVISION_DATE ${JSON.stringify(revisionField)} ${implausible}`, lineNumber);
    const key = `${meterId}|${date}`;
    if (this.seen.has(key)) throw new SmtLayoutError(`a second row for ${meterId} ${date}`, lineNumber);
    this.seen.add(key);
    const base = { meterId, channel: DAILY_READ_CHANNEL, date, layout: 'daily-reads' as const, readings: [] };
    if (endField === '') return [{ ...base, missing: 1, registers: [] }];
    const value = parseDecimal(endField);
    if (value === undefined) throw new SmtLayoutError(`END_READING ${JSON.stringify(endField)} is not a number`, lineNumber);
    const register: RegisterReading = {
      kind: 'register',
      meterId,
      channel: DAILY_READ_CHANNEL,
      // The register at the end of the local day: the next local midnight (23 or 25 hours on DST days).
      at: new Date(grid.startMs + grid.intervals * grid.intervalSeconds * 1000),
      value,
      unit: 'kWh',
      quality: 'actual',
      revision,
      source: 'smt',
      originId: this.options.originId,
    };
    return [{ ...base, missing: 0, registers: [register] }];
  }

  end(): SmtDay[] {
    return [];
  }
}
