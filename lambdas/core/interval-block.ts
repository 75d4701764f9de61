/**
 * The interval-block layout of the readings table, and the rules that decide what a write does.
 * Pure: no I/O. reading-store.ts turns these into DynamoDB requests.
 *
 * One item holds one meter's channel for one local calendar day (like a Green Button/ESPI
 * IntervalBlock):
 *
 *   pk  = "<meterId>#<channel>"        sk = "<YYYY-MM-DD>" (local day in the store's block zone)
 *   bs  = block start, epoch seconds    u  = unit of every reading in the block
 *   d   = interval length in seconds of every reading in the block (0 = register reads)
 *   ver = write counter (ADD 1 on every successful write; the optimistic-lock token)
 *   ua  = last write, epoch seconds
 *   s<offset> = one reading, keyed by seconds from block start to its identity instant, as a
 *        list [value, revision, origin hash] with a fourth element 1 when estimated. A list,
 *        not a map: names would cost 4 bytes a reading and push a 96-interval day past 3 KB.
 *   o_<hash> = the origin ("<source>:<originId>") the hash stands for, written once per origin
 *   p  = the packed form (packBlock): every reading of the block in one binary attribute, values
 *        as scaled int32, revision and origin once per run. A block holds either `p` or slot
 *        attributes, never both: whole-block writes (a new day, a write guarded on the version)
 *        pack it when every value fits exactly; small writes into an unpacked block stay per slot.
 *
 * A block holds one unit and one interval length, like an ESPI IntervalBlock: a reading in
 * another unit or resolution for the same meter, channel and day is reported as a conflict.
 *
 * Why: one item per reading costs a write unit and ~150 bytes per reading; a day block stores a
 * reading in ~30 bytes and a whole day in one write. See docs/store.md and bench/RESULTS.md for the figures.
 */
import { createHash } from 'node:crypto';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { withoutUnusedPlaceholders } from './expressions.ts';
import { identityInstant, whereOf, type Quality, type Reading, type Source, type Unit } from '../../shared/reading.ts';
import { addDays, localDate, startOfLocalDay, utcOffsetMs } from './time.ts';

export interface BlockKey {
  pk: string;
  sk: string;
}

export function partitionKey(meterId: string, channel: string): string {
  return `${meterId}#${channel}`;
}

/** A local day in a zone: [startMs, endMs) on the UTC time line. */
interface LocalDay {
  day: string;
  startMs: number;
  endMs: number;
}

/** Days already looked up, per zone: a store locates every reading, and Intl costs ~10 µs a call. */
const knownDays = new Map<string, Map<number, LocalDay>>();
const KNOWN_DAYS_LIMIT = 4096;
const DAY_MS = 86_400_000;

/**
 * The local day of an instant and when it starts. Answered from the days seen before when the
 * instant lies in one of exactly 24 hours with the same UTC offset at both ends (no change that
 * day, so every instant in it has that local date); any other day is computed with Intl each
 * time, as before, so a zone with a change at midnight is never answered from the cache.
 */
function localDayOf(instantMs: number, blockTimeZone: string): { day: string; startMs: number } {
  let days = knownDays.get(blockTimeZone);
  if (!days) knownDays.set(blockTimeZone, (days = new Map()));
  // Days keyed by the UTC day their start falls in, and the one before: a local day starts within 14 h of UTC midnight.
  // Checked one by one, not as an array of the three: this runs twice for every reading stored.
  const utcDay = Math.floor(instantMs / DAY_MS);
  const known = knownDayAt(days, utcDay, instantMs) ?? knownDayAt(days, utcDay - 1, instantMs) ?? knownDayAt(days, utcDay + 1, instantMs);
  if (known) return known;
  const day = localDate(new Date(instantMs), blockTimeZone);
  const startMs = startOfLocalDay(day, blockTimeZone).getTime();
  const endMs = startMs + DAY_MS;
  if (localDate(new Date(endMs - 1000), blockTimeZone) === day && localDate(new Date(endMs), blockTimeZone) !== day) {
    const offsetAtStart = utcOffsetMs(startMs, blockTimeZone);
    if (offsetAtStart === utcOffsetMs(endMs - 1000, blockTimeZone) && startOfLocalDay(addDays(day, 1), blockTimeZone).getTime() === endMs) {
      if (days.size >= KNOWN_DAYS_LIMIT) days.clear();
      days.set(Math.floor(startMs / DAY_MS), { day, startMs, endMs });
    }
  }
  return { day, startMs };
}

