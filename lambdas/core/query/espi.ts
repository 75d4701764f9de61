/**
 * Green Button (NAESB REQ.21 ESPI) export: an Atom feed holding, for one meter, a UsagePoint,
 * and per channel (and per unit and interval length the channel has) a MeterReading, its
 * ReadingType and one IntervalBlock per local day of IntervalReadings. Validated in the tests
 * against the pinned ESPI 4.0 schema (test/fixtures/espi/).
 *
 * Mapping decisions (docs/readings-out.md has the table):
 * - ESPI values are integers (Int48) in a base unit times 10^powerOfTenMultiplier. kWh is Wh
 *   with multiplier 3; a value with decimals lowers the multiplier until every value of the
 *   ReadingType in the feed is a whole number (0.731 kWh -> 731 with multiplier 0).
 * - IntervalBlocks are the store's days: local days in the stage's block zone, so a DST day has
 *   a 23 h (92 intervals) or 25 h (100 intervals) block `interval`.
 * - An estimated reading carries ReadingQuality 8 ("estimated using reference day"); an actual
 *   one none (ESPI's default: valid).
 * - A register read is an IntervalReading with duration 0 at its read time, in a ReadingType
 *   with accumulationBehaviour 1 (bulkQuantity).
 */
import { createHash } from 'node:crypto';
import { identityInstant, type Reading, type Unit } from '../../../shared/reading.ts';
import { durationOf } from '../interval-block.ts';
import { addDays, localDate, startOfLocalDay } from '../time.ts';

interface UnitCode {
  /** ESPI UnitSymbolKind. */
  uom: number;
  /** Decimal exponent of the unit against the base unit (kWh = 3: 10^3 Wh). */
  exponent: number;
  /** Multiplier to the ESPI base unit that is not a power of ten (gal/min -> gal/h). */
  factor?: number;
  kind: 'energy' | 'power' | 'volume' | 'rate' | 'other';
}

const UNIT_CODES: Record<Unit, UnitCode> = {
  Wh: { uom: 72, exponent: 0, kind: 'energy' },
  kWh: { uom: 72, exponent: 3, kind: 'energy' },
  MWh: { uom: 72, exponent: 6, kind: 'energy' },
  varh: { uom: 73, exponent: 0, kind: 'energy' },
  kvarh: { uom: 73, exponent: 3, kind: 'energy' },
  VAh: { uom: 71, exponent: 0, kind: 'energy' },
  kVAh: { uom: 71, exponent: 3, kind: 'energy' },
  W: { uom: 38, exponent: 0, kind: 'power' },
  kW: { uom: 38, exponent: 3, kind: 'power' },
  var: { uom: 63, exponent: 0, kind: 'power' },
  kvar: { uom: 63, exponent: 3, kind: 'power' },
  VA: { uom: 61, exponent: 0, kind: 'power' },
  kVA: { uom: 61, exponent: 3, kind: 'power' },
  V: { uom: 29, exponent: 0, kind: 'other' },
  A: { uom: 5, exponent: 0, kind: 'other' },
  Hz: { uom: 33, exponent: 0, kind: 'other' },
  PF: { uom: 65, exponent: 0, kind: 'other' },
  m3: { uom: 42, exponent: 0, kind: 'volume' },
  L: { uom: 134, exponent: 0, kind: 'volume' },
  gal: { uom: 128, exponent: 0, kind: 'volume' },
  ft3: { uom: 119, exponent: 0, kind: 'volume' },
  'm3/h': { uom: 125, exponent: 0, kind: 'rate' },
  'L/h': { uom: 137, exponent: 0, kind: 'rate' },
  'gal/min': { uom: 129, exponent: 0, factor: 60, kind: 'rate' },
  GJ: { uom: 31, exponent: 9, kind: 'energy' },
  MJ: { uom: 31, exponent: 6, kind: 'energy' },
  degC: { uom: 23, exponent: 0, kind: 'other' },
  count: { uom: 111, exponent: 0, kind: 'other' },
};

