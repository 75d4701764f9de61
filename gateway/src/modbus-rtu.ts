/**
 * Modbus RTU over a serial line (RS-485), beside Modbus TCP (modbus.ts). Several meters share one
 * bus; RS-485 is half duplex with one master, so the bus is locked for a whole meter (all its
 * registers) and meters are polled one at a time, whatever `polling.concurrency` says (that
 * applies to TCP meters). Before each request the line is left silent for the inter-frame time
 * (Modbus t3.5: 3.5 character times, at least 1.75 ms).
 *
 * A meter that does not answer within the timeout, an answer with a bad CRC, from the wrong unit
 * or with a Modbus exception are counted read errors of that meter; the bus moves on to the next
 * meter. After a timeout the meter's remaining registers are skipped (each would cost another
 * timeout while every other meter on the bus waits).
 */
import type { BusConfig, MeterConfig } from './config.ts';
import { describe, REGISTER_WORDS, registerValue, type MeterRead, type MeterReader } from './modbus.ts';
import { characterBits, SerialLine } from './serial.ts';

/** CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), sent low byte first. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/** `body` followed by its CRC (low byte first): one RTU frame. */
export function rtuFrame(body: readonly number[] | Uint8Array): Buffer {
  const frame = Buffer.alloc(body.length + 2);
  frame.set(body);
  frame.writeUInt16LE(crc16(frame.subarray(0, body.length)), body.length);
  return frame;
}

/** True when the last two bytes are the CRC of the rest. */
export function crcOk(frame: Uint8Array): boolean {
  return (
    frame.length >= 4 &&
    crc16(frame.subarray(0, frame.length - 2)) === Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).readUInt16LE(frame.length - 2)
  );
}

export class RtuTimeoutError extends Error {
  override name = 'RtuTimeoutError';
}
export class RtuCrcError extends Error {
  override name = 'RtuCrcError';
}
/** The serial device could not be configured or opened (unplugged adapter, missing permission). */
export class RtuOpenError extends Error {
  override name = 'RtuOpenError';
}

export interface RtuBusStats {
  requests: number;
  timeouts: number;
  crcErrors: number;
  exceptions: number;
}

/** One RS-485 line: the serial device, its lock, its timing. */
export class RtuBus {
  readonly interFrameMs: number;
  private readonly charMs: number;
  private line: SerialLine | undefined;
  private received: Buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private lastActivity = 0;
  private lock: Promise<void> = Promise.resolve();
  private readonly counters: RtuBusStats = { requests: 0, timeouts: 0, crcErrors: 0, exceptions: 0 };

  constructor(
    readonly config: BusConfig,
    private readonly timeoutMs: number,
  ) {
    this.charMs = (characterBits(config) * 1000) / config.baudRate;
    this.interFrameMs = config.interFrameMs ?? Math.max(1.75, 3.5 * this.charMs);
  }

  stats(): RtuBusStats {
    return { ...this.counters };
  }

  /** Runs `work` with the bus to itself (requests of other meters wait). */
  async exclusive<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.lock;
    let release!: () => void;
    this.lock = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      return await work();
    } finally {
      release();
    }
  }

  private async open(): Promise<SerialLine> {
    if (this.line && !this.line.closed) return this.line;
    let line: SerialLine;
    try {
      line = await SerialLine.open(this.config.device, this.config);
    } catch (error) {
      throw new RtuOpenError(`bus ${this.config.id}: ${describe(error)}`);
    }
    line.onData((chunk) => {
      this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
      this.lastActivity = performance.now();
      this.wake?.();
    });
    this.line = line;
    return line;
  }

  /**
   * Reads `count` registers (function 3 holding / 4 input) of `unitId`. Call it inside
   * `exclusive`. Throws RtuTimeoutError, RtuCrcError, a Modbus exception (`modbusCode`) or a
   * protocol error.
   */
  async readRegisters(unitId: number, table: 'holding' | 'input', address: number, count: number): Promise<number[]> {
    const line = await this.open();
    const silence = this.lastActivity + this.interFrameMs - performance.now();
    if (silence > 0) await new Promise((resolve) => setTimeout(resolve, silence));
    this.received = Buffer.alloc(0); // whatever arrived late for an earlier request is not this answer
    const fn = table === 'input' ? 4 : 3;
    const request = rtuFrame([unitId, fn, address >> 8, address & 0xff, count >> 8, count & 0xff]);
    this.counters.requests++;
    await line.write(request);
    // The kernel has the bytes; they still take their character times on the wire.
    this.lastActivity = performance.now() + request.length * this.charMs;
    let response: Buffer;
    try {
      response = await this.receive(fn, this.timeoutMs + request.length * this.charMs);
    } catch (error) {
      if (error instanceof RtuTimeoutError) this.counters.timeouts++;
      throw error;
    }
    if (!crcOk(response)) {
      this.counters.crcErrors++;
      throw new RtuCrcError(`CRC error in the answer of unit ${unitId} (${response.length} bytes)`);
    }
    if (response[0] !== unitId) throw new Error(`answer from unit ${response[0]} to a request for unit ${unitId}`);
    if (response[1] === (fn | 0x80)) {
      this.counters.exceptions++;
      throw Object.assign(new Error(`unit ${unitId} answered with exception ${response[2]}`), { modbusCode: response[2] });
    }
    if (response[2] !== count * 2) throw new Error(`unit ${unitId} sent ${response[2]} data bytes for ${count} registers`);
    const words: number[] = [];
    for (let i = 0; i < count; i++) words.push(response.readUInt16BE(3 + 2 * i));
    return words;
  }

  /** Waits for one complete answer to function `fn` (its length follows from its third byte). */
  private async receive(fn: number, timeoutMs: number): Promise<Buffer> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const got = this.received;
      if (got.length >= 3) {
        const expected = got[1] === (fn | 0x80) ? 5 : got[1] === fn ? 5 + got[2]! : 0;
        if (expected === 0) return got; // not an answer to our function: the CRC or unit check names it
        if (got.length >= expected) return got.subarray(0, expected);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new RtuTimeoutError(`timeout: no complete answer within ${Math.round(timeoutMs)} ms (${got.length} bytes received)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  close(): void {
    this.line?.close();
    this.line = undefined;
  }
}

/** One meter on an RTU bus. */
export class RtuMeterReader implements MeterReader {
  constructor(
    readonly meter: MeterConfig,
    private readonly bus: RtuBus,
  ) {}

  read(): Promise<MeterRead> {
    return this.bus.exclusive(async () => {
      const result: MeterRead = { values: new Map(), errors: [] };
      let silent: string | undefined;
      for (const register of this.meter.registers) {
        if (silent) {
          result.errors.push({ channel: register.channel, error: `skipped: ${silent}` });
          continue;
        }
        try {
          const words = await this.bus.readRegisters(this.meter.unitId, register.table, register.address, REGISTER_WORDS[register.type]);
          result.values.set(register.channel, registerValue(words, register));
        } catch (error) {
          result.errors.push({ channel: register.channel, error: describe(error) });
          if (error instanceof RtuTimeoutError) silent = `unit ${this.meter.unitId} did not answer`;
          else if (error instanceof RtuOpenError) silent = 'the bus could not be opened'; // every register would fail the same way
        }
      }
      return result;
    });
  }

  close(): void {
    // The bus is shared; the poller closes it once.
  }
}
