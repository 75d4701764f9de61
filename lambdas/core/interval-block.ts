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

/** A block item as read back (ALL_OLD on a failed condition, UPDATED_OLD, or a Query). */
export interface DecodedBlock extends BlockShape {
  pk: string;
  sk: string;
  blockStart: number;
  version: number;
  updatedAt?: number;
  slots: Map<string, StoredValue>;
}

export function decodeBlock(item: Record<string, AttributeValue>): DecodedBlock {
  const unit = item.u?.S as Unit | undefined;
  const durationSeconds = item.d?.N === undefined ? undefined : Number(item.d.N);
  const origins = new Map<string, string>();
  for (const [name, value] of Object.entries(item)) {
    if (name.startsWith('o_') && value.S !== undefined) origins.set(name.slice(2), value.S);
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
  return {
    pk: item.pk?.S ?? '',
    sk: item.sk?.S ?? '',
    blockStart: Number(item.bs?.N ?? NaN),
    unit,
    durationSeconds,
    version: Number(item.ver?.N ?? 0),
    updatedAt: item.ua?.N === undefined ? undefined : Number(item.ua.N),
    slots,
  };
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

export interface UpdateRequestParts {
  UpdateExpression: string;
  ConditionExpression: string;
  ExpressionAttributeNames: Record<string, string>;
  ExpressionAttributeValues: Record<string, AttributeValue>;
}

/** Builds one UpdateItem for a set of readings in the same block (slots must be distinct). */
export function buildBlockUpdate(writes: PendingWrite[], guard: Guard, context: { blockStart: number; now: number }): UpdateRequestParts {
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

  const conditions = ['(attribute_not_exists(#u) OR #u = :u)', '(attribute_not_exists(#d) OR #d = :d)'];
  if (guard.kind === 'new-block') conditions.push('attribute_not_exists(#ver)');
  if (guard.kind === 'version') {
    conditions.push('#ver = :ver');
    values[':ver'] = { N: String(guard.version) };
  }
  if (guard.kind === 'slots') {
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
    UpdateExpression: `SET ${sets.join(', ')} ADD #ver :one`,
    ConditionExpression: conditions.join(' AND '),
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
  // Every placeholder above is declared only where it is used. The check (one regular expression
  // per placeholder) cost more than the rest of a 96-slot request's encoding, so it stays as a
  // safety net on small requests only.
  return writes.length <= MAX_SLOT_GUARDS ? withoutUnusedPlaceholders(parts) : parts;
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