/** UnitMultiplierKind values the schema lists. */
const MULTIPLIERS = [12, 9, 6, 3, 2, 1, 0, -1, -2, -3, -6, -9, -12];
const INT48_MAX = 140_737_488_355_328;
const QUALITY_ESTIMATED = 8;

/** ESPI CommodityKind from the channel's name and unit: 1 electricity, 7 natural gas, 9 potable water, 0 other. */
function commodityOf(channel: string, unit: Unit): number {
  if (channel.startsWith('water.')) return 9;
  if (channel.startsWith('gas.')) return 7;
  const kind = UNIT_CODES[unit].kind;
  if (kind === 'volume' || kind === 'rate') return channel.startsWith('energy.') ? 0 : 9;
  if (['Wh', 'kWh', 'MWh', 'varh', 'kvarh', 'VAh', 'kVAh', 'W', 'kW', 'var', 'kvar', 'VA', 'kVA', 'V', 'A', 'Hz', 'PF'].includes(unit)) return 1;
  return 0;
}

/** ESPI ServiceKind of the UsagePoint: 0 electricity, 1 gas, 2 water, 4 heat. */
function serviceKindOf(commodity: number, unit: Unit): number {
  if (commodity === 9) return 2;
  if (commodity === 7) return 1;
  if (unit === 'GJ' || unit === 'MJ') return 4;
  return 0;
}

/** ESPI FlowDirectionKind: 19 reverse (export), 1 forward (delivered), 0 not applicable. */
function flowDirectionOf(channel: string, unit: Unit): number {
  if (/(^|\.)export(\.|$)/.test(channel)) return 19;
  const kind = UNIT_CODES[unit].kind;
  return kind === 'energy' || kind === 'volume' || kind === 'power' ? 1 : 0;
}

/** ESPI MeasurementKind where one fits: 12 energy, 37 power, 54 voltage, 4 current; otherwise left out. */
function measurementKindOf(unit: Unit): number | undefined {
  const kind = UNIT_CODES[unit].kind;
  if (kind === 'energy') return 12;
  if (kind === 'power') return 37;
  if (unit === 'V') return 54;
  if (unit === 'A') return 4;
  return undefined;
}

/** ESPI AccumulationKind: 4 deltaData (an interval's quantity), 1 bulkQuantity (a register), 12 instantaneous, 0 implied by the unit. */
function accumulationOf(unit: Unit, register: boolean): number {
  const kind = UNIT_CODES[unit].kind;
  const quantity = kind === 'energy' || kind === 'volume' || unit === 'count';
  if (register) return quantity ? 1 : 12;
  return quantity ? 4 : 0;
}

/** Digits after the decimal point of a number's shortest round-trip form. */
function decimalsOf(value: number): number {
  const text = String(Math.abs(value));
  const exp = /e([+-]\d+)$/.exec(text);
  const mantissa = exp ? text.slice(0, exp.index) : text;
  const fraction = mantissa.includes('.') ? mantissa.split('.')[1]!.length : 0;
  return Math.max(0, fraction - (exp ? Number(exp[1]) : 0));
}