function knownDayAt(days: Map<number, LocalDay>, utcDay: number, instantMs: number): LocalDay | undefined {
  const candidate = days.get(utcDay);
  return candidate && instantMs >= candidate.startMs && instantMs < candidate.endMs ? candidate : undefined;
}

/** The block a reading belongs to and its slot in it. Depends on the identity only. */
export function locate(reading: Reading, blockTimeZone: string): { key: BlockKey; blockStart: number; slot: string } {
  const instantMs = identityInstant(reading).getTime();
  const { day, startMs } = localDayOf(instantMs, blockTimeZone);
  const blockStart = startMs / 1000;
  const offset = instantMs / 1000 - blockStart;
  return { key: { pk: seriesKey(reading.meterId, reading.channel), sk: day }, blockStart, slot: `s${offset}` };
}

/** partitionKey of the last series located, kept: a block's readings share theirs, and locate runs twice a reading. */
let lastSeries = { meterId: '', channel: '', pk: partitionKey('', '') };
function seriesKey(meterId: string, channel: string): string {
  if (meterId !== lastSeries.meterId || channel !== lastSeries.channel) lastSeries = { meterId, channel, pk: partitionKey(meterId, channel) };
  return lastSeries.pk;
}

/**
 * Why readings of one unit of work do not fit the block layout, so that storing them would
 * double-count or store them only in part: an interval whose start is not a whole number of
 * intervals from its block's start (local midnight in the block zone), which would overlap its
 * neighbours' slots (10:07 beside 10:00 in 15-minute data); an interval that runs past its day's
 * end into the next block; readings of one block that differ in unit or interval length (a block
 * holds one of each, so all but the first would be conflicts). Empty when they fit.
 */
export function gridProblems(readings: readonly Reading[], blockTimeZone: string): string[] {
  const problems: string[] = [];
  let more = 0;
  const report = (problem: string) => {
    if (problems.length < 5) problems.push(problem);
    else more += 1;
  };
  const shapes = new Map<string, Reading>();
  const dayEnds = new Map<string, number>();
  let run: { pk: string; sk: string; first: Reading; shape: BlockShape } | undefined;
  for (const reading of readings) {
    const { key, slot } = locate(reading, blockTimeZone);
    if (reading.kind === 'interval') {
      const duration = durationOf(reading);
      const offset = Number(slot.slice(1));
      let dayEnd = dayEnds.get(key.sk);
      if (dayEnd === undefined) dayEnds.set(key.sk, (dayEnd = startOfLocalDay(addDays(key.sk, 1), blockTimeZone).getTime()));
      if (offset % duration !== 0) {
        report(
          `${whereOf(reading)}: a ${duration} s interval ${offset % duration} s off its day's grid (intervals start a whole number of intervals after local midnight in ${blockTimeZone}); it would overlap its neighbours`,
        );
      } else if (reading.end.getTime() > dayEnd) {
        report(`${whereOf(reading)}: the ${duration} s interval runs past the end of its day ${key.sk} in ${blockTimeZone}`);
      }
    }
    // A block's readings come in runs (a block message's values): its first reading is looked up once per run.
    if (run === undefined || run.pk !== key.pk || run.sk !== key.sk) {
      const id = `${key.pk}\u0000${key.sk}`;
      let first = shapes.get(id);
      if (first === undefined) shapes.set(id, (first = reading));
      run = { pk: key.pk, sk: key.sk, first, shape: { unit: first.unit, durationSeconds: durationOf(first) } };
    }
    if (reading !== run.first) {
      const mismatch = shapeMismatch(reading, run.shape);
      if (mismatch !== undefined) report(`${whereOf(reading)}: ${mismatch} in the same message (day ${key.sk})`);
    }
  }
  if (more > 0) problems.push(`and ${more} more`);
  return problems;
}

