/**
 * READY data callbacks (deliveries to the WebhookUri): the schema we ASSUME (Kamstrup's payload
 * schemas are not public; docs/ready.md documents this shape) and its
 * mapping to canonical readings.
 *
 * The mapping is strict by design: an unknown field, register, unit or alarm code rejects the
 * whole delivery (nothing stored, 422, metric), because the raw delivery is already in the
 * archive and can be replayed once the mapping learns the new shape, while a guess stored as a
 * reading cannot be told apart from a fact later.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { readingToJson, unitOfWorkProblems, validateReading, type Reading, type ReadingInput, type Unit } from '../../../shared/reading.ts';
import { preview } from '../../../shared/untrusted-json.ts';

const instant = z.iso.datetime({ offset: true });
const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$/, 'must be 1-128 letters, digits or ._:- and start with a letter or digit');

/** Units as READY may spell them, to the canonical unit names of shared/reading.ts. */
const UNIT_ALIASES: Record<string, Unit> = {
  m3: 'm3',
  'm³': 'm3',
  L: 'L',
  l: 'L',
  gal: 'gal',
  ft3: 'ft3',
  'm3/h': 'm3/h',
  'm³/h': 'm3/h',
  'L/h': 'L/h',
  'l/h': 'L/h',
  'gal/min': 'gal/min',
  Wh: 'Wh',
  kWh: 'kWh',
  MWh: 'MWh',
  GJ: 'GJ',
  MJ: 'MJ',
  W: 'W',
  kW: 'kW',
  degC: 'degC',
  '°C': 'degC',
  C: 'degC',
};

interface RegisterSpec {
  /** Channel of index values read at an instant. */
  register: string;
  /** Channel of values over an interval (consumption, or an average rate for flow/power). */
  interval: string;
  /** Units that measure this quantity; anything else is a mapping error, not data. */
  units: readonly Unit[];
}

const VOLUME: readonly Unit[] = ['m3', 'L', 'gal', 'ft3'];
const FLOW: readonly Unit[] = ['m3/h', 'L/h', 'gal/min'];
const ENERGY: readonly Unit[] = ['Wh', 'kWh', 'MWh', 'GJ', 'MJ'];
const POWER: readonly Unit[] = ['W', 'kW'];
const TEMPERATURE: readonly Unit[] = ['degC'];

function spec(register: string, units: readonly Unit[], interval = `${register}.interval`): RegisterSpec {
  return { register, interval, units };
}

function thermal(prefix: 'heat' | 'cooling'): Record<string, RegisterSpec> {
  return {
    energy: spec(`${prefix}.energy`, ENERGY),
    volume: spec(`${prefix}.volume`, VOLUME),
    flow: spec(`${prefix}.flow`, FLOW),
    power: spec(`${prefix}.power`, POWER),
    forwardTemperature: spec(`${prefix}.temperature.forward`, TEMPERATURE),
    returnTemperature: spec(`${prefix}.temperature.return`, TEMPERATURE),
  };
}

/**
 * Register names per utility and the channels they land on. Registers (index values) and interval
 * values of one quantity use different channels: the store identifies a reading by (meter,
 * channel, instant), and an index at 10:00 and the consumption of 10:00-11:00 are different facts.
 * Electricity intervals use the same channel as SMT and IoT interval data (energy.active.import).
 */
export const REGISTER_MAP = {
  water: {
    volume: spec('water.volume', VOLUME),
    reverseVolume: spec('water.volume.reverse', VOLUME),
    flow: spec('water.flow', FLOW),
    temperature: spec('water.temperature', TEMPERATURE),
  },
  heat: thermal('heat'),
  cooling: thermal('cooling'),
  electricity: {
    energyImport: spec('energy.active.import.register', ENERGY, 'energy.active.import'),
    energyExport: spec('energy.active.export.register', ENERGY, 'energy.active.export'),
  },
} as const satisfies Record<string, Record<string, RegisterSpec>>;

export type Utility = keyof typeof REGISTER_MAP;
const UTILITIES = Object.keys(REGISTER_MAP) as [Utility, ...Utility[]];

/**
 * Meter info/alarm codes we map to events. Each becomes a register reading on `event.<code>`:
 * 1 when the condition is raised, 0 when cleared, at the instant READY reports it.
 */
