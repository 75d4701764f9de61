/**
 * The durable spool: every reading is on disk (fsync'd) before the poller counts it as taken,
 * and stays there until a PUBACK for the message carrying it has been recorded.
 *
 * Layout of the spool directory:
 *
 *   seg-<first index, 16 digits>.log  readings, append-only; a new segment every `segmentBytes`
 *   outbox.log                        messages built but not yet acknowledged, byte-exact
 *   state.json                        { cursor, ackedSeq }, replaced atomically (write, fsync, rename)
 *
 * Every record in a segment or the outbox is framed as [magic][u32 LE length][u32 LE CRC-32][payload]
 * (record format 2), and a reading's payload carries its own index. On open, damaged bytes at the
 * end of the newest file are a write that power loss or SIGKILL interrupted: cut off, everything
 * before kept. Damage anywhere else is corruption: the reader skips to the next magic whose record
 * passes its CRC, so one bad record costs that record (logged as an error and counted), and the
 * spool still opens. state.json carries a CRC too; when it is missing or damaged it is rebuilt from
 * the segments and the outbox (see rebuildState), with a warning and a counter.
 *
 * Upgrade: files written in record format 1 ([u32 length][u32 CRC][payload], no magic, no index)
 * are recognized and read as before; a format 1 outbox is rewritten in format 2 on open, format 1
 * segments are read until delivered and deleted, and new readings go to a new format 2 segment.
 * A state.json without its CRC (format 1) is accepted as it is.
 *
 * Readings are numbered by their position (index) in the spool; an index is never reused. The cursor is the index of the
 * first reading not yet acknowledged; segments wholly below it are deleted.
 *
 * Message identity: the cloud ledger claims a message by (gatewayId, seq), so a seq must never
 * be reused for different content. Messages are therefore built once, written to the outbox
 * with their seq (fsync) *before* they are published, and re-sent after a crash or reconnect
 * exactly as written. The next seq is one past the highest in the outbox or acknowledged, so it
 * keeps increasing across restarts; the outbox is emptied only after state.json records that
 * everything in it was acknowledged.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Quality, Unit } from '../../shared/reading.ts';
import { silentLog, type Log } from '../../shared/log.ts';

/** One interval reading as spooled (compact: thousands per poll cycle on a large gateway). */
export interface SpooledReading {
  meterId: string;
  channel: string;
  /** Interval start, epoch seconds. */
  start: number;
  intervalSeconds: number;
  value: number;
  unit: Unit;
  quality: Quality;
  /** For cumulative registers: the raw register value at the interval end, so a restart can continue from it. */
  counter?: number;
}

export interface IndexedReading extends SpooledReading {
  index: number;
}

/** A built message as kept in the outbox until its PUBACK. */
export interface OutboxMessage {
  seq: number;
  /** The cursor once this message and all before it are acknowledged. */
  cursorAfter: number;
  /** The exact MQTT payload. */
  body: string;
  /** Readings it carries (for logs and status). */
  readings: number;
}

export interface SpoolOptions {
  directory: string;
  /** @default 512 MiB */
  maxBytes?: number;
  /** @default 4 MiB */
  segmentBytes?: number;
  /** @default 'drop-oldest' */
  whenFull?: 'drop-oldest' | 'stop-accepting';
  /** @default 80 */
  warnAtPercent?: number;
  log?: Log;
  /** Called at the points where a crash matters most; the crash tests kill the agent there. */
  faultPoint?: (point: SpoolFaultPoint) => void;
}

/** `append`: a reading batch was fsync'd; `outbox`: built messages were fsync'd; `state`: state.json was replaced. */
export type SpoolFaultPoint = 'append' | 'outbox' | 'state';

export interface AppendResult {
  /** Readings now durable. */
  appended: number;
  /** Readings refused because the spool is full (`stop-accepting`). */
  refused: number;
}

export interface SpoolStats {
  /** Readings not yet acknowledged (in the outbox or not yet built into a message). */
  depth: number;
  /** Messages written to the outbox and not yet acknowledged. */
  pendingMessages: number;
  bytes: number;
  maxBytes: number;
  fillPercent: number;
  segments: number;
  /** Readings deleted unsent by the size cap since the spool was opened. */
  droppedReadings: number;
  /** Readings refused by a full spool since it was opened. */
  refusedReadings: number;
  /** Torn final records dropped when the spool was opened. */
  tornRecordsDropped: number;
  /** Corrupt stretches (one or more damaged records, not an interrupted final write) skipped when the spool was opened. */
  corruptRecords: number;
  /** Readings known lost in those stretches (missing indices between records that survived). */
  corruptReadingsLost: number;
  /** 1 if state.json was missing or damaged and was rebuilt from the segments and the outbox when the spool was opened. */
  stateRebuilt: number;
  cursor: number;
  nextIndex: number;
  ackedSeq: number;
  nextSeq: number;
}

