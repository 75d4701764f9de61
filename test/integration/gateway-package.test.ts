/**
 * The gateway as an installer gets it (issue 17): `npm run gateway:package` builds the tarball and
 * the .deb; the tarball is unpacked and installed into an empty directory (no repository, no
 * node_modules) and its bundle runs with plain `node` against simulated Modbus TCP meters, a
 * simulated Modbus RTU meter on a pty pair (the bundle's serial path has no native code) and the
 * local mTLS broker, until readings are stored in DynamoDB Local. The .deb is checked with dpkg-deb.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, parse } from 'node:path';
import { promisify } from 'node:util';
import { packageGateway, type GatewayArtifacts } from '../../gateway/packaging/build.ts';
import { SIMULATED_CHANNEL, startSimulatedMeters } from '../../gateway/src/simulated-meter.ts';
import { busConfig, startSimulatedRtuMeters } from '../../gateway/src/simulated-rtu-meter.ts';
import type { LineSettings } from '../../gateway/src/serial.ts';
import { startPtyPair } from '../support/pty-pair.ts';
import { demoClock } from '../../gateway/src/clock.ts';
import type { GatewayConfigInput } from '../../gateway/src/config.ts';
import { demoClockConfig, startGatewayHarness, waitFor, type GatewayHarness } from '../support/gateway-harness.ts';

const run = promisify(execFile);
const INTERVAL = 900;
const SPEEDUP = 4500;

let harness: GatewayHarness;
let artifacts: GatewayArtifacts;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'meterbridge-gw-package-'));
  artifacts = await packageGateway(join(work, 'dist'));
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** No node_modules anywhere above `dir`: the bundle must not find a dependency by accident. */
function assertNoNodeModulesAbove(dir: string): void {
  for (let d = dir; ; d = dirname(d)) {
    assert.equal(existsSync(join(d, 'node_modules')), false, `${d}/node_modules exists; the installed agent could borrow from it`);
    if (d === parse(d).root) break;
  }
}