/** What a block holds for one identity. */
export interface StoredValue {
  value: number;
  revision: number;
  quality: Quality;
  unit: Unit;
  /** Interval length in seconds; 0 for a register read. */
  durationSeconds: number;
  /** `<source>:<originId>` of the write that set it, when the block still names it. */
  origin?: string;
}

export type WriteStatus = 'stored' | 'superseded' | 'duplicate' | 'stale' | 'conflict';
export const WRITE_STATUSES: readonly WriteStatus[] = ['stored', 'superseded', 'duplicate', 'stale', 'conflict'];

/** What every reading in a block shares. Undefined fields: the block does not exist yet. */
export interface BlockShape {
  unit?: Unit;
  /** Interval length in seconds; 0 for register reads. */
  durationSeconds?: number;
}

/** Why a reading cannot go into a block at all, or undefined if it fits the block's shape. */
export function shapeMismatch(incoming: Reading, block: BlockShape): string | undefined {
  if (block.unit !== undefined && block.unit !== incoming.unit) return `unit ${incoming.unit} differs from the block's unit ${block.unit}`;
  const duration = durationOf(incoming);
  if (block.durationSeconds !== undefined && block.durationSeconds !== duration) {
    return `interval length ${duration} s differs from the block's ${block.durationSeconds} s (0 = register reads)`;
  }
  return undefined;
}

/**
 * Decides what an incoming reading does against what the block holds. Order is
 * (revision, actual over estimated): an actual replaces an estimate of the same revision.
 */
export function classify(incoming: Reading, existing: StoredValue | undefined, block: BlockShape): WriteStatus {
  if (shapeMismatch(incoming, block) !== undefined) return 'conflict';
  if (existing === undefined) return 'stored';
  const order = compareRank(incoming.revision, incoming.quality, existing.revision, existing.quality);
  if (order > 0) return 'superseded';
  if (order < 0) return 'stale';
  return incoming.value === existing.value ? 'duplicate' : 'conflict';
}

function compareRank(revisionA: number, qualityA: Quality, revisionB: number, qualityB: Quality): number {
  if (revisionA !== revisionB) return revisionA - revisionB;
  return qualityRank(qualityA) - qualityRank(qualityB);
}

const qualityRank = (quality: Quality): number => (quality === 'actual' ? 1 : 0);

/** Interval length in seconds; 0 for a register read (the block attribute `d` uses the same). */
export function durationOf(reading: Reading): number {
  return reading.kind === 'interval' ? (reading.end.getTime() - reading.start.getTime()) / 1000 : 0;
}

export function originOf(reading: Reading): string {
  return `${reading.source}:${reading.originId}`;
}

/** Short, stable stand-in for an origin inside each slot; the full string is kept once per block. */
export function originHash(origin: string): string {
  let hash = originHashes.get(origin);
  if (hash === undefined) {
    hash = createHash('sha256').update(origin).digest('base64url').slice(0, 6);
    // A unit of work has one origin for all its readings: remember the last few, not every one.
    if (originHashes.size >= 256) originHashes.clear();
    originHashes.set(origin, hash);
  }
  return hash;
}
const originHashes = new Map<string, string>();

/** Positions in a slot list. */
const VALUE = 0;
const REVISION = 1;
const ORIGIN = 2;
const ESTIMATED = 3;

export function encodeSlot(reading: Reading): AttributeValue {
  const slot: AttributeValue[] = [];
  slot[VALUE] = { N: String(reading.value) };
  slot[REVISION] = { N: String(reading.revision) };
  slot[ORIGIN] = { S: originHash(originOf(reading)) };
  if (reading.quality === 'estimated') slot[ESTIMATED] = { N: '1' };
  return { L: slot };
}