interface Segment {
  path: string;
  firstIndex: number;
  /** One past the highest index in the segment (indices in it may have gaps where records were lost). */
  end: number;
  bytes: number;
  /** Written in record format 1: no magic, no index in the record (read positionally). */
  legacy?: boolean;
}

interface State {
  cursor: number;
  ackedSeq: number;
}

/**
 * Record framing, format 2: [magic 4][u32 LE length][u32 LE CRC-32 of length and payload][payload].
 * The magic lets a reader resynchronize after damage: it scans forward to the next magic whose
 * record passes its CRC, so one bad record costs that record, not the rest of its file. The first
 * byte 0xFF never occurs in UTF-8 (every payload is UTF-8 JSON), so a payload cannot fake a record
 * start; read as a format 1 length the magic exceeds MAX_RECORD_BYTES, so no format 1 file starts with it.
 */
const RECORD_MAGIC = Buffer.from([0xff, 0x4d, 0x42, 0xd2]);
const HEADER_BYTES = 12;
/** Format 1 (before resynchronizing records): [u32 LE length][u32 LE CRC-32][payload]. */
const LEGACY_HEADER_BYTES = 8;
/** No record we write comes near this; a larger length is a torn or corrupt header. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const SEGMENT_NAME = /^seg-(\d{16})\.log$/;

function recordCrc(lengthField: Buffer, payload: Buffer): number {
  return crc32(payload, crc32(lengthField));
}

export function frameRecord(payload: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  RECORD_MAGIC.copy(framed, 0);
  framed.writeUInt32LE(payload.length, 4);
  framed.writeUInt32LE(recordCrc(framed.subarray(4, 8), payload), 8);
  payload.copy(framed, HEADER_BYTES);
  return framed;
}

/** The record starting exactly at `offset`, if it is whole and passes its CRC. */
function recordAt(buffer: Buffer, offset: number): { payload: Buffer; next: number } | undefined {
  if (offset + HEADER_BYTES > buffer.length || buffer.compare(RECORD_MAGIC, 0, 4, offset, offset + 4) !== 0) return undefined;
  const length = buffer.readUInt32LE(offset + 4);
  if (length > MAX_RECORD_BYTES || offset + HEADER_BYTES + length > buffer.length) return undefined;
  const payload = buffer.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length);
  if (recordCrc(buffer.subarray(offset + 4, offset + 8), payload) !== buffer.readUInt32LE(offset + 8)) return undefined;
  return { payload, next: offset + HEADER_BYTES + length };
}

interface FoundRecord {
  payload: Buffer;
  /** Where the record starts: past `offset` when damaged bytes were skipped to reach it. */
  start: number;
  next: number;
}

/** The first valid record at or after `offset`, skipping damaged bytes (resynchronizing on the magic). */
function nextRecord(buffer: Buffer, offset: number, accept: (payload: Buffer) => boolean = () => true): FoundRecord | undefined {
  let at = offset;
  while (at >= 0 && at < buffer.length) {
    const record = recordAt(buffer, at);
    if (record && accept(record.payload)) return { ...record, start: at };
    at = buffer.indexOf(RECORD_MAGIC, at + 1);
  }
  return undefined;
}

export interface ScanResult {
  /** Payloads of the valid records, in order (views into the buffer). */
  records: Buffer[];
  /** Bytes up to the end of the last valid record. */
  validBytes: number;
  /** Whether anything in the buffer is not a valid record (corrupt or torn). */
  damaged: boolean;
  /** Damaged stretches followed by a valid record (corruption, skipped). */
  corruptStretches: number;
  /** Whether damaged bytes follow the last valid record (at the end of the newest file: an interrupted write). */
  damagedTail: boolean;
}

/** Reads every valid record, skipping damaged stretches. `accept` can refuse a record that passes its CRC. */
export function scanRecords(buffer: Buffer, accept?: (payload: Buffer) => boolean): ScanResult {
  const records: Buffer[] = [];
  let offset = 0;
  let corruptStretches = 0;
  for (let record = nextRecord(buffer, 0, accept); record; record = nextRecord(buffer, offset, accept)) {
    if (record.start > offset) corruptStretches++;
    records.push(record.payload);
    offset = record.next;
  }
  const damagedTail = offset < buffer.length;
  return { records, validBytes: offset, damaged: corruptStretches > 0 || damagedTail, corruptStretches, damagedTail };
}