describe('gateway artifact (npm run gateway:package)', () => {
  it('is small: tarball and .deb well under a megabyte (the repository install was ~281 MB)', () => {
    assert.ok(artifacts.bytes.tarball < 1024 * 1024, `tarball ${artifacts.bytes.tarball} bytes`);
    assert.ok(artifacts.bytes.deb < 1024 * 1024, `.deb ${artifacts.bytes.deb} bytes`);
    assert.match(artifacts.tarball, /meterbridge-gateway-\d+\.\d+\.\d+\.tar\.gz$/);
    assert.match(artifacts.deb, /meterbridge-gateway_\d+\.\d+\.\d+_all\.deb$/);
  });

  describe('installed from the tarball', () => {
    before(async () => {
      harness = await startGatewayHarness();
    });
    after(async () => {
      await harness?.close();
    });

    it('installs from the tarball into an empty directory and, run with node alone, delivers TCP and RTU readings to the cloud', async () => {
      const unpacked = join(work, 'unpacked');
      const root = join(work, 'root');
      await run('mkdir', ['-p', unpacked]);
      await run('tar', ['-xzf', artifacts.tarball, '-C', unpacked]);
      const [top] = readdirSync(unpacked);
      assert.deepEqual(readdirSync(join(unpacked, top!)).sort(), ['README.md', 'VERSION', 'gateway.example.yaml', 'install.sh', 'lib', 'systemd']);
      await run(join(unpacked, top!, 'install.sh'), ['--root', root, '--no-systemd']);
      const bin = join(root, 'usr', 'bin', 'meterbridge-gateway');
      assert.ok(existsSync(join(root, 'etc', 'systemd', 'system', 'meterbridge-gateway.service')));
      assertNoNodeModulesAbove(root);
      assert.deepEqual(readdirSync(join(root, 'usr', 'lib', 'meterbridge-gateway')), ['meterbridge-gateway.mjs'], 'one file: the bundle');

      const version = await run(process.execPath, [bin, 'version'], { cwd: root });
      assert.equal(version.stdout.trim(), artifacts.version);

      const clockConfig = demoClockConfig(SPEEDUP, 2);
      const clock = demoClock(Date.parse(clockConfig.virtualStart), Date.parse(clockConfig.realStart), SPEEDUP);
      const sim = await startSimulatedMeters({ count: 3, clock, stepSeconds: INTERVAL, idPrefix: 'pkg-' });
      const pty = await startPtyPair();
      const line: LineSettings = { baudRate: 38_400, dataBits: 8, parity: 'none', stopBits: 1 }; // ptys refuse parity
      const rtu = await startSimulatedRtuMeters({ device: pty.meters, count: 1, clock, stepSeconds: INTERVAL, idPrefix: 'pkg-rtu-', settings: line });
      const config = {
        ...harness.baseConfig(join(root, 'var', 'lib', 'meterbridge-gateway', 'spool')),
        meters: [...sim.meterConfigs(), ...rtu.meterConfigs('rs485')],
        buses: [busConfig('rs485', pty.gateway, line)],
        polling: { intervalSeconds: INTERVAL, timeoutMs: 500, maxReadDelaySeconds: 850 },
        publish: { holdSeconds: 0, drainStartDelayMaxSeconds: 0 },
        demoClock: clockConfig,
      } satisfies GatewayConfigInput;
      const configPath = await harness.writeConfig(config, 'package.yaml');
      // Plain node, no --import tsx, an environment without NODE_PATH, cwd inside the install.
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: root };
      const child = spawn(process.execPath, [bin, 'run', '--config', configPath], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      try {
        await waitFor(
          async () => {
            if (child.exitCode !== null) throw new Error(`the installed agent exited ${child.exitCode}: ${stderr.slice(-2000)}`);
            const from = new Date(Date.parse(clockConfig.virtualStart));
            const [tcpStored, rtuStored] = await Promise.all([
              harness.readings(sim.meters[2]!.meterId, SIMULATED_CHANNEL, from, new Date()),
              harness.readings(rtu.meters[0]!.meterId, SIMULATED_CHANNEL, from, new Date()),
            ]);
            return tcpStored.length >= 4 && rtuStored.length >= 4;
          },
          60_000,
          'readings from the installed agent in DynamoDB Local',
        );
      } finally {
        child.kill('SIGTERM');
        await new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve)));
        await sim.stop();
        rtu.stop();
        await pty.close();
      }
      assert.equal(child.exitCode, 0, `clean stop on SIGTERM: ${stderr.slice(-1000)}`);
      await harness.drained();
      for (const [index, meter] of sim.meters.entries()) {
        const stored = await harness.readings(meter.meterId, SIMULATED_CHANNEL, new Date(Date.parse(clockConfig.virtualStart)), new Date());
        assert.ok(stored.length >= 1, `${meter.meterId} has readings`);
        for (const reading of stored) {
          if (reading.kind !== 'interval' || reading.quality === 'estimated') continue;
          assert.equal(reading.value, sim.intervalKwh(index, reading.start.getTime() / 1000, INTERVAL));
        }
      }
      const rtuStored = await harness.readings(rtu.meters[0]!.meterId, SIMULATED_CHANNEL, new Date(Date.parse(clockConfig.virtualStart)), new Date());
      for (const reading of rtuStored) {
        if (reading.kind !== 'interval' || reading.quality === 'estimated') continue;
        assert.equal(reading.value, rtu.intervalKwh(0, reading.start.getTime() / 1000, INTERVAL), 'the RTU meter read through the bundle');
      }
      assert.match(stderr, /"poll committed"/);
    });
  });

  it('.deb: architecture all, depends on nodejs >= 20, ships the bundle, the hardened unit and the maintainer scripts', async () => {
    const info = (await run('dpkg-deb', ['--info', artifacts.deb])).stdout;
    assert.match(info, /^ Package: meterbridge-gateway$/m);
    assert.match(info, new RegExp(`^ Version: ${artifacts.version.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(info, /^ Architecture: all$/m);
    assert.match(info, /^ Depends: nodejs \(>= 20\)/m);
    assert.match(info, /\bpostinst\b/);
    const contents = (await run('dpkg-deb', ['--contents', artifacts.deb])).stdout;
    assert.match(contents, /\.\/usr\/lib\/meterbridge-gateway\/meterbridge-gateway\.mjs$/m);
    assert.match(contents, /^-rwxr-xr-x root\/root .*\.\/usr\/lib\/meterbridge-gateway\/meterbridge-gateway\.mjs$/m);
    assert.match(contents, /\.\/usr\/bin\/meterbridge-gateway -> \.\.\/lib\/meterbridge-gateway\/meterbridge-gateway\.mjs$/m);
    assert.match(contents, /\.\/lib\/systemd\/system\/meterbridge-gateway\.service$/m);
    assert.doesNotMatch(contents, /node_modules|\.node$|\.ts$/m, 'no dependencies, native code or sources');

    const extracted = join(work, 'deb-root');
    await run('dpkg-deb', ['-x', artifacts.deb, extracted]);
    const unit = readFileSync(join(extracted, 'lib', 'systemd', 'system', 'meterbridge-gateway.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/bin\/meterbridge-gateway run --config \/etc\/meterbridge-gateway\/gateway\.yaml$/m);
    const help = await run(process.execPath, [join(extracted, 'usr', 'bin', 'meterbridge-gateway'), '--help'], {
      cwd: extracted,
      env: { PATH: process.env.PATH ?? '' },
    });
    assert.match(help.stdout, /Usage: meterbridge-gateway/);
  });
});