/** A block item as read back (ALL_OLD on a failed condition, UPDATED_OLD, a Query, or a Streams image). */
export interface DecodedBlock extends BlockShape {
  pk: string;
  sk: string;
  blockStart: number;
  version: number;
  updatedAt?: number;
  slots: Map<string, StoredValue>;
  /** Whether the block is in the packed form (attribute `p`) rather than one attribute per slot. */
  packed: boolean;
  /** The `o_<hash>` attributes the item holds (per-slot form). */
  originNames: string[];
}

export function decodeBlock(item: Record<string, AttributeValue>): DecodedBlock {
  const unit = item.u?.S as Unit | undefined;
  const durationSeconds = item.d?.N === undefined ? undefined : Number(item.d.N);
  const packed = item[PACKED]?.B;
  const originNames: string[] = [];
  const slots = packed === undefined ? slotsOf(item, unit, durationSeconds, originNames) : unpackBlock(bytesOf(packed), unit!, durationSeconds!);
  return {
    pk: item.pk?.S ?? '',
    sk: item.sk?.S ?? '',
    blockStart: Number(item.bs?.N ?? NaN),
    unit,
    durationSeconds,
    version: Number(item.ver?.N ?? 0),
    updatedAt: item.ua?.N === undefined ? undefined : Number(item.ua.N),
    slots,
    packed: packed !== undefined,
    originNames,
  };
}

/** The per-slot form's readings; collects the names of its origin attributes into `originNames`. */
function slotsOf(item: Record<string, AttributeValue>, unit: Unit | undefined, durationSeconds: number | undefined, originNames: string[]) {
  const origins = new Map<string, string>();
  for (const [name, value] of Object.entries(item)) {
    if (name.startsWith('o_') && value.S !== undefined) {
      origins.set(name.slice(2), value.S);
      originNames.push(name);
    }
  }
  const slots = new Map<string, StoredValue>();
  for (const [name, value] of Object.entries(item)) {
    if (!isSlotName(name) || value.L === undefined) continue;
    const slot = value.L;
    const hash = slot[ORIGIN]?.S;
    slots.set(name, {
      value: Number(slot[VALUE]?.N),
      revision: Number(slot[REVISION]?.N),
      quality: slot[ESTIMATED] ? 'estimated' : 'actual',
      unit: unit!, // every write sets u and d together with its slots
      durationSeconds: durationSeconds!,
      origin: hash === undefined ? undefined : origins.get(hash),
    });
  }
  return slots;
}

/** A binary attribute's bytes: a Uint8Array from the SDK, a base64 string in a Lambda event's Streams image. */
function bytesOf(value: Uint8Array | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'base64') : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/*
 * The packed form, attribute `p` (binary, big-endian), for interval blocks whose slots lie on the
 * grid of their interval length (slot offset = index × d):
 *
 *   u8 format (1) · u8 scale x · u16 grid length n · presence bitmap ⌈n/8⌉ B · estimated bitmap ⌈n/8⌉ B
 *   int32 value × 10^x per present slot, in grid order
 *   u8 origin count · per origin: u16 byte length + UTF-8 "<source>:<originId>"
 *   u16 run count · per run: u16 first present slot (ordinal) · float64 revision · u8 origin index (255: none)
 *
 * A run is consecutive present slots sharing revision and origin: a whole-day delivery is one.
 * x is the smallest scale (0-9) at which every value is an int32 that divides back to exactly the
 * same number; when there is none (a value with more decimals, or beyond ±2^31 at that scale), or
 * the block is a register block or off its grid, the block stays in the per-slot form: packing
 * never rounds a value.
 */
export const PACKED = 'p';
const PACKED_FORMAT = 1;
const MAX_SCALE = 9;
const INT32_MAX = 2 ** 31 - 1;
const NO_ORIGIN = 255;
const U16_MAX = 0xffff;

/** What the packed form keeps of a reading. */
export type PackableValue = Pick<StoredValue, 'value' | 'revision' | 'quality' | 'origin'>;

