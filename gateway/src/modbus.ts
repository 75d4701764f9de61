/**
 * Reading one meter over Modbus TCP (modbus-serial's client; Modbus RTU is modbus-rtu.ts). A meter that does not answer, answers
 * with an exception or with garbage becomes a counted read error for that cycle, never a crash:
 * the connection is dropped and opened again on the next poll.
 */
import modbusSerial from 'modbus-serial';
import type { ModbusRTU } from 'modbus-serial/ModbusRTU.js';
import type { MeterConfig, RegisterConfig, RegisterType } from './config.ts';

// modbus-serial is CommonJS: its module.exports is the client class, which TypeScript's nodenext
// view of the `export default` in its typings does not see.
const ModbusClient = modbusSerial as unknown as typeof ModbusRTU;

/** Number of 16-bit registers each type occupies. */
export const REGISTER_WORDS: Record<RegisterType, 1 | 2> = { uint16: 1, int16: 1, uint32: 2, int32: 2, float32: 2 };

/** Turns the words read from the wire into the register's raw (unscaled) value. */
export function decodeRegister(words: readonly number[], type: RegisterType, wordOrder: 'big' | 'little'): number {
  if (words.length !== REGISTER_WORDS[type]) throw new Error(`expected ${REGISTER_WORDS[type]} registers for ${type}, got ${words.length}`);
  const buffer = Buffer.alloc(4);
  if (words.length === 1) {
    buffer.writeUInt16BE(words[0]! & 0xffff, 0);
    return type === 'int16' ? buffer.readInt16BE(0) : buffer.readUInt16BE(0);
  }
  const [high, low] = wordOrder === 'big' ? [words[0]!, words[1]!] : [words[1]!, words[0]!];
  buffer.writeUInt16BE(high & 0xffff, 0);
  buffer.writeUInt16BE(low & 0xffff, 2);
  if (type === 'uint32') return buffer.readUInt32BE(0);
  if (type === 'int32') return buffer.readInt32BE(0);
  return buffer.readFloatBE(0);
}

/** The inverse of decodeRegister (the simulated meter and tests use it). */
export function encodeRegister(value: number, type: RegisterType, wordOrder: 'big' | 'little'): number[] {
  const buffer = Buffer.alloc(4);
  if (type === 'uint16') return [value & 0xffff];
  if (type === 'int16') {
    buffer.writeInt16BE(value, 0);
    return [buffer.readUInt16BE(0)];
  }
  if (type === 'uint32') buffer.writeUInt32BE(value >>> 0, 0);
  else if (type === 'int32') buffer.writeInt32BE(value | 0, 0);
  else buffer.writeFloatBE(value, 0);
  const words = [buffer.readUInt16BE(0), buffer.readUInt16BE(2)];
  return wordOrder === 'big' ? words : [words[1]!, words[0]!];
}

/** What the poller needs from a meter reader, TCP or RTU. */
export interface MeterReader {
  readonly meter: MeterConfig;
  /** Reads every register of the meter. Never throws. */
  read(): Promise<MeterRead>;
  close(): void;
}

export interface MeterRead {
  /** Raw register values by channel, for the registers that were read. */
  values: Map<string, number>;
  /** One entry per register that could not be read. */
  errors: Array<{ channel: string; error: string }>;
}

/** One meter's Modbus TCP connection, opened lazily and re-opened after any failure. */
export class ModbusMeterReader implements MeterReader {
  private client: ModbusRTU | undefined;

  constructor(
    readonly meter: MeterConfig,
    private readonly timeoutMs: number,
  ) {}

  /** Reads every register of the meter. Never throws. */
  async read(): Promise<MeterRead> {
    const result: MeterRead = { values: new Map(), errors: [] };
    let client: ModbusRTU;
    try {
      client = await this.connect();
    } catch (error) {
      this.drop();
      for (const register of this.meter.registers) result.errors.push({ channel: register.channel, error: `connect: ${describe(error)}` });
      return result;
    }
    for (const register of this.meter.registers) {
      try {
        result.values.set(register.channel, await readRegister(client, register));
      } catch (error) {
        result.errors.push({ channel: register.channel, error: describe(error) });
        // After a timeout a late answer could be taken for the next request's: start clean.
        this.drop();
        try {
          client = await this.connect();
        } catch (connectError) {
          for (const rest of this.meter.registers.slice(this.meter.registers.indexOf(register) + 1)) {
            result.errors.push({ channel: rest.channel, error: `connect: ${describe(connectError)}` });
          }
          this.drop();
          return result;
        }
      }
    }
    return result;
  }

  private async connect(): Promise<ModbusRTU> {
    if (this.client?.isOpen) return this.client;
    this.drop();
    if (this.meter.host === undefined) throw new Error(`meter ${this.meter.id} has no host (an RTU meter reaches ModbusMeterReader only by mistake)`);
    const client = new ModbusClient();
    this.client = client;
    await client.connectTCP(this.meter.host, { port: this.meter.port, timeout: this.timeoutMs });
    client.setID(this.meter.unitId);
    client.setTimeout(this.timeoutMs);
    return client;
  }

  private drop(): void {
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        client.close(() => {});
      } catch {
        // already closed
      }
    }
  }

  close(): void {
    this.drop();
  }
}

async function readRegister(client: ModbusRTU, register: RegisterConfig): Promise<number> {
  const words = REGISTER_WORDS[register.type];
  const response =
    register.table === 'input'
      ? await client.readInputRegisters(register.address, words)
      : await client.readHoldingRegisters(register.address, words);
  return registerValue(response?.data, register);
}

/** The raw value of a register from the words a meter answered with (TCP or RTU); throws on a wrong count or a non-finite value. */
export function registerValue(data: unknown, register: RegisterConfig): number {
  const words = REGISTER_WORDS[register.type];
  if (!Array.isArray(data) || data.length !== words)
    throw new Error(`bad response: expected ${words} registers, got ${JSON.stringify(data)?.slice(0, 80)}`);
  const value = decodeRegister(data as number[], register.type, register.wordOrder);
  if (!Number.isFinite(value)) throw new Error(`register ${register.address} holds a non-finite ${register.type} (${value})`);
  return value;
}

export function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as Error & { modbusCode?: number; errno?: string }).modbusCode;
    return code !== undefined ? `modbus exception ${code}: ${error.message}` : error.message;
  }
  return String(error);
}
