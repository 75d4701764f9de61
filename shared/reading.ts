/**
 * The canonical reading: what every source adapter (IoT telemetry, SMT files, READY webhooks)
 * turns its input into, and the only thing the store accepts.
 *
 * A reading is identified by (meter, channel, interval start) — or, for a register, (meter,
 * channel, read time). Its identity never depends on when or how it arrived; `revision` and
 * `quality` only decide which of two values for the same identity wins (see interval-block.ts).
 */
import { z } from 'zod';
import { preview } from './untrusted-json.ts';

/** Units we know how to store. Anything else is refused rather than stored under a guess. */
export const UNITS = [
  // energy
  'Wh',
  'kWh',
  'MWh',
  'varh',
  'kvarh',
  'VAh',
  'kVAh',
  // power
  'W',
  'kW',
  'var',
  'kvar',
  'VA',
  'kVA',
  // grid
  'V',
  'A',
  'Hz',
  'PF',
  // volume and flow (water, gas, heat)
  'm3',
  'L',
  'gal',
  'ft3',
  'm3/h',
  'L/h',
  'gal/min',
  // heat and temperature
  'GJ',
  'MJ',
  'degC',
  // dimensionless counters (pulses, alarm counts)
  'count',
] as const;
export type Unit = (typeof UNITS)[number];

export const SOURCES = ['iot', 'smt', 'ready'] as const;
export type Source = (typeof SOURCES)[number];

export const QUALITIES = ['actual', 'estimated'] as const;
export type Quality = (typeof QUALITIES)[number];

/**
 * Well-known channel names. Channels are open-ended (a READY register or a Modbus register map
 * may add its own), but these are the names the adapters use so the same quantity from two
 * sources lands on the same identity.
 */
export const CHANNELS = {
  activeEnergyImport: 'energy.active.import',
  activeEnergyExport: 'energy.active.export',
  /** The active import register (meter index), read at an instant: SMT's daily register reads. */
  activeEnergyImportRegister: 'energy.active.import.register',
  reactiveEnergyImport: 'energy.reactive.import',
  waterVolume: 'water.volume',
  waterFlow: 'water.flow',
} as const;

interface ReadingBase {
  /** Meter identifier as the source names it (ESIID for SMT, serial for READY, Modbus id for IoT). */
  meterId: string;
  /** What is measured, e.g. `energy.active.import`; see CHANNELS. */
  channel: string;
  value: number;
  unit: Unit;
  quality: Quality;
  /**
   * Larger wins. Sources choose a monotonic number: SMT uses the REVISION_DATE in epoch seconds,
   * gateways use 0 (their readings are facts that do not get revised).
   */
  revision: number;
  source: Source;
  /** The unit of work it came from: `<gateway>/<seq>`, an SMT file name, a READY delivery id. */
  originId: string;
}

/** A quantity accumulated over [start, end), e.g. 15 minutes of kWh. */
export interface IntervalReading extends ReadingBase {
  kind: 'interval';
  start: Date;
  end: Date;
}

/** A meter register (index) value read at one instant, e.g. a water meter's total m3. */
export interface RegisterReading extends ReadingBase {
  kind: 'register';
  at: Date;
}

export type Reading = IntervalReading | RegisterReading;

/** A reading as operators and scripts see it (CLI JSON lines): times in ISO-8601 UTC with `Z`. */
export interface ReadingJson {
  meterId: string;
  channel: string;
  kind: Reading['kind'];
  start?: string;
  end?: string;
  at?: string;
  value: number;
  unit: Unit;
  quality: Quality;
  revision: number;
  source: Source;
  originId: string;
}

export function readingToJson(reading: Reading): ReadingJson {
  const { meterId, channel, kind, value, unit, quality, revision, source, originId } = reading;
  const times =
    reading.kind === 'interval' ? { start: reading.start.toISOString(), end: reading.end.toISOString() } : { at: reading.at.toISOString() };
  return { meterId, channel, kind, ...times, value, unit, quality, revision, source, originId };
}