/** Format 1 reading: stops at the first record that is cut short or fails its CRC (it cannot resynchronize). */
function scanLegacyRecords(buffer: Buffer): ScanResult {
  const records: Buffer[] = [];
  let offset = 0;
  while (offset + LEGACY_HEADER_BYTES <= buffer.length) {
    const length = buffer.readUInt32LE(offset);
    if (length > MAX_RECORD_BYTES || offset + LEGACY_HEADER_BYTES + length > buffer.length) break;
    const payload = buffer.subarray(offset + LEGACY_HEADER_BYTES, offset + LEGACY_HEADER_BYTES + length);
    if (crc32(payload) !== buffer.readUInt32LE(offset + 4)) break;
    records.push(payload);
    offset += LEGACY_HEADER_BYTES + length;
  }
  const damagedTail = offset < buffer.length;
  return { records, validBytes: offset, damaged: damagedTail, corruptStretches: 0, damagedTail };
}

/**
 * A file written before format 2: not empty, and no format 2 record anywhere in it. (A format 2
 * file whose every record is damaged is also taken for one; read as format 1 it yields nothing,
 * the same as format 2 would.)
 */
function isLegacyFile(buffer: Buffer): boolean {
  return buffer.length > 0 && nextRecord(buffer, 0) === undefined;
}

/**
 * A reading record's payload is the JSON array [index, meterId, channel, start, intervalSeconds,
 * value, unit, estimated, counter?]: it carries its own index, so a reader that skipped a damaged
 * record knows exactly which index it lost and numbers the following ones right.
 */
type EncodedReading = [number, string, string, number, number, number, Unit, 0 | 1, number?];

function encodeReading(r: SpooledReading, index: number): Buffer {
  const row: EncodedReading = [index, r.meterId, r.channel, r.start, r.intervalSeconds, r.value, r.unit, r.quality === 'estimated' ? 1 : 0];
  if (r.counter !== undefined) row.push(r.counter);
  return Buffer.from(JSON.stringify(row));
}

/** The index at the front of a reading payload (`[123,...`), read without parsing the rest; -1 if there is none. */
function payloadIndex(payload: Buffer): number {
  if (payload[0] !== 0x5b) return -1;
  let index = 0;
  let k = 1;
  for (; k < payload.length && k < 18; k++) {
    const digit = payload[k]! - 0x30;
    if (digit < 0 || digit > 9) break;
    index = index * 10 + digit;
  }
  return k > 1 && payload[k] === 0x2c ? index : -1;
}

function decodeLegacyReading(payload: Buffer, index: number): IndexedReading {
  const row = JSON.parse(payload.toString('utf8')) as unknown[];
  return decodeReading(Buffer.from(JSON.stringify([index, ...row])));
}

function decodeReading(payload: Buffer): IndexedReading {
  const [index, meterId, channel, start, intervalSeconds, value, unit, estimated, counter] = JSON.parse(payload.toString('utf8')) as EncodedReading;
  return {
    index,
    meterId,
    channel,
    start,
    intervalSeconds,
    value,
    unit,
    quality: estimated ? 'estimated' : 'actual',
    ...(counter !== undefined ? { counter } : {}),
  };
}

/** The next reading record of a segment after index `after - 1`: a valid record whose index is in order. */
function nextReadingRecord(buffer: Buffer, offset: number, after: number): (FoundRecord & { index: number }) | undefined {
  const record = nextRecord(buffer, offset, (payload) => payloadIndex(payload) >= after);
  return record && { ...record, index: payloadIndex(record.payload) };
}

interface SegmentScan {
  /** Valid reading records, in index order. */
  records: Array<{ index: number; payload: Buffer }>;
  validBytes: number;
  corruptStretches: number;
  damagedTail: boolean;
  /** Indices missing between the first and last valid record (readings lost to the corrupt stretches). */
  missing: number;
}

function scanSegment(buffer: Buffer, firstIndex: number): SegmentScan {
  const records: Array<{ index: number; payload: Buffer }> = [];
  let offset = 0;
  let after = firstIndex;
  let corruptStretches = 0;
  let missing = 0;
  for (let record = nextReadingRecord(buffer, 0, after); record; record = nextReadingRecord(buffer, offset, after)) {
    if (record.start > offset) corruptStretches++;
    if (records.length > 0) missing += record.index - after;
    records.push({ index: record.index, payload: record.payload });
    offset = record.next;
    after = record.index + 1;
  }
  return { records, validBytes: offset, corruptStretches, damagedTail: offset < buffer.length, missing };
}

/** state.json: the cursor and acknowledged seq with a CRC of both, so a damaged file is known as such. */
function encodeState(state: State): string {
  return JSON.stringify({ cursor: state.cursor, ackedSeq: state.ackedSeq, check: crc32(`${state.cursor}:${state.ackedSeq}`) });
}

