/**
 * Modbus RTU over a serial line (issue 17): the poller on one end of a socat pty pair, simulated RTU
 * meters on the other, a TCP meter beside them. Meters on the bus are polled one at a time (the
 * simulated line counts collisions); a silent meter and a CRC error are counted read errors of
 * that meter while the others are still read; the systemd unit grants the configured device only.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { silentLog } from '../../shared/log.ts';
import { ConfigError, parseConfig, type GatewayConfigInput } from '../../gateway/src/config.ts';
import { crc16, rtuFrame } from '../../gateway/src/modbus-rtu.ts';
import { Poller } from '../../gateway/src/poller.ts';
import { serialAccessDropIn, sttyArguments, type LineSettings } from '../../gateway/src/serial.ts';
import { startSimulatedMeters, type SimulatedMeters } from '../../gateway/src/simulated-meter.ts';
import { busConfig, startSimulatedRtuMeters, type SimulatedRtuMeters } from '../../gateway/src/simulated-rtu-meter.ts';
import { Spool } from '../../gateway/src/spool.ts';
import type { AgentClock } from '../../gateway/src/clock.ts';
import { startPtyPair, type PtyPair } from '../support/pty-pair.ts';

const run = promisify(execFile);
const UNIT_FILE = new URL('../../gateway/systemd/meterbridge-gateway.service', import.meta.url);

let pty: PtyPair;
let rtu: SimulatedRtuMeters;
let tcp: SimulatedMeters;
let now = Date.parse('2026-11-20T06:00:00Z');
const clock: AgentClock = { now: () => now, realDelay: (ms) => ms };
const dirs: string[] = [];
// Linux ptys take speeds and stop bits but refuse parity and 7 data bits (EINVAL): the pty line runs
// 19200 8N2; the parity arguments are checked as stty arguments below.
const LINE: LineSettings = { baudRate: 19_200, dataBits: 8, parity: 'none', stopBits: 2 };

before(async () => {
  pty = await startPtyPair();
  [rtu, tcp] = await Promise.all([
    startSimulatedRtuMeters({ device: pty.meters, count: 4, clock, responseDelayMs: 10, settings: LINE }),
    startSimulatedMeters({ count: 1, clock, idPrefix: 'tcp-' }),
  ]);
});
after(async () => {
  rtu?.stop();
  await tcp?.stop();
  await pty?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function baseConfig(directory: string): Omit<GatewayConfigInput, 'meters'> {
  return {
    thingName: 'gw-0001',
    iot: { endpoint: '127.0.0.1', ruleName: 'r', certFile: 'c', keyFile: 'k', caFile: 'a' },
    polling: { intervalSeconds: 900, timeoutMs: 300, concurrency: 16 },
    spool: { directory, maxBytes: '1MiB', segmentBytes: '64kB' },
  };
}

function pollerFor(meters: GatewayConfigInput['meters'], buses: GatewayConfigInput['buses']): { poller: Poller; spool: Spool } {
  const directory = mkdtempSync(join(tmpdir(), 'mb-gwrtu-'));
  dirs.push(directory);
  const config = parseConfig({ ...baseConfig(directory), meters, buses });
  return {
    poller: new Poller({ config, spool: Spool.open({ directory }), clock, log: silentLog }),
    spool: Spool.open({ directory: join(directory, 'unused') }),
  };
}

describe('Modbus RTU over a pty pair (socat)', () => {
  it('frames requests with the Modbus CRC (the specification example 01 03 0000 000A -> C5 CD)', () => {
    assert.equal(crc16(Buffer.from([0x01, 0x03, 0x00, 0x00, 0x00, 0x0a])), 0xcdc5);
    assert.deepEqual([...rtuFrame([0x01, 0x03, 0x00, 0x00, 0x00, 0x0a])], [0x01, 0x03, 0x00, 0x00, 0x00, 0x0a, 0xc5, 0xcd]);
  });

  it('sets the line with stty: speed, data bits, parity, stop bits, raw binary without flow control', () => {
    assert.deepEqual(sttyArguments('/dev/ttyUSB0', { baudRate: 9600, dataBits: 8, parity: 'even', stopBits: 1 }).slice(0, 7), [
      '-F',
      '/dev/ttyUSB0',
      '9600',
      'cs8',
      'parenb',
      '-parodd',
      '-cstopb',
    ]);
    assert.deepEqual(sttyArguments('/dev/ttyS1', { baudRate: 2400, dataBits: 7, parity: 'odd', stopBits: 2 }).slice(0, 7), [
      '-F',
      '/dev/ttyS1',
      '2400',
      'cs7',
      'parenb',
      'parodd',
      'cstopb',
    ]);
    assert.deepEqual(sttyArguments('/dev/ttyS1', LINE).slice(2, 6), ['19200', 'cs8', '-parenb', 'cstopb']);
    assert.ok(sttyArguments('/dev/ttyS1', LINE).includes('raw') && sttyArguments('/dev/ttyS1', LINE).includes('-crtscts'));
  });

  it('polls four meters sharing one bus one at a time, beside a TCP meter, with silent and CRC-corrupting meters counted and the others read', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'mb-gwrtu-'));
    dirs.push(directory);
    const config = parseConfig({
      ...baseConfig(directory),
      buses: [{ ...busConfig('rs485-1', pty.gateway, LINE), timeoutMs: 250 }],
      meters: [...rtu.meterConfigs('rs485-1'), ...tcp.meterConfigs()],
    });
    const spool = Spool.open({ directory });
    const poller = new Poller({ config, spool, clock, log: silentLog });
    try {
      const first = now / 1000;
      assert.deepEqual(await poller.pollOnce(first), { taken: 0, errors: 0 }, 'the first read is the baseline');
      now += 900_000;
      assert.deepEqual(await poller.pollOnce(first + 900), { taken: 5, errors: 0 });
      const readings = spool.readForward(0, 10);
      assert.deepEqual(
        readings.map((r) => [r.meterId, r.value]),
        [...rtu.meters.map((m, n) => [m.meterId, rtu.intervalKwh(n, first, 900)]), [tcp.meters[0]!.meterId, tcp.intervalKwh(0, first, 900)]],
      );
      assert.equal(rtu.collisions, 0, 'never two requests on the bus at once (concurrency 16 applies to TCP meters only)');

      // Meter 2 stops answering, meter 3 answers with a corrupted CRC.
      rtu.setFault(1, 'silent');
      rtu.setFault(2, 'bad-crc');
      now += 900_000;
      const faulty = await poller.pollOnce(first + 1800);
      assert.deepEqual(faulty, { taken: 3, errors: 2 });
      const stats = poller.stats();
      assert.deepEqual(stats.readErrorsByMeter, { [rtu.meters[1]!.meterId]: 1, [rtu.meters[2]!.meterId]: 1 });
      assert.deepEqual(stats.buses?.['rs485-1'], { requests: 12, timeouts: 1, crcErrors: 1, exceptions: 0 });
      assert.deepEqual(
        spool.readForward(5, 10).map((r) => r.meterId),
        [rtu.meters[0]!.meterId, rtu.meters[3]!.meterId, tcp.meters[0]!.meterId],
        'the meters after the silent and the corrupting one are still read',
      );

      // Healed: the bus is in step again (no late answer taken for another request's).
      rtu.setFault(1, undefined);
      rtu.setFault(2, undefined);
      now += 900_000;
      // Meters 2 and 3 have no read at this interval's start: their first interval is the next one.
      assert.deepEqual(await poller.pollOnce(first + 2700), { taken: 3, errors: 0 });
      now += 900_000;
      assert.deepEqual(await poller.pollOnce(first + 3600), { taken: 5, errors: 0 });
      const healed = spool.readForward(11, 10);
      assert.deepEqual(
        healed.slice(0, 4).map((r) => [r.meterId, r.value]),
        rtu.meters.map((m, n) => [m.meterId, rtu.intervalKwh(n, first + 2700, 900)]),
      );
      assert.equal(rtu.collisions, 0);
      assert.equal(rtu.badRequests, 0);
    } finally {
      await poller.stop();
      spool.close();
    }
  });

  it('a missing serial device is a counted read error per register, not a crash', async () => {
    const { poller } = pollerFor(
      [
        {
          id: 'gone-1',
          bus: 'usb',
          unitId: 1,
          registers: [
            { channel: 'energy.active.import', address: 0, type: 'uint32', unit: 'kWh' },
            { channel: 'energy.active.export', address: 2, type: 'uint32', unit: 'kWh' },
          ],
        },
      ],
      [{ id: 'usb', device: '/dev/meterbridge-no-such-tty' }],
    );
    try {
      assert.deepEqual(await poller.pollOnce(now / 1000), { taken: 0, errors: 2 });
    } finally {
      await poller.stop();
    }
  });

  it('refuses configurations that cannot work on a bus, naming the key', () => {
    const directory = join(tmpdir(), 'unused');
    const register = { channel: 'energy.active.import', address: 0, type: 'uint32', unit: 'kWh' } as const;
    const problems = (meters: GatewayConfigInput['meters'], buses: GatewayConfigInput['buses']) => {
      try {
        parseConfig({ ...baseConfig(directory), meters, buses });
        return [];
      } catch (error) {
        assert.ok(error instanceof ConfigError);
        return error.problems;
      }
    };
    const bus = { id: 'b1', device: '/dev/ttyUSB0' };
    assert.deepEqual(problems([{ id: 'm1', registers: [register] }], []), ['meters[0]: needs exactly one of host (Modbus TCP) and bus (Modbus RTU)']);
    assert.deepEqual(problems([{ id: 'm1', host: 'h', bus: 'b1', registers: [register] }], [bus]), [
      'meters[0]: needs exactly one of host (Modbus TCP) and bus (Modbus RTU)',
    ]);
    assert.deepEqual(problems([{ id: 'm1', bus: 'b2', registers: [register] }], [bus]), ['meters[0].bus: no bus "b2" in buses (b1)']);
    assert.deepEqual(problems([{ id: 'm1', bus: 'b1', unitId: 0, registers: [register] }], [bus]), [
      'meters[0].unitId: must be 1-247 on an RTU bus (0 is broadcast)',
    ]);
    assert.deepEqual(
      problems(
        [
          { id: 'm1', bus: 'b1', unitId: 3, registers: [register] },
          { id: 'm2', bus: 'b1', unitId: 3, registers: [register] },
        ],
        [bus],
      ),
      ['meters[1].unitId: 3 is already used on bus "b1" by meters[0]'],
    );
    assert.deepEqual(problems([{ id: 'm1', bus: 'b1', registers: [register] }], [bus, { id: 'b2', device: '/dev/ttyUSB0' }]), [
      'buses[1].device: /dev/ttyUSB0 is already buses[0]: one bus per serial device',
    ]);
    assert.match(
      problems([{ id: 'm1', bus: 'b1', registers: [register] }], [{ ...bus, baudRate: 9601 as 9600 }])[0]!,
      /^buses\[0\]\.baudRate: expected one of 1200\|/,
    );
    // Defaults: 9600 8E1, inter-frame t3.5 from the character time (11 bits at 9600 baud: 4.01 ms).
    const config = parseConfig({ ...baseConfig(directory), meters: [{ id: 'm1', bus: 'b1', registers: [register] }], buses: [bus] });
    assert.deepEqual(config.buses[0], { id: 'b1', device: '/dev/ttyUSB0', baudRate: 9600, dataBits: 8, parity: 'even', stopBits: 1 });
  });

  it('systemd: the unit stays hardened (DevicePolicy=closed, dialout) and the drop-in grants exactly the configured devices', async () => {
    const unit = readFileSync(UNIT_FILE, 'utf8');
    assert.match(unit, /^DevicePolicy=closed$/m);
    assert.match(unit, /^SupplementaryGroups=dialout$/m);
    assert.doesNotMatch(unit, /^DeviceAllow=/m, 'no device in the unit itself: TCP-only gateways get none');
    for (const setting of [
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'CapabilityBoundingSet=',
      'SystemCallFilter=@system-service',
      'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
    ]) {
      assert.ok(unit.split('\n').includes(setting), setting);
    }
    const dropIn = serialAccessDropIn(
      ['/dev/ttyUSB0', '/dev/serial/by-id/usb-FTDI-if00-port0', '/dev/ttyUSB0'],
      '/etc/meterbridge-gateway/gateway.yaml',
    );
    assert.deepEqual(
      dropIn.split('\n').filter((line) => !line.startsWith('#') && line),
      ['[Service]', 'DeviceAllow=/dev/ttyUSB0 rw', 'DeviceAllow=/dev/serial/by-id/usb-FTDI-if00-port0 rw'],
    );

    // systemd's own exposure score for the unit with the drop-in applied stays in its "OK" band (< 2).
    const dir = mkdtempSync(join(tmpdir(), 'mb-unit-'));
    dirs.push(dir);
    const unitPath = join(dir, 'meterbridge-gateway.service');
    writeFileSync(unitPath, `${unit}\n${dropIn.replace('[Service]\n', '[Service]\n')}`.replace(/\n\[Install\][\s\S]*$/, '\n'));
    const security = await run('systemd-analyze', ['security', '--offline=true', '--no-pager', unitPath]).catch((error: { stdout?: string }) => ({
      stdout: error.stdout ?? '',
    }));
    const exposure = /Overall exposure level for .*: (\d+\.\d+)/.exec(security.stdout);
    assert.ok(exposure, `systemd-analyze security output: ${security.stdout.slice(-500)}`);
    assert.ok(Number(exposure[1]) < 2, `exposure ${exposure[1]}`);
  });
});