/** The instant that, together with meter and channel, identifies the reading. */
export function identityInstant(reading: Reading): Date {
  return reading.kind === 'interval' ? reading.start : reading.at;
}

export interface ValidationOptions {
  /** The clock to judge "future" by; tests pass a fixed one. */
  now?: Date;
  /**
   * How far past `now` a timestamp may lie before it is refused. Devices drift; an hour covers
   * real clock skew without letting a gateway with a wrong year write next year's readings.
   * @default 3_600_000 (one hour)
   */
  maxFutureSkewMs?: number;
}

/** Readings dated before this are clock errors (a gateway that booted at 1970), not data. */
export const EARLIEST_PLAUSIBLE = Date.UTC(2000, 0, 1);
/** An interval shorter than this would make a day's block too large for one DynamoDB item. */
export const MIN_INTERVAL_SECONDS = 60;
/** Longer intervals do not fit the one-item-per-day layout (a block must hold its readings). */
export const MAX_INTERVAL_SECONDS = 86_400;

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$/;
const CHANNEL_PATTERN = /^[a-z0-9][a-z0-9._\-]{0,63}$/;

const instant = z
  .union([z.date(), z.iso.datetime({ offset: true })])
  .transform((value) => (value instanceof Date ? value : new Date(value)))
  .refine((date) => !Number.isNaN(date.getTime()), 'is not a valid instant')
  .refine((date) => date.getTime() % 1000 === 0, 'must be a whole second (identities are kept to the second)');

const baseShape = {
  meterId: z.string().regex(ID_PATTERN, 'must be 1-128 letters, digits or ._:- and start with a letter or digit'),
  channel: z.string().regex(CHANNEL_PATTERN, 'must be 1-64 lower-case letters, digits or ._- (e.g. energy.active.import)'),
  value: z.number({ error: 'must be a finite number' }),
  unit: z.enum(UNITS, { error: (issue) => `unknown unit ${preview(issue.input)}; known: ${UNITS.join(', ')}` }),
  quality: z.enum(QUALITIES),
  revision: z.number().int('must be an integer').nonnegative().max(Number.MAX_SAFE_INTEGER),
  source: z.enum(SOURCES),
  originId: z.string().min(1).max(512),
};

const readingSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('interval'), ...baseShape, start: instant, end: instant }),
  z.strictObject({ kind: z.literal('register'), ...baseShape, at: instant }),
]);

/** What an adapter hands in: like a Reading, but instants may still be ISO-8601 strings. */
export type ReadingInput = z.input<typeof readingSchema>;

export class InvalidReadingError extends Error {
  constructor(readonly reasons: string[]) {
    super(`invalid reading: ${reasons.join('; ')}`);
    this.name = 'InvalidReadingError';
  }
}

export type ValidationResult = { ok: true; reading: Reading } | { ok: false; reasons: string[] };

/** Validates one reading; never throws. Reasons name the field, so they can go back to the sender. */
export function validateReading(input: unknown, options: ValidationOptions = {}): ValidationResult {
  const parsed = readingSchema.safeParse(input);
  if (!parsed.success) {
    return {
      ok: false,
      reasons: parsed.error.issues.map((issue) => `${issue.path.join('.') || 'reading'}: ${issue.message}`),
    };
  }
  const reading = parsed.data;
  const reasons = checkTimeline(reading, options);
  return reasons.length === 0 ? { ok: true, reading } : { ok: false, reasons };
}

/** Like validateReading, but throws InvalidReadingError: for code paths where a bad reading is a bug. */
export function toReading(input: unknown, options: ValidationOptions = {}): Reading {
  const result = validateReading(input, options);
  if (!result.ok) throw new InvalidReadingError(result.reasons);
  return result.reading;
}