/** The smallest x with every value = round(value × 10^x) / 10^x exactly, within int32; undefined when none. */
function scaleFor(values: readonly number[]): number | undefined {
  for (let x = 0; x <= MAX_SCALE; x++) {
    const factor = 10 ** x;
    const exact = values.every((value) => {
      const scaled = Math.round(value * factor);
      return Math.abs(scaled) <= INT32_MAX && scaled / factor === value;
    });
    if (exact) return x;
  }
  return undefined;
}

interface Run {
  start: number;
  revision: number;
  origin: number;
}

/** The packed form of a block's readings (slot name → value), or undefined when it cannot hold them exactly. */
export function packBlock(slots: ReadonlyMap<string, PackableValue>, durationSeconds: number): Buffer | undefined {
  if (!(durationSeconds > 0) || slots.size === 0) return undefined;
  const present: Array<[number, PackableValue]> = [];
  for (const [slot, stored] of slots) {
    const offset = Number(slot.slice(1));
    if (!(offset >= 0) || offset % durationSeconds !== 0) return undefined;
    present.push([offset / durationSeconds, stored]);
  }
  present.sort((a, b) => a[0] - b[0]);
  const gridLength = present[present.length - 1]![0] + 1;
  const scale = scaleFor(present.map(([, stored]) => stored.value));
  if (gridLength > U16_MAX || scale === undefined) return undefined;

  const origins = new Map<string, number>();
  const runs: Run[] = [];
  for (const [ordinal, [, stored]] of present.entries()) {
    let origin = stored.origin === undefined ? NO_ORIGIN : origins.get(stored.origin);
    if (origin === undefined) origins.set(stored.origin!, (origin = origins.size));
    const last = runs[runs.length - 1];
    if (!last || last.revision !== stored.revision || last.origin !== origin) runs.push({ start: ordinal, revision: stored.revision, origin });
  }
  const originBytes = [...origins.keys()].map((origin) => Buffer.from(origin, 'utf8'));
  if (origins.size > NO_ORIGIN || originBytes.some((bytes) => bytes.length > U16_MAX)) return undefined;

  const bitmapBytes = Math.ceil(gridLength / 8);
  const size = 4 + 2 * bitmapBytes + 4 * present.length + 1 + originBytes.reduce((sum, bytes) => sum + 2 + bytes.length, 0) + 2 + 11 * runs.length;
  const packed = Buffer.alloc(size);
  packed.writeUInt8(PACKED_FORMAT, 0);
  packed.writeUInt8(scale, 1);
  packed.writeUInt16BE(gridLength, 2);
  let at = 4 + 2 * bitmapBytes;
  const factor = 10 ** scale;
  for (const [index, stored] of present) {
    packed[4 + (index >> 3)]! |= 1 << (index & 7);
    if (stored.quality === 'estimated') packed[4 + bitmapBytes + (index >> 3)]! |= 1 << (index & 7);
    at = packed.writeInt32BE(Math.round(stored.value * factor), at);
  }
  at = packed.writeUInt8(originBytes.length, at);
  for (const bytes of originBytes) {
    at = packed.writeUInt16BE(bytes.length, at);
    at += bytes.copy(packed, at);
  }
  at = packed.writeUInt16BE(runs.length, at);
  for (const run of runs) at = packed.writeUInt8(run.origin, packed.writeDoubleBE(run.revision, packed.writeUInt16BE(run.start, at)));
  return packed;
}

