/**
 * Simulated Modbus RTU meters on one serial line, for tests and demos: the slave side of a bus,
 * e.g. one end of a pseudo-terminal pair made by `socat` whose other end the agent polls. Same
 * register map and energy index as the TCP meters (simulated-meter.ts): holding/input registers
 * 0-1 = active energy import, Wh, uint32, high word first.
 *
 * Faults per meter: `silent` (never answers: the master's timeout), `bad-crc` (answers with a
 * corrupted CRC), `exception` (Modbus exception 4). `collisions` counts requests that arrived while
 * an answer was still pending: on a real half-duplex RS-485 line those frames would have collided,
 * so a master that locks the bus keeps it at zero.
 */
import { wallClock, type AgentClock } from './clock.ts';
import type { BusConfig, GatewayConfigInput } from './config.ts';
import { encodeRegister } from './modbus.ts';
import { crcOk, rtuFrame } from './modbus-rtu.ts';
import { SerialLine, type LineSettings } from './serial.ts';
import { SIMULATED_REGISTERS, simulatedEnergyWh, simulatedIntervalKwh } from './simulated-meter.ts';

export type RtuFault = 'silent' | 'bad-crc' | 'exception';

export interface SimulatedRtuMetersOptions {
  /** The serial device the meters answer on (the far end of a pty pair in tests). */
  device: string;
  count: number;
  /** @default 9600 8E1 */
  settings?: LineSettings;
  /** @default the wall clock */
  clock?: AgentClock;
  /** See SimulatedMetersOptions.stepSeconds. @default 1 */
  stepSeconds?: number;
  /** Meter ids `<prefix><n>`. @default 'rtu-' */
  idPrefix?: string;
  /** Index offset into the simulated energy curves (so RTU meters differ from TCP ones). @default 100 */
  firstIndex?: number;
  /** A meter's processing time before it answers. @default 5 */
  responseDelayMs?: number;
}

export interface SimulatedRtuMeters {
  meters: Array<{ meterId: string; unitId: number; index: number }>;
  /** The `meters:` entries for these meters on bus `busId`. */
  meterConfigs(busId: string): GatewayConfigInput['meters'];
  /** What the gateway must report for meter number `n` (0-based) over an interval, in kWh. */
  intervalKwh(n: number, startSec: number, intervalSeconds: number): number;
  setFault(n: number, fault: RtuFault | undefined): void;
  readonly requests: number;
  readonly collisions: number;
  /** Requests whose own CRC was wrong (dropped, as a real meter does). */
  readonly badRequests: number;
  stop(): void;
}

export const DEFAULT_LINE: LineSettings = { baudRate: 9600, dataBits: 8, parity: 'even', stopBits: 1 };

export async function startSimulatedRtuMeters(options: SimulatedRtuMetersOptions): Promise<SimulatedRtuMeters> {
  const {
    device,
    count,
    settings = DEFAULT_LINE,
    clock = wallClock,
    stepSeconds = 1,
    idPrefix = 'rtu-',
    firstIndex = 100,
    responseDelayMs = 5,
  } = options;
  if (!Number.isInteger(count) || count < 1 || count > 247) throw new Error('count must be 1-247 (unit ids on one bus)');
  const stepMs = stepSeconds * 1000;
  const line = await SerialLine.open(device, settings);
  const faults = new Map<number, RtuFault>();
  const meters = Array.from({ length: count }, (_, n) => ({
    meterId: `${idPrefix}${String(n + 1).padStart(4, '0')}`,
    unitId: n + 1,
    index: firstIndex + n,
  }));
  let buffer = Buffer.alloc(0);
  let pending = 0;
  const counters = { requests: 0, collisions: 0, badRequests: 0 };
  const timers = new Set<NodeJS.Timeout>();

  const answer = (request: Buffer): void => {
    const unitId = request[0]!;
    const fn = request[1]!;
    const n = unitId - 1;
    const meter = meters[n];
    if (!meter || (fn !== 3 && fn !== 4)) return; // not ours, or a function we do not implement: silence, as on a real bus
    counters.requests++;
    const fault = faults.get(n);
    if (fault === 'silent') return;
    const frame = rtuFrame(responseBody(request, fault, simulatedEnergyWh(meter.index, Math.floor(clock.now() / stepMs) * stepMs)));
    if (fault === 'bad-crc') frame[frame.length - 1]! ^= 0x5a;
    pending++;
    const timer = setTimeout(() => {
      timers.delete(timer);
      pending--;
      void line.write(frame).catch(() => undefined);
    }, responseDelayMs);
    timers.add(timer);
  };

  line.onData((chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    // Function 3/4 requests are 8 bytes. A frame failing its CRC is dropped with what follows it (resync on the next request).
    while (buffer.length >= 8) {
      const request = buffer.subarray(0, 8);
      if (!crcOk(request)) {
        counters.badRequests++;
        buffer = Buffer.alloc(0);
        break;
      }
      buffer = buffer.subarray(8);
      if (pending > 0) counters.collisions++;
      answer(Buffer.from(request));
    }
  });

  return {
    meters,
    meterConfigs: (busId) => rtuMeterConfigs(meters, busId),
    intervalKwh: (n, startSec, intervalSeconds) => simulatedIntervalKwh(meters[n]!.index, startSec, intervalSeconds),
    setFault(n, fault) {
      if (fault) faults.set(n, fault);
      else faults.delete(n);
    },
    get requests() {
      return counters.requests;
    },
    get collisions() {
      return counters.collisions;
    },
    get badRequests() {
      return counters.badRequests;
    },
    stop() {
      for (const timer of timers) clearTimeout(timer);
      line.close();
    },
  };
}

/** The answer's body (before the CRC) to a function 3/4 request: the uint32 energy register, an exception, or illegal address. */
function responseBody(request: Buffer, fault: RtuFault | undefined, energyWh: number): number[] {
  const unitId = request[0]!;
  const fn = request[1]!;
  const address = request.readUInt16BE(2);
  const quantity = request.readUInt16BE(4);
  if (fault === 'exception') return [unitId, fn | 0x80, 4];
  if (address + quantity > 2 || quantity < 1) return [unitId, fn | 0x80, 2]; // illegal data address
  const words = encodeRegister(energyWh, 'uint32', 'big').slice(address, address + quantity);
  return [unitId, fn, quantity * 2, ...words.flatMap((word) => [word >> 8, word & 0xff])];
}

/** The `meters:` entries of the simulated meters on bus `busId`. */
function rtuMeterConfigs(meters: ReadonlyArray<{ meterId: string; unitId: number }>, busId: string) {
  return meters.map((meter) => ({
    id: meter.meterId,
    bus: busId,
    unitId: meter.unitId,
    registers: SIMULATED_REGISTERS,
  }));
}

/** A `buses:` entry for a line with these settings. */
export function busConfig(id: string, device: string, settings: LineSettings = DEFAULT_LINE): Omit<BusConfig, 'interFrameMs' | 'timeoutMs'> {
  return {
    id,
    device,
    baudRate: settings.baudRate as BusConfig['baudRate'],
    dataBits: settings.dataBits,
    parity: settings.parity,
    stopBits: settings.stopBits,
  };
}
