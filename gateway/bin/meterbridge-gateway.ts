#!/usr/bin/env -S npx tsx
/**
 * meterbridge-gateway run|status|simulate (see gateway/README.md).
 *
 *   run --config gateway.yaml                 poll meters, spool, publish (until SIGTERM/SIGINT)
 *   status --config gateway.yaml [--json]     spool depth, oldest unsent reading, last publish, read errors
 *   simulate [--meters 10] [--port 1502]      simulated Modbus TCP meters, prints their `meters:` config
 *   serial-access --config gateway.yaml [--out <file>]   systemd drop-in granting the configured serial devices
 *   keygen --thing <name> --out <dir> [--owner <user>]  private key (0600) + CSR, born on the device
 *   rotate --config gateway.yaml              ask the running agent to rotate its certificate now
 *   version                                   the agent's version (the package's, when bundled)
 *
 * Logs are JSON lines on stderr. Exit codes: 0 done, 1 failed, 2 usage or configuration error.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { consoleLog } from '../../shared/log.ts';
import { faultInjectionFromEnv, startGatewayAgent, type GatewayStatus } from '../src/agent.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { requestRotation } from '../src/rotation.ts';
import { startSimulatedMeters } from '../src/simulated-meter.ts';
import { GATEWAY_VERSION } from '../src/version.ts';
import { serialAccessDropIn } from '../src/serial.ts';
import { generateDeviceKey } from '../src/keygen.ts';

const USAGE = `Usage: meterbridge-gateway <command> [options]

Commands:
  run --config <file>                 poll the meters, spool readings durably, publish to AWS IoT Core
  status --config <file> [--json]     spool depth, oldest unsent reading, last publish, read errors
  simulate [--meters <n>] [--port <p>] [--host <h>]
                                      run simulated Modbus TCP meters and print their config
  serial-access --config <file> [--out <file>]
                                      print (or write) the systemd drop-in that grants the unit the
                                      serial devices of the configured RS-485 buses (DeviceAllow=)
  keygen --thing <name> --out <dir> [--owner <user>]
                                      make the device key (device.key.pem, 0600; never leaves this box)
                                      and a CSR (device.csr.pem) for: meterbridge device provision --csr
  rotate --config <file>              ask the running agent to rotate its certificate now (new key,
                                      CreateCertificateFromCsr over MQTT, swap, old one retired)
  version                             print the agent's version
`;

class UsageError extends Error {}

async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  if (!values.config) throw new UsageError('run needs --config <file>');
  const config = loadConfig(values.config);
  const faultPoint = faultInjectionFromEnv();
  const agent = await startGatewayAgent(config, { log: consoleLog, ...(faultPoint ? { faultPoint } : {}) });
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string) => {
      consoleLog.info('gateway agent: signal received, stopping', { signal });
      resolve();
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
  await agent.stop();
  return 0;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by the service user
  }
}

async function status(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } }, strict: true });
  if (!values.config) throw new UsageError('status needs --config <file>');
  const config = loadConfig(values.config);
  const path = join(config.spool.directory, 'status.json');
  if (!existsSync(path)) {
    process.stdout.write(`no status yet: ${path} does not exist (has the agent run?)\n`);
    return 1;
  }
  const s = JSON.parse(readFileSync(path, 'utf8')) as GatewayStatus;
  const running = alive(s.pid);
  const ageSeconds = Math.round((Date.now() - Date.parse(s.updatedAt)) / 1000);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ ...s, running, statusAgeSeconds: ageSeconds }, null, 2)}\n`);
    return 0;
  }
  const lines = [
    `gateway ${s.thingName}: ${running ? `running (pid ${s.pid})` : 'NOT running'}, status written ${ageSeconds} s ago`,
    `spool depth:          ${s.spool.depth} readings (${s.spool.pendingMessages} messages awaiting PUBACK), ${s.spool.fillPercent}% of ${Math.round(s.spool.maxBytes / 2 ** 20)} MiB`,
    `oldest unsent:        ${s.oldestUnsentReading ? `${s.oldestUnsentReading.intervalStart} (${s.oldestUnsentReading.meterId} ${s.oldestUnsentReading.channel})` : '-'}`,
    `last publish:         ${s.publisher.lastPublishAt ?? '-'} (last PUBACK ${s.publisher.lastAckAt ?? '-'}), connected: ${s.publisher.connected}`,
    `published / acked:    ${s.publisher.messagesPublished} / ${s.publisher.messagesAcked} messages, ${s.publisher.readingsAcked} readings acked`,
    `read errors:          ${s.poller.readErrors}${
      Object.keys(s.poller.readErrorsByMeter).length
        ? ` (${Object.entries(s.poller.readErrorsByMeter)
            .map(([m, n]) => `${m}: ${n}`)
            .join(', ')})`
        : ''
    }`,
    `readings taken:       ${s.poller.readingsTaken} (last poll ${s.poller.lastPollAt ?? '-'})`,
    `system clock:         ${s.poller.clock ?? 'unknown'}${s.poller.unsyncedReadings ? `, ${s.poller.unsyncedReadings} readings taken unsynchronized (stored as estimated)` : ''}`,
    `dropped (spool full): ${s.spool.droppedReadings}, refused: ${s.spool.refusedReadings}, torn records dropped at start: ${s.spool.tornRecordsDropped}`,
    s.publisher.lastError ? `last error:           ${s.publisher.lastError}` : '',
  ].filter(Boolean);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

async function simulate(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { meters: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' } }, strict: true });
  const count = Number(values.meters ?? 10);
  const port = values.port !== undefined ? Number(values.port) : 1502;
  if (!Number.isInteger(count) || count < 1) throw new UsageError('--meters must be a positive integer');
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new UsageError('--port must be a TCP port');
  const sim = await startSimulatedMeters({ count, port, ...(values.host ? { host: values.host } : {}) });
  consoleLog.info('simulated meters listening', { meters: count, host: sim.host, firstPort: sim.port });
  process.stdout.write(`# paste into gateway.yaml\n${toYaml({ meters: sim.meterConfigs() })}`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await sim.stop();
  return 0;
}

function serialAccess(args: string[]): number {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, out: { type: 'string' } }, strict: true });
  if (!values.config) throw new UsageError('serial-access needs --config <file>');
  const config = loadConfig(values.config);
  const dropIn = serialAccessDropIn(
    config.buses.map((bus) => bus.device),
    values.config,
  );
  if (!values.out) {
    process.stdout.write(dropIn);
    return 0;
  }
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, dropIn, { mode: 0o644 });
  process.stdout.write(
    `wrote ${values.out} (${config.buses.length} bus${config.buses.length === 1 ? '' : 'es'}); now: systemctl daemon-reload && systemctl restart meterbridge-gateway\n`,
  );
  return 0;
}

function keygen(args: string[]): number {
  const { values } = parseArgs({ args, options: { thing: { type: 'string' }, out: { type: 'string' }, owner: { type: 'string' } }, strict: true });
  if (!values.thing || !/^[a-zA-Z0-9:_-]{1,128}$/.test(values.thing))
    throw new UsageError('keygen needs --thing <thingName> (1-128 of a-z A-Z 0-9 : _ -)');
  if (!values.out) throw new UsageError('keygen needs --out <dir>');
  const made = generateDeviceKey({ thingName: values.thing, outDir: values.out, ...(values.owner ? { owner: values.owner } : {}) });
  process.stdout.write(
    `key  ${made.keyPath} (0600, stays on this gateway)\ncsr  ${made.csrPath}\n` +
      `next: send the CSR to the operator: meterbridge device provision ${values.thing} --csr device.csr.pem --out <dir>;\n` +
      `      put the device.cert.pem it returns beside the key.\n`,
  );
  return 0;
}

/** Drops the rotate-now file the agent's rotation check picks up (rotation.checkEverySeconds). */
function rotate(args: string[]): number {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  if (!values.config) throw new UsageError('rotate needs --config <file>');
  const config = loadConfig(values.config);
  if (!config.rotation.enabled) throw new UsageError('rotation is disabled in this configuration (rotation.enabled: false)');
  const file = requestRotation(config);
  process.stdout.write(
    `rotation requested (${file}); the agent starts it within ${config.rotation.checkEverySeconds} s: ` +
      `watch "rotation:" in its log, or status --json (rotation.phase)\n`,
  );
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'run') return await run(rest);
    if (command === 'status') return await status(rest);
    if (command === 'simulate') return await simulate(rest);
    if (command === 'serial-access') return serialAccess(rest);
    if (command === 'keygen') return keygen(rest);
    if (command === 'rotate') return rotate(rest);
    if (command === 'version') {
      process.stdout.write(`${GATEWAY_VERSION}\n`);
      return 0;
    }
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    }
    throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  } catch (error) {
    if (error instanceof UsageError || (error instanceof TypeError && (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`${error.message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    consoleLog.error('gateway agent failed', { error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