/** The readings of a packed block, keyed by slot name like the per-slot form. */
function unpackBlock(packed: Buffer, unit: Unit, durationSeconds: number): Map<string, StoredValue> {
  if (packed[0] !== PACKED_FORMAT) throw new Error(`packed block format ${packed[0]} is not one this code reads`);
  const factor = 10 ** packed[1]!;
  const gridLength = packed.readUInt16BE(2);
  const bitmapBytes = Math.ceil(gridLength / 8);
  const isSet = (bitmap: number, index: number) => (packed[bitmap + (index >> 3)]! & (1 << (index & 7))) !== 0;
  const indexes: number[] = [];
  for (let index = 0; index < gridLength; index++) if (isSet(4, index)) indexes.push(index);
  const valuesAt = 4 + 2 * bitmapBytes;
  let at = valuesAt + 4 * indexes.length;
  const origins: string[] = [];
  for (let count = packed.readUInt8(at++); count > 0; count--) {
    const length = packed.readUInt16BE(at);
    origins.push(packed.toString('utf8', at + 2, at + 2 + length));
    at += 2 + length;
  }
  const runs: Run[] = [];
  for (let count = packed.readUInt16BE(at), next = at + 2; count > 0; count--, next += 11) {
    runs.push({ start: packed.readUInt16BE(next), revision: packed.readDoubleBE(next + 2), origin: packed.readUInt8(next + 10) });
  }
  const slots = new Map<string, StoredValue>();
  let run = 0;
  indexes.forEach((index, ordinal) => {
    while (run + 1 < runs.length && runs[run + 1]!.start <= ordinal) run += 1;
    const { revision, origin } = runs[run]!;
    slots.set(`s${index * durationSeconds}`, {
      value: packed.readInt32BE(valuesAt + 4 * ordinal) / factor,
      revision,
      quality: isSet(4 + bitmapBytes, index) ? 'estimated' : 'actual',
      unit,
      durationSeconds,
      origin: origin === NO_ORIGIN ? undefined : origins[origin],
    });
  });
  return slots;
}

export function isSlotName(name: string): boolean {
  return /^s\d+$/.test(name);
}

/** Blocks hold at most this many per-slot conditions: DynamoDB allows 300 operators and 4 KB per expression. */
export const MAX_SLOT_GUARDS = 24;

export interface PendingWrite {
  reading: Reading;
  slot: string;
}

/**
 * How a write protects itself from racing writers.
 * - `slots`: each slot is absent or ranked below the incoming reading. Precise and needs no prior
 *   knowledge of the block; used for small writes (at most MAX_SLOT_GUARDS readings).
 * - `new-block`: the block does not exist yet. The usual case of a whole-day delivery, which
 *   would not fit per-slot conditions into one expression.
 * - `version`: the block is exactly as last seen (`ver` unchanged). Used after a failed attempt,
 *   when the returned ALL_OLD image told us which readings still need writing.
 */
export type Guard = { kind: 'slots' } | { kind: 'new-block' } | { kind: 'version'; version: number };

export function initialGuard(writes: PendingWrite[]): Guard {
  return writes.length <= MAX_SLOT_GUARDS ? { kind: 'slots' } : { kind: 'new-block' };
}

/**
 * The form a write leaves the block in. `slots` (the default) sets one attribute per reading;
 * `packed` sets `p` to the whole block (packBlock). Either may remove the other form's attributes:
 * only a write that holds the whole block (new, or guarded on the version of an image it read) does.
 */
export type BlockForm = { kind: 'slots'; remove?: string[] } | { kind: 'packed'; bytes: Uint8Array; remove: string[] };

/** Attributes one write may remove (each a placeholder in a 4 KB expression); a block with more stays per slot. */
const MAX_REMOVED = 400;

export interface UpdateRequestParts {
  UpdateExpression: string;
  ConditionExpression: string;
  ExpressionAttributeNames: Record<string, string>;
  ExpressionAttributeValues: Record<string, AttributeValue>;
}