/** The largest schema multiplier that makes every value whole, and the scaled integer values. */
export function scaleValues(values: readonly number[], unit: Unit): { multiplier: number; scaled: number[] } {
  const code = UNIT_CODES[unit];
  const factored = code.factor ? values.map((v) => v * code.factor!) : [...values];
  const decimals = factored.reduce((max, v) => Math.max(max, decimalsOf(v)), 0);
  const multiplier = MULTIPLIERS.find((m) => m <= code.exponent - decimals) ?? -12;
  const scaled = factored.map((v) => Math.round(v * 10 ** (code.exponent - multiplier)));
  if (scaled.some((v) => Math.abs(v) > INT48_MAX))
    throw new Error(`values of unit ${unit} do not fit ESPI's 48-bit integers at multiplier 10^${multiplier}`);
  return { multiplier, scaled };
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** A stable urn:uuid (name-based, SHA-256 truncated, version nibble 5 style) so re-exports keep their ids. */
function stableUuid(name: string): string {
  const hex = createHash('sha256').update(`meterbridge:${name}`).digest('hex');
  return `urn:uuid:${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${((parseInt(hex[16]!, 16) & 3) | 8).toString(16)}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

const epoch = (date: Date) => Math.round(date.getTime() / 1000);

export interface EspiOptions {
  /** The store's block zone: IntervalBlocks are its local days. */
  timeZone: string;
  /** `updated`/`published` of every entry: when the export was made. */
  generatedAt: Date;
  /** Base of the resource links. @default '/espi/1_1/resource' */
  baseHref?: string;
}

interface Group {
  channel: string;
  unit: Unit;
  durationSeconds: number;
  readings: Reading[];
}

/** Readings grouped by what makes one ESPI ReadingType: channel, unit and interval length. */
function groupByReadingType(readings: readonly Reading[]): Map<string, Group> {
  const groups = new Map<string, Group>();
  for (const reading of readings) {
    const durationSeconds = durationOf(reading);
    const key = `${reading.channel}\u0000${reading.unit}\u0000${durationSeconds}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { channel: reading.channel, unit: reading.unit, durationSeconds, readings: [] }));
    group.readings.push(reading);
  }

  return groups;
}

type EntryWriter = (id: string, title: string, links: Array<[string, string]>, content: string) => void;

/** Appends Atom entries (stable ids, one timestamp for the whole feed) to `out`. */
function entryWriter(out: string[], updated: string): EntryWriter {
  return (id, title, links, content) => {
    out.push(
      '  <entry>',
      `    <id>${stableUuid(id)}</id>`,
      ...links.map(([rel, href]) => `    <link rel="${rel}" href="${escapeXml(href)}"/>`),
      `    <title>${escapeXml(title)}</title>`,
      `    <published>${updated}</published>`,
      `    <updated>${updated}</updated>`,
      `    <content>${content}</content>`,
      '  </entry>',
    );
  };
}

