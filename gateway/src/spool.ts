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
 * Every record in a segment or the outbox is framed as [u32 LE length][u32 LE CRC-32][payload].
 * On open, a record that is cut short or fails its CRC at the end of the newest file is a write
 * that power loss or SIGKILL interrupted: it is dropped (the file truncated to the last good
 * record) and everything before it kept. A bad record anywhere else is corruption: logged as an
 * error, the rest of that segment skipped, the spool still opens.
 *
 * Readings are numbered by their position (index) in the spool. The cursor is the index of the
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
  /** Records found corrupt (not at the end of a file) when the spool was opened. */
  corruptRecords: number;
  cursor: number;
  nextIndex: number;
  ackedSeq: number;
  nextSeq: number;
}

interface Segment {
  path: string;
  firstIndex: number;
  count: number;
  bytes: number;
}

interface State {
  cursor: number;
  ackedSeq: number;
}

const HEADER_BYTES = 8;
/** No record we write comes near this; a larger length is a torn or corrupt header. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const SEGMENT_NAME = /^seg-(\d{16})\.log$/;

export function frameRecord(payload: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  framed.writeUInt32LE(payload.length, 0);
  framed.writeUInt32LE(crc32(payload), 4);
  payload.copy(framed, HEADER_BYTES);
  return framed;
}

export interface ScanResult {
  /** Payloads of the valid records, in order (views into the buffer). */
  records: Buffer[];
  /** Bytes up to the end of the last valid record. */
  validBytes: number;
  /** Whether anything follows the last valid record (a torn or corrupt record). */
  damaged: boolean;
}

/** Reads framed records until the first one that is cut short or fails its CRC. */
export function scanRecords(buffer: Buffer): ScanResult {
  const records: Buffer[] = [];
  let offset = 0;
  while (offset + HEADER_BYTES <= buffer.length) {
    const length = buffer.readUInt32LE(offset);
    if (length > MAX_RECORD_BYTES || offset + HEADER_BYTES + length > buffer.length) break;
    const payload = buffer.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length);
    if (crc32(payload) !== buffer.readUInt32LE(offset + 4)) break;
    records.push(payload);
    offset += HEADER_BYTES + length;
  }
  return { records, validBytes: offset, damaged: offset < buffer.length };
}

type EncodedReading = [string, string, number, number, number, Unit, 0 | 1, number?];

function encodeReading(r: SpooledReading): Buffer {
  const row: EncodedReading = [r.meterId, r.channel, r.start, r.intervalSeconds, r.value, r.unit, r.quality === 'estimated' ? 1 : 0];
  if (r.counter !== undefined) row.push(r.counter);
  return Buffer.from(JSON.stringify(row));
}