export const EVENT_CODES = [
  'leak',
  'burst',
  'tamper',
  'dry',
  'reverse-flow',
  'low-battery',
  'frost',
  'overflow',
  'no-consumption',
  'sensor-error',
] as const;
export type EventCode = (typeof EVENT_CODES)[number];

const unit = z.string().refine((value) => Object.hasOwn(UNIT_ALIASES, value), {
  error: (issue) => `unknown unit ${preview(issue.input)} (known: ${Object.keys(UNIT_ALIASES).join(', ')})`,
});

const registerValue = z.strictObject({
  register: z.string(),
  value: z.number(),
  unit,
  readAt: instant,
  estimated: z.boolean().optional(),
});

const intervalSeries = z.strictObject({
  register: z.string(),
  start: instant,
  intervalSeconds: z.number().int().min(60).max(86_400),
  unit,
  /** null = no value for that interval (not stored, never zero). */
  values: z.array(z.number().nullable()).min(1).max(8_784),
  estimated: z.boolean().optional(),
});

const meterEvent = z.strictObject({
  code: z.enum(EVENT_CODES),
  /** false = the condition cleared. @default true */
  active: z.boolean().optional(),
  at: instant,
});

const meter = z.strictObject({
  meterId: id,
  utility: z.enum(UTILITIES),
  registers: z.array(registerValue).optional(),
  intervals: z.array(intervalSeries).optional(),
  events: z.array(meterEvent).optional(),
});

export const deliverySchema = z.strictObject({
  /** The sender's id of this delivery; the body's SHA-256 stands in when absent. */
  deliveryId: id.optional(),
  subscriptionId: id,
  resource: z.literal('meterReadings'),
  sentAt: instant,
  meters: z.array(meter).min(1).max(10_000),
});

export type Delivery = z.infer<typeof deliverySchema>;

export interface MeterEventRecord {
  meterId: string;
  code: EventCode;
  active: boolean;
  at: string;
}

export type MappedDelivery =
  | {
      ok: true;
      delivery: Delivery;
      deliveryId: string;
      unitId: string;
      readings: Reading[];
      events: MeterEventRecord[];
      /** SHA-256 of what the delivery says (its readings), to tell a re-send from a reused id. */
      contentHash: string;
    }
  | { ok: false; reasons: string[] };

/** At most this many reasons go back to the sender and into the log. */
const MAX_REASONS = 20;

/** Is this JSON a data delivery at all (rather than a verification request or something else)? */
export function looksLikeDelivery(json: unknown): boolean {
  return typeof json === 'object' && json !== null && !Array.isArray(json) && 'meters' in json;
}

type DeliveredMeter = Delivery['meters'][number];

/**
 * One delivered meter's registers, interval series and events as reading inputs (each with its
 * path in the body for the refusal reasons); unknown registers and units land in `reasons`.
 */
function meterInputs(
  m: DeliveredMeter,
  mi: number,
  into: {
    base: Pick<ReadingInput, 'source' | 'originId' | 'revision'>;
    reasons: string[];
    inputs: Array<{ path: string; input: ReadingInput }>;
    events: MeterEventRecord[];
  },
): void {
  const { base, reasons, inputs, events } = into;
  const registers: Record<string, RegisterSpec> = REGISTER_MAP[m.utility];
  const lookup = (name: string, unitName: string, path: string): { spec: RegisterSpec; unit: Unit } | undefined => {
    const registerSpec = Object.hasOwn(registers, name) ? registers[name] : undefined;
    if (!registerSpec) {
      reasons.push(`${path}.register: unknown ${m.utility} register ${preview(name)} (known: ${Object.keys(registers).join(', ')})`);
      return undefined;
    }
    const canonical = UNIT_ALIASES[unitName] as Unit;
    if (!registerSpec.units.includes(canonical)) {
      reasons.push(`${path}.unit: ${preview(unitName)} does not measure ${m.utility} ${name} (expected one of ${registerSpec.units.join(', ')})`);
      return undefined;
    }
    return { spec: registerSpec, unit: canonical };
  };

  m.registers?.forEach((r, ri) => {
    const path = `meters.${mi}.registers.${ri}`;
    const found = lookup(r.register, r.unit, path);
    if (!found) return;
    inputs.push({
      path,
      input: {
        ...base,
        kind: 'register',
        meterId: m.meterId,
        channel: found.spec.register,
        value: r.value,
        unit: found.unit,
        quality: r.estimated ? 'estimated' : 'actual',
        at: r.readAt,
      },
    });
  });

  m.intervals?.forEach((series, si) => {
    const path = `meters.${mi}.intervals.${si}`;
    const found = lookup(series.register, series.unit, path);
    if (!found) return;
    const start = Date.parse(series.start);
    series.values.forEach((value, vi) => {
      if (value === null) return;
      const from = start + vi * series.intervalSeconds * 1000;
      inputs.push({
        path: `${path}.values.${vi}`,
        input: {
          ...base,
          kind: 'interval',
          meterId: m.meterId,
          channel: found.spec.interval,
          value,
          unit: found.unit,
          quality: series.estimated ? 'estimated' : 'actual',
          start: new Date(from),
          end: new Date(from + series.intervalSeconds * 1000),
        },
      });
    });
  });

  m.events?.forEach((event, ei) => {
    const active = event.active ?? true;
    events.push({ meterId: m.meterId, code: event.code, active, at: event.at });
    inputs.push({
      path: `meters.${mi}.events.${ei}`,
      input: {
        ...base,
        kind: 'register',
        meterId: m.meterId,
        channel: `event.${event.code}`,
        value: active ? 1 : 0,
        unit: 'count',
        quality: 'actual',
        at: event.at,
      },
    });
  });
}