/** The MeterReading, ReadingType and per-day IntervalBlock entries of one reading type. */
function groupEntries(
  group: Group,
  { meterId, base, usagePoint, timeZone, entry }: { meterId: string; base: string; usagePoint: string; timeZone: string; entry: EntryWriter },
): void {
  const register = group.durationSeconds === 0;
  const readingTypeId = createHash('sha256').update(`${meterId}|${group.channel}|${group.unit}|${group.durationSeconds}`).digest('hex').slice(0, 16);
  const meterReading = `${usagePoint}/MeterReading/${readingTypeId}`;
  const readingType = `${base}/ReadingType/${readingTypeId}`;
  const { multiplier, scaled } = scaleValues(
    group.readings.map((r) => r.value),
    group.unit,
  );
  const title = `${group.channel} (${group.unit}${register ? ', register' : `, ${group.durationSeconds} s`})`;

  entry(
    `meterreading:${meterId}:${readingTypeId}`,
    title,
    [
      ['self', meterReading],
      ['up', `${usagePoint}/MeterReading`],
      ['related', `${meterReading}/IntervalBlock`],
      ['related', readingType],
    ],
    '<espi:MeterReading/>',
  );

  const kind = measurementKindOf(group.unit);
  const typeFields = [
    `<espi:accumulationBehaviour>${accumulationOf(group.unit, register)}</espi:accumulationBehaviour>`,
    `<espi:commodity>${commodityOf(group.channel, group.unit)}</espi:commodity>`,
    `<espi:flowDirection>${flowDirectionOf(group.channel, group.unit)}</espi:flowDirection>`,
    `<espi:intervalLength>${group.durationSeconds}</espi:intervalLength>`,
    ...(kind === undefined ? [] : [`<espi:kind>${kind}</espi:kind>`]),
    `<espi:powerOfTenMultiplier>${multiplier}</espi:powerOfTenMultiplier>`,
    `<espi:uom>${UNIT_CODES[group.unit].uom}</espi:uom>`,
  ];
  entry(
    `readingtype:${meterId}:${readingTypeId}`,
    `${title} reading type`,
    [
      ['self', readingType],
      ['up', `${base}/ReadingType`],
    ],
    `<espi:ReadingType>${typeFields.join('')}</espi:ReadingType>`,
  );

  // One IntervalBlock per local day of the store's zone (23, 24 or 25 hours long).
  const days = new Map<string, string[]>();
  group.readings.forEach((reading, i) => {
    const instant = identityInstant(reading);
    const day = localDate(instant, timeZone);
    const quality =
      reading.quality === 'estimated' ? `<espi:ReadingQuality><espi:quality>${QUALITY_ESTIMATED}</espi:quality></espi:ReadingQuality>` : '';
    const line = `<espi:IntervalReading>${quality}<espi:timePeriod><espi:duration>${group.durationSeconds}</espi:duration><espi:start>${epoch(instant)}</espi:start></espi:timePeriod><espi:value>${scaled[i]}</espi:value></espi:IntervalReading>`;
    (days.get(day) ?? days.set(day, []).get(day)!).push(line);
  });
  for (const [day, lines] of days) {
    const start = startOfLocalDay(day, timeZone);
    const end = startOfLocalDay(addDays(day, 1), timeZone);
    const block = `${meterReading}/IntervalBlock/${day.replaceAll('-', '')}`;
    entry(
      `intervalblock:${meterId}:${readingTypeId}:${day}`,
      `${group.channel} ${day}`,
      [
        ['self', block],
        ['up', `${meterReading}/IntervalBlock`],
      ],
      `<espi:IntervalBlock><espi:interval><espi:duration>${epoch(end) - epoch(start)}</espi:duration><espi:start>${epoch(start)}</espi:start></espi:interval>\n      ${lines.join('\n      ')}\n    </espi:IntervalBlock>`,
    );
  }
}

/** The Green Button feed of one meter's readings (any channels; time order within a channel is kept). */
export function readingsEspi(meterId: string, readings: readonly Reading[], options: EspiOptions): string {
  const base = options.baseHref ?? '/espi/1_1/resource';
  const updated = options.generatedAt.toISOString();
  const usagePointId = createHash('sha256').update(meterId).digest('hex').slice(0, 16);
  const usagePoint = `${base}/UsagePoint/${usagePointId}`;

  const groups = groupByReadingType(readings);

  const out: string[] = [];
  const entry = entryWriter(out, updated);

  const first = [...groups.values()][0];
  const commodity = first ? commodityOf(first.channel, first.unit) : 1;
  out.push(
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:espi="http://naesb.org/espi">',
    `  <id>${stableUuid(`feed:${meterId}:${readings.length ? epoch(identityInstant(readings[0]!)) : 0}`)}</id>`,
    `  <title>meterbridge readings of meter ${escapeXml(meterId)}</title>`,
    `  <updated>${updated}</updated>`,
    `  <link rel="self" href="${escapeXml(usagePoint)}"/>`,
  );
  entry(
    `usagepoint:${meterId}`,
    `meter ${meterId}`,
    [
      ['self', usagePoint],
      ['up', `${base}/UsagePoint`],
      ['related', `${usagePoint}/MeterReading`],
    ],
    `<espi:UsagePoint><espi:ServiceCategory><espi:kind>${serviceKindOf(commodity, first?.unit ?? 'kWh')}</espi:kind></espi:ServiceCategory></espi:UsagePoint>`,
  );

  for (const group of groups.values()) groupEntries(group, { meterId, base, usagePoint, timeZone: options.timeZone, entry });
  out.push('</feed>', '');
  return out.join('\n');
}