/** Builds one UpdateItem for a set of readings in the same block (slots must be distinct). */
export function buildBlockUpdate(
  writes: PendingWrite[],
  guard: Guard,
  context: { blockStart: number; now: number },
  form: BlockForm = { kind: 'slots' },
): UpdateRequestParts {
  // Rounds share one unit and interval length (roundsOfDistinctSlots), so the first reading speaks for all.
  const shapeOf = writes[0]!.reading;
  const names: Record<string, string> = { '#bs': 'bs', '#u': 'u', '#d': 'd', '#ver': 'ver', '#ua': 'ua' };
  const values: Record<string, AttributeValue> = {
    ':bs': { N: String(context.blockStart) },
    ':u': { S: shapeOf.unit },
    ':d': { N: String(durationOf(shapeOf)) },
    ':one': { N: '1' },
    ':ua': { N: String(context.now) },
  };
  const sets = ['#bs = if_not_exists(#bs, :bs)', '#u = if_not_exists(#u, :u)', '#d = if_not_exists(#d, :d)', '#ua = :ua'];

  if (form.kind === 'packed') {
    names['#p'] = PACKED;
    values[':p'] = { B: form.bytes };
    sets.push('#p = :p');
  } else setSlots(writes, sets, names, values);
  const removes = (form.remove ?? []).map((name, index) => {
    names[`#x${index}`] = name;
    return `#x${index}`;
  });

  const conditions = ['(attribute_not_exists(#u) OR #u = :u)', '(attribute_not_exists(#d) OR #d = :d)'];
  if (guard.kind === 'new-block') conditions.push('attribute_not_exists(#ver)');
  if (guard.kind === 'version') {
    conditions.push('#ver = :ver');
    values[':ver'] = { N: String(guard.version) };
  }
  if (guard.kind === 'slots') {
    // A packed block cannot be compared slot by slot: the write fails and takes the version path.
    names['#p'] = PACKED;
    conditions.push('attribute_not_exists(#p)');
    const revisionPlaceholders = new Map<number, string>();
    for (const { reading, slot } of writes) {
      let placeholder = revisionPlaceholders.get(reading.revision);
      if (!placeholder) {
        placeholder = `:r${revisionPlaceholders.size}`;
        revisionPlaceholders.set(reading.revision, placeholder);
        values[placeholder] = { N: String(reading.revision) };
      }
      // An actual also replaces an estimate of the same revision (see classify).
      const revision = `${slot}[${REVISION}]`;
      const sameRevisionEstimate =
        reading.quality === 'actual' ? ` OR (${revision} = ${placeholder} AND attribute_exists(${slot}[${ESTIMATED}]))` : '';
      conditions.push(`(attribute_not_exists(${slot}) OR ${revision} < ${placeholder}${sameRevisionEstimate})`);
    }
  }

  const parts = {
    UpdateExpression: `SET ${sets.join(', ')}${removes.length > 0 ? ` REMOVE ${removes.join(', ')}` : ''} ADD #ver :one`,
    ConditionExpression: conditions.join(' AND '),
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
  // Every placeholder above is declared only where it is used. The check (one regular expression
  // per placeholder) cost more than the rest of a 96-slot request's encoding, so it stays as a
  // safety net on small requests only.
  return writes.length <= MAX_SLOT_GUARDS ? withoutUnusedPlaceholders(parts) : parts;
}

/** Sets one attribute per reading, and each origin's attribute once. */
function setSlots(writes: PendingWrite[], sets: string[], names: Record<string, string>, values: Record<string, AttributeValue>): void {
  const origins = new Map<string, string>();
  writes.forEach(({ reading, slot }, index) => {
    sets.push(`${slot} = :s${index}`);
    values[`:s${index}`] = encodeSlot(reading);
    const origin = originOf(reading);
    origins.set(originHash(origin), origin);
  });
  [...origins].forEach(([hash, origin], index) => {
    names[`#o${index}`] = `o_${hash}`;
    values[`:o${index}`] = { S: origin };
    sets.push(`#o${index} = if_not_exists(#o${index}, :o${index})`);
  });
}

/**
 * The request for one attempt at writing `pending` into a block. A whole-block write packs the
 * block when every value fits exactly (packBlock): a new block from a large write (`wholeBlock`:
 * more readings than per-slot guards), or a write guarded on the version of the `image` it was
 * classified against, when the write is whole-block or the block is already packed. Such a write
 * holds the whole block, so it can rewrite it: the packed form replaces the slot attributes, and a
 * packed block whose merged readings no longer pack exactly is written back slot by slot (never
 * rounded). Any other write sets its slots as before.
 */
export function planBlockWrite(
  pending: PendingWrite[],
  guard: Guard,
  image: DecodedBlock | undefined,
  context: { blockStart: number; now: number; wholeBlock: boolean },
): UpdateRequestParts {
  const durationSeconds = durationOf(pending[0]!.reading);
  if (guard.kind === 'new-block' && context.wholeBlock) {
    const bytes = packBlock(new Map(pending.map(({ reading, slot }) => [slot, packableOf(reading)])), durationSeconds);
    if (bytes) return buildBlockUpdate(pending, guard, context, { kind: 'packed', bytes, remove: [] });
  }
  if (guard.kind === 'version' && image && (image.packed || context.wholeBlock)) {
    const merged = new Map<string, PackableValue>(image.slots);
    for (const { reading, slot } of pending) merged.set(slot, packableOf(reading));
    const bytes = packBlock(merged, durationSeconds);
    const remove = image.packed ? [] : [...image.slots.keys(), ...image.originNames];
    if (bytes && remove.length <= MAX_REMOVED) return buildBlockUpdate(pending, guard, context, { kind: 'packed', bytes, remove });
    if (image.packed) return buildBlockUpdate(unpacked(pending, image), guard, context, { kind: 'slots', remove: [PACKED] });
  }
  return buildBlockUpdate(pending, guard, context);
}

function packableOf(reading: Reading): PackableValue {
  return { value: reading.value, revision: reading.revision, quality: reading.quality, origin: originOf(reading) };
}

/** Every reading of a packed block with `pending` written over it, as per-slot writes. */
function unpacked(pending: PendingWrite[], image: DecodedBlock): PendingWrite[] {
  const { meterId, channel } = pending[0]!.reading;
  const written = new Set(pending.map(({ slot }) => slot));
  const kept = [...image.slots]
    .filter(([slot]) => !written.has(slot))
    .map(([slot, stored]) => ({ slot, reading: slotToReading(meterId, channel, image, slot, stored) }));
  return [...kept, ...pending];
}

/**
 * Splits a block's readings into rounds of distinct slots and one shape (unit, interval length),
 * so a batch that carries the same identity twice is written in order (the later one then meets
 * the earlier one like any replay), and a reading of another shape meets the block's guard alone.
 */
export function roundsOfDistinctSlots(writes: PendingWrite[]): PendingWrite[][] {
  const rounds: PendingWrite[][] = [];
  const slotsPerRound: Set<string>[] = [];
  for (const write of writes) {
    let round = slotsPerRound.findIndex(
      (slots, index) => !slots.has(write.slot) && shapeMismatch(write.reading, shapeOfRound(rounds[index]!)) === undefined,
    );
    if (round === -1) {
      round = rounds.length;
      rounds.push([]);
      slotsPerRound.push(new Set());
    }
    rounds[round]!.push(write);
    slotsPerRound[round]!.add(write.slot);
  }
  return rounds;
}

function shapeOfRound(round: PendingWrite[]): BlockShape {
  const first = round[0]!.reading;
  return { unit: first.unit, durationSeconds: durationOf(first) };
}

/** Turns a stored slot back into a reading (for queries). */
export function slotToReading(meterId: string, channel: string, block: DecodedBlock, slot: string, stored: StoredValue): Reading {
  const instant = new Date((block.blockStart + Number(slot.slice(1))) * 1000);
  const [source, ...originParts] = (stored.origin ?? 'unknown:unknown').split(':');
  const base = {
    meterId,
    channel,
    value: stored.value,
    unit: block.unit ?? stored.unit,
    quality: stored.quality,
    revision: stored.revision,
    source: source as Source,
    originId: originParts.join(':'),
  };
  return stored.durationSeconds === 0
    ? { kind: 'register', ...base, at: instant }
    : { kind: 'interval', ...base, start: instant, end: new Date(instant.getTime() + stored.durationSeconds * 1000) };
}