/**
 * Validates a parsed delivery and maps it to readings. All or nothing: any reason rejects it.
 * @param rawBody the bytes as received, hashed when the delivery carries no id.
 */
export function mapDelivery(json: unknown, rawBody: Uint8Array, options: { now: Date }): MappedDelivery {
  const parsed = deliverySchema.safeParse(json);
  if (!parsed.success) {
    return {
      ok: false,
      reasons: parsed.error.issues.slice(0, MAX_REASONS).map((issue) => `${issue.path.join('.') || 'delivery'}: ${issue.message}`),
    };
  }
  const delivery = parsed.data;
  const deliveryId = delivery.deliveryId ?? `sha256-${createHash('sha256').update(rawBody).digest('hex')}`;
  const unitId = `${delivery.subscriptionId}/${deliveryId}`;
  const originId = `ready/${unitId}`;
  const reasons: string[] = [];
  const inputs: Array<{ path: string; input: ReadingInput }> = [];
  const events: MeterEventRecord[] = [];
  const base = { source: 'ready', originId, revision: 0 } as const;

  delivery.meters.forEach((meter, mi) => meterInputs(meter, mi, { base, reasons, inputs, events }));

  const readings: Reading[] = [];
  for (const { path, input } of inputs) {
    if (reasons.length >= MAX_REASONS) break;
    const result = validateReading(input, { now: options.now });
    if (result.ok) readings.push(result.reading);
    else reasons.push(...result.reasons.map((reason) => `${path}: ${reason}`));
  }
  if (reasons.length > 0) return { ok: false, reasons: reasons.slice(0, MAX_REASONS) };
  if (readings.length === 0) return { ok: false, reasons: ['delivery: carries no registers, intervals or events'] };
  // All or nothing: the same identity twice or overlapping intervals could only be stored in part.
  const overlaps = unitOfWorkProblems(readings);
  if (overlaps.length > 0) return { ok: false, reasons: overlaps.map((problem) => `readings overlap: ${problem}`) };
  return { ok: true, delivery, deliveryId, unitId, readings, events, contentHash: contentHash(readings) };
}

/**
 * A digest of the readings a delivery carries, independent of their order and of how the body
 * spells them (whitespace, sentAt, key order): a sender re-sending the same delivery gets the
 * same hash; the same id with other readings does not.
 */
export function contentHash(readings: readonly Reading[]): string {
  const lines = readings.map((reading) => {
    const { originId: _origin, ...content } = readingToJson(reading);
    return JSON.stringify(content);
  });
  lines.sort();
  const hash = createHash('sha256');
  for (const line of lines) hash.update(line).update('\n');
  return hash.digest('base64url');
}

/** Every channel a READY delivery can write (registers, their interval series, events). */
export function readyChannels(): string[] {
  const channels = new Set<string>();
  for (const registers of Object.values(REGISTER_MAP)) {
    for (const registerSpec of Object.values(registers) as RegisterSpec[]) {
      channels.add(registerSpec.register);
      channels.add(registerSpec.interval);
    }
  }
  for (const code of EVENT_CODES) channels.add(`event.${code}`);
  return [...channels];
}