function checkTimeline(reading: Reading, options: ValidationOptions): string[] {
  const reasons: string[] = [];
  const now = (options.now ?? new Date()).getTime();
  const latest = now + (options.maxFutureSkewMs ?? 3_600_000);
  const instants: Array<[string, Date]> =
    reading.kind === 'interval'
      ? [
          ['start', reading.start],
          ['end', reading.end],
        ]
      : [['at', reading.at]];
  for (const [field, date] of instants) {
    if (date.getTime() > latest) reasons.push(`${field}: ${date.toISOString()} is in the future (now ${new Date(now).toISOString()})`);
    if (date.getTime() < EARLIEST_PLAUSIBLE) reasons.push(`${field}: ${date.toISOString()} is before 2000-01-01 (device clock not set?)`);
  }
  if (reading.kind === 'interval') {
    const seconds = (reading.end.getTime() - reading.start.getTime()) / 1000;
    if (seconds <= 0) reasons.push(`end: must be after start (start ${reading.start.toISOString()}, end ${reading.end.toISOString()})`);
    else if (seconds < MIN_INTERVAL_SECONDS) reasons.push(`end: intervals shorter than ${MIN_INTERVAL_SECONDS} s are not stored (got ${seconds} s)`);
    else if (seconds > MAX_INTERVAL_SECONDS) reasons.push(`end: intervals longer than a day are not stored (got ${seconds} s)`);
  }
  return reasons;
}

/**
 * Where a reading is, as refusals name it: meter, channel and identity instant. Built only for a
 * reading that is refused (an ISO string per reading checked cost more than the checks).
 */
export function whereOf(reading: Reading): string {
  return `${reading.meterId} ${reading.channel} ${identityInstant(reading).toISOString()}`;
}

/** At most this many problems of one unit of work are named; the rest are counted. */
const MAX_UNIT_PROBLEMS = 5;

/**
 * Why the readings of one unit of work (a telemetry message, a READY delivery) cannot be stored
 * whole: the same identity twice (the store would keep one value and report the other as a
 * conflict, so the unit would be half stored), or intervals of one meter and channel that overlap
 * (stored side by side, they count the same energy twice). Empty when there is no such problem.
 */
export function unitOfWorkProblems(readings: readonly Reading[]): string[] {
  const series = new Map<string, Reading[]>();
  // Readings of one series come in runs (a block's values): one lookup per run.
  let previousOfRun: Reading | undefined;
  let list: Reading[] = [];
  for (const reading of readings) {
    if (previousOfRun === undefined || previousOfRun.meterId !== reading.meterId || previousOfRun.channel !== reading.channel) {
      const key = `${reading.meterId}\u0000${reading.channel}`;
      const known = series.get(key);
      if (known) list = known;
      else series.set(key, (list = []));
      previousOfRun = reading;
    }
    list.push(reading);
  }
  const problems: string[] = [];
  let more = 0;
  const report = (problem: string) => {
    if (problems.length < MAX_UNIT_PROBLEMS) problems.push(problem);
    else more += 1;
  };
  for (const list of series.values()) {
    list.sort((a, b) => identityInstant(a).getTime() - identityInstant(b).getTime());
    let coveredUntil = -Infinity;
    let previous: Reading | undefined;
    for (const reading of list) {
      const at = identityInstant(reading).getTime();
      if (previous !== undefined && identityInstant(previous).getTime() === at) {
        report(`${whereOf(reading)}: the same reading twice (values ${previous.value} and ${reading.value})`);
      } else if (at < coveredUntil) {
        report(
          `${whereOf(reading)}: lies inside an earlier interval of the same meter and channel (which ends ${new Date(coveredUntil).toISOString()}); overlapping intervals would count twice`,
        );
      }
      if (reading.kind === 'interval') coveredUntil = Math.max(coveredUntil, reading.end.getTime());
      previous = reading;
    }
  }
  if (more > 0) problems.push(`and ${more} more`);
  return problems;
}