function decodeReading(payload: Buffer, index: number): IndexedReading {
  const [meterId, channel, start, intervalSeconds, value, unit, estimated, counter] = JSON.parse(payload.toString('utf8')) as EncodedReading;
  return { index, meterId, channel, start, intervalSeconds, value, unit, quality: estimated ? 'estimated' : 'actual', ...(counter !== undefined ? { counter } : {}) };
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
function replaceFileAtomically(directory: string, name: string, content: string): void {
  const temporary = join(directory, `${name}.tmp`);
  const fd = openSync(temporary, 'w', 0o640);
  try {
    writeAll(fd, Buffer.from(content));
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
  private readCache: { firstIndex: number; buffer: Buffer; index: number; offset: number } | undefined;
  private counts = { droppedReadings: 0, refusedReadings: 0, tornRecordsDropped: 0, corruptRecords: 0 };

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
    if (existsSync(statePath)) {
      const parsed = JSON.parse(readFileSync(statePath, 'utf8')) as Partial<State>;
      if (!Number.isSafeInteger(parsed.cursor) || !Number.isSafeInteger(parsed.ackedSeq)) throw new Error(`${statePath} is not a spool state file`);
      this.state = { cursor: parsed.cursor!, ackedSeq: parsed.ackedSeq! };
      this.persisted = { ...this.state };
    }

    const names = readdirSync(this.directory).filter((name) => SEGMENT_NAME.test(name)).sort();
    if (!existsSync(statePath) && names.length === 0 && !existsSync(join(this.directory, 'outbox.log'))) this.initialiseSeq();
    names.forEach((name, i) => {
      const path = join(this.directory, name);
      const firstIndex = Number(SEGMENT_NAME.exec(name)![1]);
      const buffer = readFileSync(path);
      const scan = scanRecords(buffer);
      const last = i === names.length - 1;
      if (scan.damaged) {
        if (last) {
          this.counts.tornRecordsDropped++;
          this.log.warn('spool: torn record at the end of the newest segment dropped (interrupted write)', { segment: name, keptRecords: scan.records.length, droppedBytes: buffer.length - scan.validBytes });
          const fd = openSync(path, 'r+');
          ftruncateSync(fd, scan.validBytes);
          fsyncSync(fd);
          closeSync(fd);
        } else {
          this.counts.corruptRecords++;
          this.log.error('spool: corrupt record inside a segment; the rest of that segment is skipped', { segment: name, keptRecords: scan.records.length, skippedBytes: buffer.length - scan.validBytes });
        }
      }
      this.segments.push({ path, firstIndex, count: scan.records.length, bytes: last ? scan.validBytes : buffer.length });
      if (last) scan.records.forEach((payload, k) => this.rememberCounter(decodeReading(payload, firstIndex + k)));
    });
    const newest = this.segments.at(-1);
    this.nextIndexValue = Math.max(newest ? newest.firstIndex + newest.count : 0, this.state.cursor);

    this.recoverOutbox();
    this.buildFromValue = Math.max(this.state.cursor, ...this.pending.map((m) => m.cursorAfter));

    if (!newest) this.startSegment(this.nextIndexValue);
    else this.fd = openSync(newest.path, 'a', 0o640);
    this.totalBytes = this.segments.reduce((sum, s) => sum + s.bytes, 0);
    this.deleteDeliveredSegments();
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
    replaceFileAtomically(this.directory, 'state.json', JSON.stringify(this.state));
    this.persisted = { ...this.state };
    this.log.info('spool: created', { directory: this.directory, firstSeq: this.state.ackedSeq + 1 });
  }

  private recoverOutbox(): void {
    const path = join(this.directory, 'outbox.log');
    this.outboxFd = openSync(path, 'a+', 0o640);
    const buffer = readFileSync(path);
    const scan = scanRecords(buffer);
    if (scan.damaged) {
      this.counts.tornRecordsDropped++;
      this.log.warn('spool: torn record at the end of the outbox dropped (a message that was never published)', { droppedBytes: buffer.length - scan.validBytes });
      ftruncateSync(this.outboxFd, scan.validBytes);
      fsyncSync(this.outboxFd);
    }
    this.outboxBytes = scan.validBytes;
    let highest = this.state.ackedSeq;
    for (const payload of scan.records) {
      const message = JSON.parse(payload.toString('utf8')) as OutboxMessage;
      highest = Math.max(highest, message.seq);
      if (message.seq > this.state.ackedSeq) this.pending.push(message);
    }
    this.nextSeqValue = highest + 1;
  }

  private startSegment(firstIndex: number): void {
    const path = join(this.directory, segmentName(firstIndex));
    this.fd = openSync(path, 'a', 0o640);
    fsyncDirectory(this.directory);
    this.segments.push({ path, firstIndex, count: 0, bytes: 0 });
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
    const batch = Buffer.concat(readings.map((r) => frameRecord(encodeReading(r))));
    if (this.whenFull === 'stop-accepting' && this.totalBytes + batch.length > this.maxBytes) {
      this.counts.refusedReadings += readings.length;
      this.log.error('spool: full, new readings refused (spool.whenFull = stop-accepting)', { refused: readings.length, bytes: this.totalBytes, maxBytes: this.maxBytes });
      return { appended: 0, refused: readings.length };
    }
    let active = this.segments.at(-1)!;
    if (active.bytes > 0 && active.bytes + batch.length > this.segmentBytes) {
      closeSync(this.fd);
      this.startSegment(this.nextIndexValue);
      active = this.segments.at(-1)!;
    }
    this.writeOrRollBack(this.fd, batch, active.bytes);
    active.count += readings.length;
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
        const end = oldest.firstIndex + oldest.count;
        const lost = Math.max(0, end - Math.max(this.buildFromValue, oldest.firstIndex));
        unlinkSync(oldest.path);
        this.totalBytes -= oldest.bytes;
        if (this.readCache?.firstIndex === oldest.firstIndex) this.readCache = undefined;
        const next = this.segments[0]!.firstIndex;
        this.state.cursor = Math.max(this.state.cursor, next);
        this.buildFromValue = Math.max(this.buildFromValue, next);
        if (lost > 0) {
          this.counts.droppedReadings += lost;
          this.log.error('spool: full, oldest unsent readings deleted (spool.whenFull = drop-oldest)', { dropped: lost, segment: oldest.path, maxBytes: this.maxBytes });
        }
        this.persistState();
      }
    }
    const percent = (this.totalBytes / this.maxBytes) * 100;
    if (!this.warned && percent >= this.warnAtPercent) {
      this.warned = true;
      this.log.warn('spool: filling up', { fillPercent: Math.round(percent), bytes: this.totalBytes, maxBytes: this.maxBytes, policy: this.whenFull });
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
    let index = from;
    for (const segment of this.segments) {
      if (out.length >= max) break;
      const end = segment.firstIndex + segment.count;
      if (end <= index) continue;
      index = Math.max(index, segment.firstIndex);
      let cache = this.readCache;
      if (!cache || cache.firstIndex !== segment.firstIndex || cache.buffer.length < segment.bytes || cache.index > index) {
        cache = { firstIndex: segment.firstIndex, buffer: readFileSync(segment.path).subarray(0, segment.bytes), index: segment.firstIndex, offset: 0 };
        this.readCache = cache;
      }
      while (cache.index < end && out.length < max) {
        const length = cache.buffer.readUInt32LE(cache.offset);
        if (cache.index >= index) out.push(decodeReading(cache.buffer.subarray(cache.offset + HEADER_BYTES, cache.offset + HEADER_BYTES + length), cache.index));
        cache.offset += HEADER_BYTES + length;
        cache.index++;
      }
      index = cache.index;
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
    replaceFileAtomically(this.directory, 'state.json', JSON.stringify(this.state));
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
    while (this.segments.length > 1 && this.segments[0]!.firstIndex + this.segments[0]!.count <= this.persisted.cursor) {
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
