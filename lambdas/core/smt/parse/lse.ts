/**
 * LSE (LodeStar Enhanced; ERCOT Retail Market Guide §9 App. G), record layout in
 * docs/design.md §3. A file is a series of "cuts", one per ESIID and channel:
 *
 *   00000001,<ESIID>,<channel>,<start>,<stop>,<DST flag>,<invalid flag>        header
 *   00000002,...,<seconds per interval>,<unit of measure>,...                   interval info
 *   00000003,<description>   00000004,<time stamp>,<origin>                    optional
 *   10000001,<value>,<status>,<time>,<value>,<status>,<time>,...               data records
 *
 * Intervals follow each other from the cut's start; their count must equal
 * (stop - start) / seconds per interval (stop may be the last second of the last interval).
 * A cut is split into local days, each an SmtDay. The 00000004 time stamp is the revision.
 *
 * Values follow the decimal grammar the interval CSV uses (values.ts); a blank value, quoted or
 * not, is a missing interval (never zero). A second cut for the same ESIID and channel over an
 * overlapping span is refused: which of its values would be meant is anyone's guess.
 */
import { CHANNELS, type Quality, type Unit } from '../../../../shared/reading.ts';
import { localDate, startOfLocalDay, utcOffsetMs } from '../../time.ts';
import { localWallTimeToUtc } from './local-day.ts';
import { SMT_TIME_ZONE, SmtLayoutError, type IntervalReading, type ParseOptions, type SmtDay } from '../model.ts';
import { implausibleRevision, isCalendarDateTime, parseDecimal } from './values.ts';

/** LSE channel numbers SMT uses. */
const CHANNEL_OF: Readonly<Record<string, string>> = {
  '1': CHANNELS.activeEnergyExport, // generation
  '4': CHANNELS.activeEnergyImport, // load
};

/** Units of measure we map; anything else is refused rather than stored under a guess. */
const UNIT_OF: Readonly<Record<string, Unit>> = { KWH: 'kWh', KH: 'kWh', WH: 'Wh', KVARH: 'kvarh', KVAH: 'kVAh' };

const STAMP = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/;

export function isLseRecord(line: string): boolean {
  return /^\s*"?0{7}1"?\s*,/.test(line);
}

interface Cut {
  line: number;
  meterId: string;
  channel: string;
  startMs: number;
  stopMs: number;
  dstFlag: 'Y' | 'N';
  intervalSeconds?: number;
  unit?: Unit;
  /** value -> (value * pulse multiplier + pulse offset) * meter multiplier + meter offset (00000002). */
  scale: { pulseMultiplier: number; pulseOffset: number; meterMultiplier: number; meterOffset: number };
  revision?: number;
  /** The line of the 00000004 record the revision came from, for messages. */
  revisionLine?: number;
  values: Array<{ value: string; status: string; time: string; line: number }>;
}

export class LseParser {
  private readonly timeZone: string;
  private readonly originId: string;
  private readonly fallbackRevision: number | undefined;
  private readonly now: Date;
  private cut: Cut | undefined;
  private cuts = 0;
  /** Spans of the cuts read so far, per `meterId|channel`, with their header line. */
  private readonly spans = new Map<string, Array<{ startMs: number; stopMs: number; line: number }>>();

  constructor(options: ParseOptions) {
    this.timeZone = options.timeZone ?? SMT_TIME_ZONE;
    this.originId = options.originId;
    this.fallbackRevision = options.fallbackRevision;
    this.now = options.now ?? new Date();
  }