/** The state in a state.json, or undefined if it is damaged. A file without `check` was written before it existed. */
function decodeState(text: string): State | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const { cursor, ackedSeq, check, ...rest } = parsed as Record<string, unknown>;
  if (Object.keys(rest).length > 0 || !Number.isSafeInteger(cursor) || !Number.isSafeInteger(ackedSeq)) return undefined;
  const state = { cursor: cursor as number, ackedSeq: ackedSeq as number };
  if (state.cursor < 0 || state.ackedSeq < 0) return undefined;
  if ('check' in (parsed as object) && check !== crc32(`${state.cursor}:${state.ackedSeq}`)) return undefined;
  return state;
}

function fsyncDirectory(directory: string): void {
  const fd = openSync(directory, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, buffer: Buffer): void {
  let written = 0;
  while (written < buffer.length) written += writeSync(fd, buffer, written, buffer.length - written);
}

/** Writes a small file so that a crash leaves either the old or the new content, never a mix. */
function replaceFileAtomically(directory: string, name: string, content: string | Buffer): void {
  const temporary = join(directory, `${name}.tmp`);
  const fd = openSync(temporary, 'w', 0o640);
  try {
    writeAll(fd, typeof content === 'string' ? Buffer.from(content) : content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, join(directory, name));
  fsyncDirectory(directory);
}

const segmentName = (firstIndex: number) => `seg-${String(firstIndex).padStart(16, '0')}.log`;

/**
 * Single-process, synchronous by design: every operation is a few writes and one fsync, the
 * agent does little else, and synchronous calls cannot interleave half-way through a commit.
 */
export class Spool {
  readonly directory: string;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly whenFull: 'drop-oldest' | 'stop-accepting';
  private readonly warnAtPercent: number;
  private readonly log: Log;
  private readonly faultPoint: ((point: SpoolFaultPoint) => void) | undefined;

  private segments: Segment[] = [];
  private fd = -1;
  private outboxFd = -1;
  private outboxBytes = 0;
  private state: State = { cursor: 0, ackedSeq: 0 };
  private persisted: State = { cursor: 0, ackedSeq: 0 };
  private pending: OutboxMessage[] = [];
  private acked = new Set<number>();
  private nextSeqValue = 1;
  private nextIndexValue = 0;
  private buildFromValue = 0;
  private totalBytes = 0;
  private warned = false;
  private readonly counters = new Map<string, { end: number; counter: number }>();
  private readCache: { firstIndex: number; buffer: Buffer; offset: number; after: number } | undefined;
  private counts = { droppedReadings: 0, refusedReadings: 0, tornRecordsDropped: 0, corruptRecords: 0, corruptReadingsLost: 0, stateRebuilt: 0 };

  private constructor(options: SpoolOptions) {
    this.directory = options.directory;
    this.maxBytes = options.maxBytes ?? 512 * 1024 ** 2;
    this.segmentBytes = options.segmentBytes ?? 4 * 1024 ** 2;
    this.whenFull = options.whenFull ?? 'drop-oldest';
    this.warnAtPercent = options.warnAtPercent ?? 80;
    this.log = options.log ?? silentLog;
    this.faultPoint = options.faultPoint;
  }

  /** Opens (creating if needed) and recovers a spool directory. */
  static open(options: SpoolOptions): Spool {
    const spool = new Spool(options);
    spool.recover();
    return spool;
  }

  private recover(): void {
    mkdirSync(this.directory, { recursive: true, mode: 0o750 });
    const statePath = join(this.directory, 'state.json');
    const stateText = existsSync(statePath) ? readFileSync(statePath, 'utf8') : undefined;
    const loaded = stateText === undefined ? undefined : decodeState(stateText);
    if (loaded) {
      this.state = loaded;
      this.persisted = { ...loaded };
    }

    const names = readdirSync(this.directory)
      .filter((name) => SEGMENT_NAME.test(name))
      .sort();
    if (stateText === undefined && names.length === 0 && !existsSync(join(this.directory, 'outbox.log'))) this.initialiseSeq();
    names.forEach((name, i) => this.recoverSegment(name, i === names.length - 1));
    const newest = this.segments.at(-1);

    const outbox = this.recoverOutbox();
    if (!loaded && this.persisted.ackedSeq === 0) this.rebuildState(stateText === undefined ? 'missing' : 'damaged', outbox);
    this.pending = outbox.filter((m) => m.seq > this.state.ackedSeq);
    this.nextSeqValue = Math.max(this.state.ackedSeq, ...outbox.map((m) => m.seq)) + 1;
    // Seqs may have been used that nothing on disk shows any more: start above them (see initialiseSeq).
    if (this.counts.stateRebuilt > 0 || this.outboxDamaged) this.nextSeqValue = Math.max(this.nextSeqValue, Date.now());
    this.buildFromValue = Math.max(this.state.cursor, ...this.pending.map((m) => m.cursorAfter));
    // Never below what was built or acknowledged: if the newest records were lost, new readings must not reuse their indices.
    this.nextIndexValue = Math.max(newest ? newest.end : 0, this.state.cursor, this.buildFromValue);

    // A format 1 segment is only read, never appended to: new records go to a new (format 2) segment.
    if (!newest || this.legacyNewest) this.startSegment(this.nextIndexValue);
    else this.fd = openSync(newest.path, 'a', 0o640);
    this.totalBytes = this.segments.reduce((sum, s) => sum + s.bytes, 0);
    this.deleteDeliveredSegments();
  }

  private legacyNewest = false;
  private outboxDamaged = false;

  /**
   * Scans one segment. A damaged tail of the newest segment is a write that power loss or SIGKILL
   * interrupted: cut off. Any other damaged stretch is corruption: skipped with an error log, the
   * records on both sides of it kept.
   */
  private recoverSegment(name: string, newest: boolean): void {
    const path = join(this.directory, name);
    const firstIndex = Number(SEGMENT_NAME.exec(name)![1]);
    const buffer = readFileSync(path);
    if (isLegacyFile(buffer)) {
      this.recoverLegacySegment(path, name, firstIndex, buffer, newest);
      return;
    }
    const scan = scanSegment(buffer, firstIndex);
    const corrupt = scan.corruptStretches + (scan.damagedTail && !newest ? 1 : 0);
    if (corrupt > 0) {
      this.counts.corruptRecords += corrupt;
      this.counts.corruptReadingsLost += scan.missing;
      this.log.error('spool: corrupt records inside a segment skipped; the records around them are kept', {
        segment: name,
        corruptStretches: corrupt,
        readingsLost: scan.missing,
        keptRecords: scan.records.length,
      });
    }
    if (scan.damagedTail && newest) this.cutTornTail(path, name, scan.validBytes, buffer.length, scan.records.length);
    const last = scan.records.at(-1);
    this.segments.push({ path, firstIndex, end: last ? last.index + 1 : firstIndex, bytes: newest ? scan.validBytes : buffer.length });
    if (newest) for (const record of scan.records) this.rememberCounter(decodeReading(record.payload));
  }

  private cutTornTail(path: string, name: string, validBytes: number, size: number, keptRecords: number): void {
    this.counts.tornRecordsDropped++;
    this.log.warn('spool: torn record at the end of the newest segment dropped (interrupted write)', {
      segment: name,
      keptRecords,
      droppedBytes: size - validBytes,
    });
    const fd = openSync(path, 'r+');
    try {
      ftruncateSync(fd, validBytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * A segment written in format 1 (before records carried a magic and their index). It is read the
   * way it always was (up to its first bad record: format 1 cannot resynchronize) and kept as it is:
   * it is read until delivered, then deleted, and new readings go to a new format 2 segment.
   */
  private recoverLegacySegment(path: string, name: string, firstIndex: number, buffer: Buffer, newest: boolean): void {
    const scan = scanLegacyRecords(buffer);
    if (scan.damaged && newest) this.cutTornTail(path, name, scan.validBytes, buffer.length, scan.records.length);
    else if (scan.damaged) {
      this.counts.corruptRecords++;
      this.log.error('spool: corrupt record inside a format 1 segment; the rest of that segment is skipped', {
        segment: name,
        keptRecords: scan.records.length,
        skippedBytes: buffer.length - scan.validBytes,
      });
    }
    this.segments.push({
      path,
      firstIndex,
      end: firstIndex + scan.records.length,
      bytes: newest ? scan.validBytes : buffer.length,
      legacy: scan.records.length > 0,
    });
    if (newest) {
      // Cut back to nothing, it is an empty file, which format 2 appends to as well (and a new
      // segment would have its very name: it starts at the same index).
      this.legacyNewest = scan.records.length > 0;
      scan.records.forEach((payload, k) => this.rememberCounter(decodeLegacyReading(payload, firstIndex + k)));
    }
  }

  /**
   * state.json is missing or damaged while the spool holds data. Rebuilt so that nothing is lost and
   * no seq is reused: the cursor goes back to the oldest reading still on disk (readings acknowledged
   * but not yet deleted are sent again; the cloud stores each reading once), every message in the
   * outbox is pending again (re-sent byte-exact under its seq: a duplicate to the ledger at worst),
   * and new seqs start at the current time, above any seq used before (see initialiseSeq).
   */
  private rebuildState(reason: 'missing' | 'damaged', outbox: readonly OutboxMessage[]): void {
    const oldest = this.segments[0];
    const lowestSeq = Math.min(...outbox.map((m) => m.seq));
    this.state = {
      cursor: oldest ? oldest.firstIndex : 0,
      ackedSeq: outbox.length > 0 ? lowestSeq - 1 : Date.now() - 1,
    };
    this.counts.stateRebuilt = 1;
    this.log.warn(`spool: state.json ${reason}; rebuilt from the segments and the outbox (acknowledged readings still on disk are sent again)`, {
      directory: this.directory,
      cursor: this.state.cursor,
      pendingMessages: outbox.length,
    });
    replaceFileAtomically(this.directory, 'state.json', encodeState(this.state));
    this.persisted = { ...this.state };
  }

  /**
   * A new spool starts its seq at the current time in milliseconds, not at 1. The cloud ledger
   * remembers (gatewayId, seq) for 35 days, so a gateway whose spool was wiped (reinstall, new
   * disk) and restarted at 1 would have its new messages skipped as duplicates. A gateway can
   * publish at most 100 messages a second (IoT Core's limit), far fewer than the 1,000 seqs a
   * second this start moves on by, so a later spool always starts above everything an earlier
   * one used (given a clock kept right by NTP, which the readings need anyway).
   */
  private initialiseSeq(): void {
    this.state = { cursor: 0, ackedSeq: Date.now() - 1 };
    replaceFileAtomically(this.directory, 'state.json', encodeState(this.state));
    this.persisted = { ...this.state };
    this.log.info('spool: created', { directory: this.directory, firstSeq: this.state.ackedSeq + 1 });
  }

  /**
   * Reads the messages in the outbox up to its first damaged record, and cuts the file there. At
   * the end of the file that is a write interrupted before its message was published. Anywhere
   * else it is corruption, and the messages after it are dropped too: the readings of every
   * dropped message are built again from the last kept message on (the cloud stores a reading
   * once however often it comes), which is safe whatever the lost messages carried. A format 1
   * outbox is rewritten in format 2 (it is small: messages not yet acknowledged).
   */
  private recoverOutbox(): OutboxMessage[] {
    const path = join(this.directory, 'outbox.log');
    let buffer = existsSync(path) ? readFileSync(path) : Buffer.alloc(0);
    let kept: Buffer[];
    let validBytes: number;
    let damagedTail = false;
    let corrupt = false;
    if (isLegacyFile(buffer)) {
      const legacy = scanLegacyRecords(buffer);
      kept = legacy.records;
      damagedTail = legacy.damaged;
      if (kept.length > 0) {
        buffer = Buffer.concat(kept.map((payload) => frameRecord(payload)));
        replaceFileAtomically(this.directory, 'outbox.log', buffer);
        this.log.info('spool: outbox rewritten in record format 2', { messages: kept.length });
      }
      validBytes = kept.length > 0 ? buffer.length : 0;
    } else {
      kept = [];
      let offset = 0;
      for (let record = recordAt(buffer, 0); record; record = recordAt(buffer, offset)) {
        kept.push(record.payload);
        offset = record.next;
      }
      validBytes = offset;
      damagedTail = offset < buffer.length;
      corrupt = damagedTail && nextRecord(buffer, offset) !== undefined;
    }
    this.outboxFd = openSync(path, 'a+', 0o640);
    if (damagedTail) {
      // A damaged record may have been published before it was damaged: its seq must not be used again.
      this.outboxDamaged = true;
      if (corrupt) {
        this.counts.corruptRecords++;
        this.log.error('spool: corrupt outbox record; it and the messages after it are dropped and their readings built again', {
          keptMessages: kept.length,
          droppedBytes: buffer.length - validBytes,
        });
      } else {
        this.counts.tornRecordsDropped++;
        this.log.warn('spool: torn record at the end of the outbox dropped (a message that was never published)', {
          droppedBytes: buffer.length - validBytes,
        });
      }
      ftruncateSync(this.outboxFd, validBytes);
      fsyncSync(this.outboxFd);
    }
    this.outboxBytes = validBytes;
    return kept.map((payload) => JSON.parse(payload.toString('utf8')) as OutboxMessage);
  }

  private startSegment(firstIndex: number): void {
    const path = join(this.directory, segmentName(firstIndex));
    this.fd = openSync(path, 'a', 0o640);
    fsyncDirectory(this.directory);
    this.segments.push({ path, firstIndex, end: firstIndex, bytes: 0 });
  }

  private rememberCounter(reading: SpooledReading): void {
    if (reading.counter === undefined) return;
    const key = `${reading.meterId}\u0000${reading.channel}`;
    const end = reading.start + reading.intervalSeconds;
    const known = this.counters.get(key);
    if (!known || known.end <= end) this.counters.set(key, { end, counter: reading.counter });
  }

  /** The last spooled register value of a meter channel (to continue deltas after a restart). */
  lastCounter(meterId: string, channel: string): { end: number; counter: number } | undefined {
    return this.counters.get(`${meterId}\u0000${channel}`);
  }

  /** Appends readings with one write and one fsync (group commit). Durable when this returns. */
  append(readings: readonly SpooledReading[]): AppendResult {
    if (readings.length === 0) return { appended: 0, refused: 0 };
    const batch = Buffer.concat(readings.map((r, k) => frameRecord(encodeReading(r, this.nextIndexValue + k))));
    if (this.whenFull === 'stop-accepting' && this.totalBytes + batch.length > this.maxBytes) {
      this.counts.refusedReadings += readings.length;
      this.log.error('spool: full, new readings refused (spool.whenFull = stop-accepting)', {
        refused: readings.length,
        bytes: this.totalBytes,
        maxBytes: this.maxBytes,
      });
      return { appended: 0, refused: readings.length };
    }
    let active = this.segments.at(-1)!;
    if (active.bytes > 0 && active.bytes + batch.length > this.segmentBytes) {
      closeSync(this.fd);
      this.startSegment(this.nextIndexValue);
      active = this.segments.at(-1)!;
    }
    this.writeOrRollBack(this.fd, batch, active.bytes);
    active.end = this.nextIndexValue + readings.length;
    active.bytes += batch.length;
    this.totalBytes += batch.length;
    this.nextIndexValue += readings.length;
    for (const reading of readings) this.rememberCounter(reading);
    this.faultPoint?.('append');
    this.enforceCap();
    return { appended: readings.length, refused: 0 };
  }

  private enforceCap(): void {
    if (this.whenFull === 'drop-oldest') {
      while (this.totalBytes > this.maxBytes && this.segments.length > 1) {
        const oldest = this.segments.shift()!;
        const lost = Math.max(0, oldest.end - Math.max(this.buildFromValue, oldest.firstIndex));
        unlinkSync(oldest.path);
        this.totalBytes -= oldest.bytes;
        if (this.readCache?.firstIndex === oldest.firstIndex) this.readCache = undefined;
        const next = this.segments[0]!.firstIndex;
        this.state.cursor = Math.max(this.state.cursor, next);
        this.buildFromValue = Math.max(this.buildFromValue, next);
        if (lost > 0) {
          this.counts.droppedReadings += lost;
          this.log.error('spool: full, oldest unsent readings deleted (spool.whenFull = drop-oldest)', {
            dropped: lost,
            segment: oldest.path,
            maxBytes: this.maxBytes,
          });
        }
        this.persistState();
      }
    }
    const percent = (this.totalBytes / this.maxBytes) * 100;
    if (!this.warned && percent >= this.warnAtPercent) {
      this.warned = true;
      this.log.warn('spool: filling up', {
        fillPercent: Math.round(percent),
        bytes: this.totalBytes,
        maxBytes: this.maxBytes,
        policy: this.whenFull,
      });
    } else if (this.warned && percent < this.warnAtPercent * 0.9) {
      this.warned = false;
      this.log.info('spool: back below the warning level', { fillPercent: Math.round(percent) });
    }
  }

  /**
   * Writes and fsyncs a batch; if that fails (disk full, I/O error), cuts the file back to where
   * the batch began, so a half-written batch never sits in front of later records.
   */
  private writeOrRollBack(fd: number, batch: Buffer, sizeBefore: number): void {
    try {
      writeAll(fd, batch);
      fsyncSync(fd);
    } catch (error) {
      try {
        ftruncateSync(fd, sizeBefore);
      } catch {
        // Nothing more to do here: at the next start the scan drops what follows the last good record.
      }
      throw error;
    }
  }

  /** Index of the next reading to build into a message. */
  get buildFrom(): number {
    return this.buildFromValue;
  }

  get nextIndex(): number {
    return this.nextIndexValue;
  }

  /** Readings from `from` on (at most `max`), oldest first; skips indices that no longer exist. */
  readForward(from: number, max: number): IndexedReading[] {
    const out: IndexedReading[] = [];
    for (const segment of this.segments) {
      if (out.length >= max) break;
      if (segment.end <= from) continue;
      let cache = this.readCache;
      if (!cache || cache.firstIndex !== segment.firstIndex || cache.buffer.length < segment.bytes || cache.after > from) {
        cache = {
          firstIndex: segment.firstIndex,
          buffer: readFileSync(segment.path).subarray(0, segment.bytes),
          offset: 0,
          after: segment.firstIndex,
        };
        this.readCache = cache;
      }
      while (out.length < max && cache.after < segment.end) {
        let reading: IndexedReading;
        if (segment.legacy) {
          const length = cache.buffer.readUInt32LE(cache.offset);
          reading = decodeLegacyReading(
            cache.buffer.subarray(cache.offset + LEGACY_HEADER_BYTES, cache.offset + LEGACY_HEADER_BYTES + length),
            cache.after,
          );
          cache.offset += LEGACY_HEADER_BYTES + length;
        } else {
          // Checked again on every read: damage that happened after the spool was opened is skipped too.
          const record = nextReadingRecord(cache.buffer, cache.offset, cache.after);
          if (!record) break;
          reading = decodeReading(record.payload);
          cache.offset = record.next;
        }
        cache.after = reading.index + 1;
        if (reading.index >= from) out.push(reading);
      }
    }
    return out;
  }

  /** Reserves the next message sequence number. */
  allocateSeq(): number {
    return this.nextSeqValue++;
  }

  /**
   * Records built messages (one write, one fsync) before any of them is published; afterwards
   * they are re-sent exactly as written until acknowledged. `buildTo` is the index after the
   * last reading they carry.
   */
  addMessages(messages: OutboxMessage[], buildTo: number): void {
    if (messages.length === 0) return;
    const batch = Buffer.concat(messages.map((m) => frameRecord(Buffer.from(JSON.stringify(m)))));
    this.writeOrRollBack(this.outboxFd, batch, this.outboxBytes);
    this.outboxBytes += batch.length;
    this.faultPoint?.('outbox');
    this.pending.push(...messages);
    this.buildFromValue = Math.max(this.buildFromValue, buildTo);
  }

  /** Messages not yet acknowledged, lowest seq first. */
  pendingMessages(): readonly OutboxMessage[] {
    return this.pending;
  }

  /**
   * Records a PUBACK. The cursor moves only over an unbroken run of acknowledged messages from
   * the oldest, so a later ack never skips an earlier message. Call persistState() to make it durable.
   */
  acknowledge(seq: number): boolean {
    this.acked.add(seq);
    let moved = false;
    while (this.pending.length > 0 && this.acked.has(this.pending[0]!.seq)) {
      const message = this.pending.shift()!;
      this.acked.delete(message.seq);
      this.state.ackedSeq = message.seq;
      this.state.cursor = Math.max(this.state.cursor, message.cursorAfter);
      moved = true;
    }
    return moved;
  }

  /** Writes the cursor and acknowledged seq durably, then frees what they make obsolete. */
  persistState(): void {
    if (this.state.cursor === this.persisted.cursor && this.state.ackedSeq === this.persisted.ackedSeq) return;
    replaceFileAtomically(this.directory, 'state.json', encodeState(this.state));
    this.persisted = { ...this.state };
    this.faultPoint?.('state');
    this.deleteDeliveredSegments();
    if (this.pending.length === 0 && this.outboxBytes > 0) {
      // Safe only now: state.json says every message in the outbox was acknowledged.
      ftruncateSync(this.outboxFd, 0);
      fsyncSync(this.outboxFd);
      this.outboxBytes = 0;
    }
  }

  private deleteDeliveredSegments(): void {
    while (this.segments.length > 1 && this.segments[0]!.end <= this.persisted.cursor) {
      const done = this.segments.shift()!;
      unlinkSync(done.path);
      this.totalBytes -= done.bytes;
      if (this.readCache?.firstIndex === done.firstIndex) this.readCache = undefined;
    }
  }

  /** The oldest reading not yet acknowledged, if any. */
  oldestUnsent(): IndexedReading | undefined {
    return this.state.cursor < this.nextIndexValue ? this.readForward(this.state.cursor, 1)[0] : undefined;
  }

  stats(): SpoolStats {
    return {
      depth: Math.max(0, this.nextIndexValue - this.state.cursor),
      pendingMessages: this.pending.length,
      bytes: this.totalBytes,
      maxBytes: this.maxBytes,
      fillPercent: Math.round((this.totalBytes / this.maxBytes) * 1000) / 10,
      segments: this.segments.length,
      ...this.counts,
      cursor: this.state.cursor,
      nextIndex: this.nextIndexValue,
      ackedSeq: this.state.ackedSeq,
      nextSeq: this.nextSeqValue,
    };
  }

  close(): void {
    this.persistState();
    if (this.fd >= 0) closeSync(this.fd);
    if (this.outboxFd >= 0) closeSync(this.outboxFd);
    this.fd = -1;
    this.outboxFd = -1;
  }
}
