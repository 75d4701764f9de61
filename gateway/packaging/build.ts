/**
 * `npm run gateway:package`: the gateway agent as one installable artifact (issue 17).
 *
 * esbuild bundles gateway/bin/meterbridge-gateway.ts and everything it imports (mqtt, zod, yaml,
 * modbus-serial's TCP client) into one ES module; the device needs Node.js >= 20 and nothing else
 * (no node_modules, no tsx, no build step). Around it: the systemd unit, the example
 * configuration, an install script and the README, packed twice:
 *
 *   dist/gateway/meterbridge-gateway-<version>.tar.gz   unpack anywhere, `./install.sh` (or run the bundle with `node`)
 *   dist/gateway/meterbridge-gateway_<version>_all.deb  `apt install ./meterbridge-gateway_<version>_all.deb`
 *
 * Architecture `all` (decision, gateway/README.md "Serial ports"): the bundle contains no native
 * code. modbus-serial only loads `serialport` (native bindings) for its serial ports, inside a
 * try/catch; it is left out of the bundle, and Modbus RTU uses the agent's own serial transport
 * (gateway/src/serial.ts: the tty opened by Node, line settings applied with `stty`).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PACKAGING = join(ROOT, 'gateway', 'packaging');
export const PACKAGE_NAME = 'meterbridge-gateway';

export interface GatewayArtifacts {
  version: string;
  bundle: string;
  tarball: string;
  deb: string;
  bytes: { bundle: number; tarball: number; deb: number };
}

/** Bundles the agent into `outfile` (an executable ES module with a `#!/usr/bin/env node` line). */
export async function bundleGateway(outfile: string, version: string): Promise<void> {
  await build({
    entryPoints: [join(ROOT, 'gateway', 'bin', 'meterbridge-gateway.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    legalComments: 'none',
    // Native bindings: never bundled (see the header). modbus-serial requires it inside try/catch.
    external: ['serialport'],
    define: { 'process.env.METERBRIDGE_GATEWAY_VERSION': JSON.stringify(version) },
    // The CommonJS dependencies call require() for Node's built-ins; an ES module has none.
    banner: { js: "import { createRequire as __meterbridgeRequire } from 'node:module';\nconst require = __meterbridgeRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  // The entry's own `#!/usr/bin/env -S npx tsx` is for the repository; the device runs plain node.
  const code = readFileSync(outfile, 'utf8').replace(/^#!.*\n/, '');
  writeFileSync(outfile, `#!/usr/bin/env node\n${code}`);
  chmodSync(outfile, 0o755);
}

function copy(from: string, to: string, mode = 0o644): void {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  chmodSync(to, mode);
}

/** Builds the bundle, the tarball and the .deb into `outDir` (default dist/gateway). */
export async function packageGateway(outDir = join(ROOT, 'dist', 'gateway')): Promise<GatewayArtifacts> {
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const stage = join(outDir, 'stage');
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });

  // The tarball: one directory, everything the installer needs.
  const tarRoot = `${PACKAGE_NAME}-${version}`;
  const tarDir = join(stage, 'tar', tarRoot);
  const bundle = join(tarDir, 'lib', `${PACKAGE_NAME}.mjs`);
  await bundleGateway(bundle, version);
  copy(join(ROOT, 'gateway', 'systemd', `${PACKAGE_NAME}.service`), join(tarDir, 'systemd', `${PACKAGE_NAME}.service`));
  copy(join(ROOT, 'gateway', 'gateway.example.yaml'), join(tarDir, 'gateway.example.yaml'));
  copy(join(ROOT, 'gateway', 'README.md'), join(tarDir, 'README.md'));
  copy(join(PACKAGING, 'install.sh'), join(tarDir, 'install.sh'), 0o755);
  writeFileSync(join(tarDir, 'VERSION'), `${version}\n`);
  const tarball = join(outDir, `${tarRoot}.tar.gz`);
  // Reproducible-ish: fixed owner, sorted names.
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-czf', tarball, '-C', join(stage, 'tar'), tarRoot]);

  // The .deb: Debian paths, a maintainer script that creates the service user.
  const debDir = join(stage, 'deb');
  const libDir = join(debDir, 'usr', 'lib', PACKAGE_NAME);
  copy(bundle, join(libDir, `${PACKAGE_NAME}.mjs`), 0o755);
  mkdirSync(join(debDir, 'usr', 'bin'), { recursive: true });
  symlinkSync(`../lib/${PACKAGE_NAME}/${PACKAGE_NAME}.mjs`, join(debDir, 'usr', 'bin', PACKAGE_NAME));
  copy(join(ROOT, 'gateway', 'systemd', `${PACKAGE_NAME}.service`), join(debDir, 'lib', 'systemd', 'system', `${PACKAGE_NAME}.service`));
  copy(join(ROOT, 'gateway', 'gateway.example.yaml'), join(debDir, 'usr', 'share', 'doc', PACKAGE_NAME, 'gateway.example.yaml'));
  copy(join(ROOT, 'gateway', 'README.md'), join(debDir, 'usr', 'share', 'doc', PACKAGE_NAME, 'README.md'));
  const installedKb = Math.ceil(
    Number(
      execFileSync('du', ['-sk', '--apparent-size', join(debDir, 'usr'), join(debDir, 'lib')])
        .toString()
        .split('\n')
        .reduce((sum, line) => sum + (Number(line.split('\t')[0]) || 0), 0),
    ),
  );
  mkdirSync(join(debDir, 'DEBIAN'), { recursive: true });
  writeFileSync(
    join(debDir, 'DEBIAN', 'control'),
    [
      `Package: ${PACKAGE_NAME}`,
      `Version: ${version}`,
      'Architecture: all',
      'Maintainer: meterbridge <meterbridge@example.com>',
      'Depends: nodejs (>= 20), adduser',
      'Recommends: systemd-timesyncd | chrony | ntp',
      'Section: net',
      'Priority: optional',
      `Installed-Size: ${installedKb}`,
      'Homepage: https://github.com/meterbridge/meterbridge',
      'Description: meterbridge field gateway agent',
      ' Polls electricity, gas and water meters over Modbus TCP and Modbus RTU (RS-485),',
      ' keeps every reading in a durable spool and publishes interval blocks to AWS IoT',
      ' Core over MQTT with mutual TLS. One bundled file; needs only Node.js 20 or later.',
      '',
    ].join('\n'),
  );
  copy(join(PACKAGING, 'postinst'), join(debDir, 'DEBIAN', 'postinst'), 0o755);
  copy(join(PACKAGING, 'prerm'), join(debDir, 'DEBIAN', 'prerm'), 0o755);
  copy(join(PACKAGING, 'postrm'), join(debDir, 'DEBIAN', 'postrm'), 0o755);
  const deb = join(outDir, `${PACKAGE_NAME}_${version}_all.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', debDir, deb], { stdio: ['ignore', 'ignore', 'inherit'] });

  // Keep the bundle beside the packages (handy for a quick scp to a test box).
  const loose = join(outDir, `${PACKAGE_NAME}.mjs`);
  copy(bundle, loose, 0o755);
  rmSync(stage, { recursive: true, force: true });
  return { version, bundle: loose, tarball, deb, bytes: { bundle: statSync(loose).size, tarball: statSync(tarball).size, deb: statSync(deb).size } };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const artifacts = await packageGateway(process.argv[2] ? resolve(process.argv[2]) : undefined);
  const kib = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
  process.stdout.write(
    `${artifacts.tarball}  ${kib(artifacts.bytes.tarball)}\n${artifacts.deb}  ${kib(artifacts.bytes.deb)}\n${artifacts.bundle}  ${kib(artifacts.bytes.bundle)} (the bundle, uncompressed)\n`,
  );
}