  push(line: string, lineNumber: number): SmtDay[] {
    if (line.trim() === '') return [];
    // Unquoted, then trimmed: a quoted blank is blank (it was read as " ", which Number() made 0).
    const fields = line.split(',').map((field) =>
      field
        .trim()
        .replace(/^"(.*)"$/, '$1')
        .trim(),
    );
    const sortCode = fields[0] ?? '';
    if (!/^\d{8}$/.test(sortCode))
      throw new SmtLayoutError(`LSE record without an 8-digit sort code: ${JSON.stringify(line.slice(0, 80))}`, lineNumber);
    if (sortCode === '00000001') {
      const finished = this.finishCut();
      this.cut = this.header(fields, lineNumber);
      this.cuts += 1;
      return finished;
    }
    const cut = this.cut;
    if (!cut) throw new SmtLayoutError(`record ${sortCode} before the first 00000001 header`, lineNumber);
    if (sortCode === '00000002') {
      if (fields.length < 13) throw new SmtLayoutError(`00000002 needs 12 fields after the sort code, found ${fields.length - 1}`, lineNumber);
      const [, , , meterMultiplier, meterOffset, pulseMultiplier, pulseOffset, seconds, unitOfMeasure] = fields;
      const spi = /^\d{1,5}$/.test(seconds ?? '') ? Number(seconds) : Number.NaN;
      if (!Number.isInteger(spi) || spi <= 0 || 86_400 % spi !== 0)
        throw new SmtLayoutError(`seconds per interval ${JSON.stringify(seconds)} does not divide a day`, lineNumber);
      const factor = (name: string, text: string | undefined, blank: number) => {
        if (text === undefined || text === '') return blank;
        const value = parseDecimal(text);
        if (value === undefined) throw new SmtLayoutError(`00000002 ${name} ${JSON.stringify(text)} is not a number`, lineNumber);
        return value;
      };
      cut.scale = {
        meterMultiplier: factor('meter multiplier', meterMultiplier, 1),
        meterOffset: factor('meter offset', meterOffset, 0),
        pulseMultiplier: factor('pulse multiplier', pulseMultiplier, 1),
        pulseOffset: factor('pulse offset', pulseOffset, 0),
      };
      if (cut.scale.meterMultiplier === 0 || cut.scale.pulseMultiplier === 0)
        throw new SmtLayoutError('00000002: a multiplier of 0 would store every interval as its offset', lineNumber);
      const unit = UNIT_OF[(unitOfMeasure ?? '').toUpperCase()];
      if (!unit)
        throw new SmtLayoutError(`unit of measure ${JSON.stringify(unitOfMeasure)} is not one of ${Object.keys(UNIT_OF).join(', ')}`, lineNumber);
      cut.intervalSeconds = spi;
      cut.unit = unit;
      return [];
    }
    if (sortCode === '00000003') return [];
    if (sortCode === '00000004') {
      const stamp = fields[1] ?? '';
      if (stamp !== '') {
        cut.revision = Math.floor(this.instant(stamp, 'Y', lineNumber, 'time stamp') / 1000);
        cut.revisionLine = lineNumber;
      }
      return [];
    }
    if (sortCode < '10000000') throw new SmtLayoutError(`unknown record type ${sortCode}`, lineNumber);
    if ((fields.length - 1) % 3 !== 0)
      throw new SmtLayoutError(`data record has ${fields.length - 1} fields; expected triples of value, status, time`, lineNumber);
    for (let i = 1; i < fields.length; i += 3) cut.values.push({ value: fields[i]!, status: fields[i + 1]!, time: fields[i + 2]!, line: lineNumber });
    return [];
  }

  end(): SmtDay[] {
    const finished = this.finishCut();
    if (this.cuts === 0) throw new SmtLayoutError('no 00000001 header record: not an LSE file');
    return finished;
  }

