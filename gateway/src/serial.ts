/**
 * A serial line (RS-485 adapter, /dev/ttyUSB0) without native code (decision, gateway/README.md
 * "Serial ports"): the line settings are applied with `stty` (coreutils, on every Debian), the
 * device is opened by Node and read and written through its tty streams. The bundle stays free of
 * architecture-specific binaries (serialport's prebuilt bindings), so one `.deb` (arch `all`)
 * serves x64 and arm64 gateways. The same code drives the simulated RTU meters over a pty pair.
 */
import { execFile } from 'node:child_process';
import { constants, openSync, closeSync } from 'node:fs';
import tty from 'node:tty';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface LineSettings {
  baudRate: number;
  dataBits: 7 | 8;
  parity: 'none' | 'even' | 'odd';
  stopBits: 1 | 2;
}

/** stty arguments for raw 8-bit binary framing with the given settings (no echo, no flow control, no modem lines). */
export function sttyArguments(device: string, settings: LineSettings): string[] {
  const parity = settings.parity === 'none' ? ['-parenb'] : settings.parity === 'even' ? ['parenb', '-parodd'] : ['parenb', 'parodd'];
  return [
    '-F',
    device,
    String(settings.baudRate),
    `cs${settings.dataBits}`,
    ...parity,
    settings.stopBits === 2 ? 'cstopb' : '-cstopb',
    // raw: no line editing or translation of bytes; clocal: ignore carrier (RS-485 has none); -hupcl: keep the line up on close.
    'raw',
    '-echo',
    'clocal',
    'cread',
    '-hupcl',
    '-crtscts',
    '-ixon',
    '-ixoff',
    'min',
    '1',
    'time',
    '0',
  ];
}

/** Bits on the wire per character: start + data + parity + stop. */
export function characterBits(settings: LineSettings): number {
  return 1 + settings.dataBits + (settings.parity === 'none' ? 0 : 1) + settings.stopBits;
}

export class SerialLine {
  private constructor(
    readonly device: string,
    private readonly input: tty.ReadStream,
    private readonly output: tty.WriteStream,
  ) {}

  /** Applies the settings and opens the device. Fails with stty's message if the device is missing or not a tty. */
  static async open(device: string, settings: LineSettings): Promise<SerialLine> {
    try {
      await run('stty', sttyArguments(device, settings), { timeout: 10_000 });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      throw new Error(`cannot configure ${device}: ${stderr || (error as Error).message}`);
    }
    // Two descriptors: libuv reads one non-blocking and writes the other (a tty handle is one-way in Node).
    const readFd = openSync(device, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
    let writeFd: number;
    try {
      writeFd = openSync(device, constants.O_RDWR | constants.O_NOCTTY);
    } catch (error) {
      closeSync(readFd);
      throw error;
    }
    const line = new SerialLine(device, new tty.ReadStream(readFd), new tty.WriteStream(writeFd));
    // An unplugged adapter errors its streams: the reader sees timeouts and re-opens.
    line.input.on('error', () => undefined);
    line.output.on('error', () => undefined);
    return line;
  }

  onData(listener: (chunk: Buffer) => void): void {
    this.input.on('data', listener);
  }

  get closed(): boolean {
    return this.input.destroyed || this.output.destroyed;
  }

  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.output.write(bytes, (error) => (error ? reject(error) : resolve())));
  }

  close(): void {
    this.input.destroy();
    this.output.destroy();
  }
}

/** Where the unit's serial drop-in goes (the unit reads drop-ins from its .d directory). */
export const SERIAL_DROP_IN_PATH = '/etc/systemd/system/meterbridge-gateway.service.d/serial.conf';

/**
 * The systemd drop-in that lets the hardened unit (DevicePolicy=closed) open the configured serial
 * devices, and only those. Empty of grants when no bus is configured.
 */
export function serialAccessDropIn(devices: readonly string[], source: string): string {
  const unique = [...new Set(devices)];
  return [
    `# Written by \`meterbridge-gateway serial-access --config ${source}\`: the RS-485 devices of its buses.`,
    '# Re-run it after changing buses:, then `systemctl daemon-reload && systemctl restart meterbridge-gateway`.',
    '[Service]',
    ...(unique.length > 0 ? unique.map((device) => `DeviceAllow=${device} rw`) : ['# no buses configured: no serial device is granted']),
    '',
  ].join('\n');
}
