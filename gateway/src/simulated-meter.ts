/**
 * Simulated Modbus TCP energy meters (modbus-serial's ServerTCP) for demos and tests. Each meter
 * is a unit id (1-247) on a server; each server carries up to 247 meters, more meters start more
 * servers on further ports.
 *
 * Register map of every simulated meter (holding registers, zero-based addresses):
 *   0-1  active energy import, Wh, uint32, high word first (a cumulative index that only grows)
 *
 * The index is a pure function of the meter and of time (a daily load curve), so a test can
 * compute what any interval must have measured: see `intervalKwh`.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import { ServerTCP } from 'modbus-serial';
import { wallClock, type AgentClock } from './clock.ts';
import type { GatewayConfigInput } from './config.ts';
import { encodeRegister } from './modbus.ts';

export const UNITS_PER_SERVER = 247;
export const SIMULATED_CHANNEL = 'energy.active.import';

/**
 * The `registers:` entry of every simulated meter, TCP or RTU: the register map above, read as a
 * cumulative kWh index whose deltas are the interval readings.
 */
export const SIMULATED_REGISTERS = [
  { channel: SIMULATED_CHANNEL, address: 0, type: 'uint32', wordOrder: 'big', scale: 0.001, unit: 'kWh', mode: 'delta' },
] satisfies NonNullable<GatewayConfigInput['meters']>[number]['registers'];

export type MeterFault = 'timeout' | 'exception';

export interface SimulatedMeter {
  meterId: string;
  host: string;
  port: number;
  unitId: number;
}

export interface SimulatedMeters {
  /** Port of the first server (meters 1-247). */
  port: number;
  host: string;
  meters: SimulatedMeter[];
  /** The `meters:` section of a gateway configuration polling these meters. */
  meterConfigs(): GatewayConfigInput['meters'];
  /** The energy index of meter `index` (0-based) at `atMs`, in Wh. */
  energyWh(index: number, atMs: number): number;
  /** What the gateway must report for meter `index` over [startSec, startSec + intervalSeconds), in kWh. */
  intervalKwh(index: number, startSec: number, intervalSeconds: number): number;
  /** Makes a meter stop answering or answer with a Modbus exception; `undefined` heals it. */
  setFault(index: number, fault: MeterFault | undefined): void;
  /** Register reads answered (for tests). */
  readonly requests: number;
  stop(): Promise<void>;
}

export interface SimulatedMetersOptions {
  count: number;
  /** Port of the first server; further servers take the next free ports. @default a free port */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** Time as the meters see it (a demo clock makes a day pass in seconds). @default wall clock */
  clock?: AgentClock;
  /** Meter ids are `<prefix><n>` with n from 1, zero-padded to 4 digits. @default 'sim-' */
  idPrefix?: string;
  /**
   * The index moves in steps of this many seconds of meter time (real meters: 1). Tests with a fast
   * demo clock set it to the interval length, so a read a few real milliseconds after a boundary
   * still returns the index at the boundary. @default 1
   */
  stepSeconds?: number;
}

/** A port that was free a moment ago (ServerTCP cannot listen on port 0). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('could not find a free port');
  return address.port;
}

export function simulatedEnergyWh(index: number, atMs: number): number {
  const hours = atMs / 3_600_000;
  const averageWatts = 400 + 50 * (index % 11);
  // A daily curve whose slope never turns negative (amplitude below average × 24 / 2π).
  const swing = ((averageWatts * 24) / (2 * Math.PI)) * 0.5;
  return Math.floor(1_000_000 + 10_000 * index + averageWatts * hours + swing * Math.sin((2 * Math.PI * hours) / 24)) >>> 0;
}

/** What a gateway must report for simulated meter `index` over [startSec, startSec + intervalSeconds), in kWh. */
export function simulatedIntervalKwh(index: number, startSec: number, intervalSeconds: number): number {
  return roundTo((simulatedEnergyWh(index, (startSec + intervalSeconds) * 1000) - simulatedEnergyWh(index, startSec * 1000)) * 0.001, 3);
}

export async function startSimulatedMeters(options: SimulatedMetersOptions): Promise<SimulatedMeters> {
  const { count, host = '127.0.0.1', clock = wallClock, idPrefix = 'sim-', stepSeconds = 1 } = options;
  const stepMs = stepSeconds * 1000;
  if (!Number.isInteger(count) || count < 1) throw new Error('count must be a positive integer');
  const faults = new Map<number, MeterFault>();
  const servers: ServerTCP[] = [];
  const meters: SimulatedMeter[] = [];
  let requests = 0;

  const serverCount = Math.ceil(count / UNITS_PER_SERVER);
  for (let s = 0; s < serverCount; s++) {
    const port = s === 0 && options.port !== undefined ? options.port : await freePort(host);
    const firstIndex = s * UNITS_PER_SERVER;
    const unitsHere = Math.min(UNITS_PER_SERVER, count - firstIndex);
    const words = (address: number, length: number, unitId: number): number[] | MeterFault => {
      const index = firstIndex + unitId - 1;
      if (unitId < 1 || unitId > unitsHere) return 'exception';
      const fault = faults.get(index);
      if (fault) return fault;
      requests++;
      const registers = [...encodeRegister(simulatedEnergyWh(index, Math.floor(clock.now() / stepMs) * stepMs), 'uint32', 'big')];
      const out: number[] = [];
      for (let i = 0; i < length; i++) out.push(registers[address + i] ?? 0);
      return out;
    };
    const answer = (result: number[] | MeterFault, cb: (error: Error | null, value: never) => void, pick: (values: number[]) => unknown) => {
      if (result === 'timeout') return; // never answer: the client's timeout fires
      if (result === 'exception') {
        const error = Object.assign(new Error('slave device failure'), { modbusErrorCode: 4 });
        cb(error, undefined as never);
        return;
      }
      cb(null, pick(result) as never);
    };
    const server = new ServerTCP(
      {
        getMultipleHoldingRegisters: (address: number, length: number, unitId: number, cb: (error: Error | null, value: number[]) => void) =>
          answer(words(address, length, unitId), cb, (values) => values),
        getHoldingRegister: (address: number, unitId: number, cb: (error: Error | null, value: number) => void) =>
          answer(words(address, 1, unitId), cb, (values) => values[0]),
      },
      { host, port, unitID: 255 },
    );
    server.on('socketError', () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once('initialized', () => resolve());
      server.once('serverError', (error: Error | null) => reject(error ?? new Error('modbus server failed to start')));
    });
    servers.push(server);
    for (let u = 1; u <= unitsHere; u++) {
      meters.push({ meterId: `${idPrefix}${String(firstIndex + u).padStart(4, '0')}`, host, port, unitId: u });
    }
  }

  return {
    port: meters[0]!.port,
    host,
    meters,
    meterConfigs: () =>
      meters.map((meter) => ({
        id: meter.meterId,
        host: meter.host,
        port: meter.port,
        unitId: meter.unitId,
        registers: SIMULATED_REGISTERS,
      })),
    energyWh: simulatedEnergyWh,
    intervalKwh: simulatedIntervalKwh,
    setFault(index, fault) {
      if (fault) faults.set(index, fault);
      else faults.delete(index);
    },
    get requests() {
      return requests;
    },
    async stop() {
      await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    },
  };
}

function roundTo(value: number, decimals: number): number {
  const factor = 10 ** decimals;
  return Math.round(value * factor) / factor;
}