  private header(fields: string[], line: number): Cut {
    if (fields.length < 7) throw new SmtLayoutError(`00000001 needs 6 fields after the sort code, found ${fields.length - 1}`, line);
    const [, esiidField, channelField, start, stop, dstFlag] = fields as [string, string, string, string, string, string];
    // A copy, not a slice of the record's line: the id outlives the line in every reading of the cut.
    const meterId = Buffer.from(esiidField.replace(/^'/, ''), 'utf8').toString('utf8');
    if (!/^\d{17}$|^\d{22}$/.test(meterId)) throw new SmtLayoutError(`ESIID ${JSON.stringify(esiidField)} is not 17 or 22 digits`, line);
    const channelNumber = channelField.replace(/^0+(?=\d)/, '');
    if (!/^\d{1,3}$/.test(channelNumber)) throw new SmtLayoutError(`channel ${JSON.stringify(channelField)} is not a channel number`, line);
    // 1 and 4 are the energy channels every TDSP sends; any other number is kept on a channel of its own.
    const channel = CHANNEL_OF[channelNumber] ?? `lse.channel.${channelNumber}`;
    if (dstFlag !== 'Y' && dstFlag !== 'N') throw new SmtLayoutError(`DST flag ${JSON.stringify(dstFlag)} must be Y or N`, line);
    const startMs = this.instant(start, dstFlag, line, 'start');
    let stopMs = this.instant(stop, dstFlag, line, 'stop');
    // "Stop" may name the last second of the last interval rather than its end.
    if (stop.endsWith('59')) stopMs += 1000;
    if (stopMs <= startMs) throw new SmtLayoutError(`stop ${stop} is not after start ${start}`, line);
    const spans = this.spans.get(`${meterId}|${channel}`) ?? [];
    const overlapped = spans.find((span) => span.startMs < stopMs && startMs < span.stopMs);
    if (overlapped)
      throw new SmtLayoutError(
        `duplicate cut: ESIID ${meterId} channel ${channelField} from ${start} overlaps the cut of line ${overlapped.line}`,
        line,
      );
    spans.push({ startMs, stopMs, line });
    this.spans.set(`${meterId}|${channel}`, spans);
    return {
      line,
      meterId,
      channel,
      startMs,
      stopMs,
      dstFlag,
      values: [],
      scale: { pulseMultiplier: 1, pulseOffset: 0, meterMultiplier: 1, meterOffset: 0 },
    };
  }

  /** `YYYYMMDDHHMMSS` of an instant in the cut's basis: local prevailing time (Y) or local standard time (N). */
  private stampOf(ms: number, dstFlag: 'Y' | 'N'): string {
    const year = new Date(ms).getUTCFullYear();
    const offset =
      dstFlag === 'Y'
        ? utcOffsetMs(ms, this.timeZone)
        : Math.min(utcOffsetMs(Date.UTC(year, 0, 1), this.timeZone), utcOffsetMs(Date.UTC(year, 6, 1), this.timeZone));
    return new Date(ms + offset).toISOString().replace(/\D/g, '').slice(0, 14);
  }

  /** YYYYMMDDHHMMSS in local prevailing time (flag Y) or local standard time all year (flag N). */
  private instant(stamp: string, dstFlag: string, line: number, what: string): number {
    const match = STAMP.exec(stamp);
    if (!match) throw new SmtLayoutError(`${what} ${JSON.stringify(stamp)} is not YYYYMMDDHHMMSS`, line);
    const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
    if (!isCalendarDateTime(year, month, day, hour, minute, second))
      throw new SmtLayoutError(`${what} ${stamp} is not a valid date and time from 2000 on`, line);
    if (dstFlag === 'Y') return localWallTimeToUtc(year, month, day, hour, minute, second, this.timeZone);
    const standardOffset = Math.min(utcOffsetMs(Date.UTC(year, 0, 1), this.timeZone), utcOffsetMs(Date.UTC(year, 6, 1), this.timeZone));
    return Date.UTC(year, month - 1, day, hour, minute, second) - standardOffset;
  }

  private finishCut(): SmtDay[] {
    const cut = this.cut;
    this.cut = undefined;
    if (!cut) return [];
    if (cut.intervalSeconds === undefined || cut.unit === undefined)
      throw new SmtLayoutError(`cut of ${cut.meterId} has no 00000002 interval record`, cut.line);
    const stepMs = cut.intervalSeconds * 1000;
    const span = cut.stopMs - cut.startMs;
    if (span % stepMs !== 0)
      throw new SmtLayoutError(`cut of ${cut.meterId}: start to stop is not a whole number of ${cut.intervalSeconds} s intervals`, cut.line);
    const expected = span / stepMs;
    if (cut.values.length !== expected) {
      throw new SmtLayoutError(
        `cut of ${cut.meterId} channel ${cut.channel} has ${cut.values.length} intervals; start, stop and seconds per interval make ${expected}`,
        cut.line,
      );
    }
    const revision = cut.revision ?? this.fallbackRevision;
    if (revision === undefined) throw new SmtLayoutError(`cut of ${cut.meterId} has no 00000004 time stamp to use as revision`, cut.line);
    const implausible = implausibleRevision(
      revision,
      startOfLocalDay(localDate(new Date(cut.startMs), this.timeZone), this.timeZone).getTime(),
      this.now,
    );
    if (implausible) {
      const what =
        cut.revision !== undefined ? '00000004 time stamp' : `revision ${new Date(revision * 1000).toISOString()} (the file's modification time)`;
      throw new SmtLayoutError(`cut of ${cut.meterId}: ${what} ${implausible}`, cut.revisionLine ?? cut.line);
    }

    const days = new Map<string, SmtDay>();
    const { pulseMultiplier, pulseOffset, meterMultiplier, meterOffset } = cut.scale;
    const scaled = pulseMultiplier !== 1 || pulseOffset !== 0 || meterMultiplier !== 1 || meterOffset !== 0;
    cut.values.forEach(({ value, status, time, line }, index) => {
      const start = new Date(cut.startMs + index * stepMs);
      // The optional time field names the interval's start in the cut's time basis: a record that
      // disagrees with its position is a shifted file, refused rather than stored an interval off.
      if (time !== '' && time !== this.stampOf(start.getTime(), cut.dstFlag))
        throw new SmtLayoutError(
          `interval ${index + 1} of the cut of ${cut.meterId}: time field ${time} is not its start ${this.stampOf(start.getTime(), cut.dstFlag)}`,
          line,
        );
      const date = localDate(start, this.timeZone);
      let day = days.get(date);
      if (!day) days.set(date, (day = { meterId: cut.meterId, channel: cut.channel, date, layout: 'lse', readings: [], missing: 0 }));
      if (value === '') {
        day.missing += 1;
        return;
      }
      const raw = parseDecimal(value);
      if (raw === undefined) throw new SmtLayoutError(`interval value ${JSON.stringify(value)} is not a number`, line);
      const number = scaled ? roundTo12((raw * pulseMultiplier + pulseOffset) * meterMultiplier + meterOffset) : raw;
      const { quality, known } = qualityOf(status);
      if (!known) (day.unknownStatuses ??= {})[start.toISOString()] = status;
      const reading: IntervalReading = {
        kind: 'interval',
        meterId: cut.meterId,
        channel: cut.channel,
        start,
        end: new Date(start.getTime() + stepMs),
        value: number,
        unit: cut.unit!,
        quality,
        revision,
        source: 'smt',
        originId: this.originId,
      };
      day.readings.push(reading);
    });
    return [...days.values()];
  }
}

/**
 * Blank or A: actual; E: estimated. Other codes are kept (SmtDay.unknownStatuses) and the
 * reading is stored as estimated, so any later actual value replaces it (docs/decisions.md).
 */
function qualityOf(status: string): { quality: Quality; known: boolean } {
  const code = status.toUpperCase();
  if (code === '' || code === 'A') return { quality: 'actual', known: true };
  if (code === 'E') return { quality: 'estimated', known: true };
  return { quality: 'estimated', known: false };
}

/** A scaled value without binary noise (0.1 * 3 = 0.30000000000000004): 12 significant digits are beyond any meter's. */
function roundTo12(value: number): number {
  return Number(value.toPrecision(12));
}
