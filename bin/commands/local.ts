/**
 * `meterbridge local` (`npm start`): the whole pipeline on this machine against the local
 * stand-ins, with simulated gateways, SMT servers and a READY sender. The work is in
 * local/local-mode.ts; this module parses the command line and picks the sources.
 */
import { resolve } from 'node:path';
import { LOCAL_PORTS, LOCAL_STATE_DIR, type LocalPortName } from '../../local/defaults.ts';
import { runLocalMode, type LocalModeOptions, type SourceFactory } from '../../local/local-mode.ts';
import { iotSource, type IotSource } from '../../local/sources/iot.ts';
import { readySource } from '../../local/sources/ready.ts';
import { smtSource } from '../../local/sources/smt.ts';
import { EXIT_FAILED, EXIT_OK, UsageError, parseCommandLine, type CliCommand } from './cli.ts';

const HELP = 'meterbridge local --help';
/** When local mode forces its one certificate rotation (docs/local-mode.md "Certificate rotation"). */
const DEFAULT_ROTATE_AT = '15s';
const SOURCES = ['iot', 'smt', 'ready'] as const;

const USAGE = `Usage:
  npm start -- [options]          (or: meterbridge local [options])

Runs meterbridge end to end on loopback: DynamoDB Local, an MQTT broker requiring client
certificates (stand-in for IoT Core), S3 (s3rver), FTPS and SFTP servers with freshly generated
PGP-encrypted SMT files, the READY webhook on a local HTTP port, simulated gateways polling
simulated Modbus meters, and a metrics sink. The real handlers' code does the work. The query
API serves a page at http://127.0.0.1:<query port>/ (meters, a day or a week of readings, live
counters); its URL is printed at the start.

Prints a progress block per source, and at the end a summary; exits 1 if a simulated reading was
lost or stored twice. Without --duration it runs until Ctrl-C, then drains and summarises.

  --gateways <n>          simulated gateways (one MQTT connection each)     default 2
  --meters <n>            simulated Modbus meters per gateway                default 5
  --duration <time>       run this long, then drain, check and exit (e.g. 60, 90s, 2m)
  --broker-outage <time>  take the IoT broker down for this long, 10 s after the start
  --kill-gateway <time>   SIGKILL the first gateway this long after the start, restart it 1 s later
  --rotate-gateway <time|off>  force a certificate rotation of the first gateway this long after
                          the start (new key, certificate over MQTT, old one revoked); the
                          summary checks it                                   default ${DEFAULT_ROTATE_AT}
  --sources <list>        which sources to run                  default iot,smt,ready
  --state-dir <dir>       generated certificates, spools, SMT files, S3 data   default ${LOCAL_STATE_DIR}/
  --port <name>=<n>       override a port (repeatable); names and defaults:
                          ${Object.entries(LOCAL_PORTS)
                            .map(([name, port]) => `${name}=${port}`)
                            .join(' ')}
  -h, --help              this text
`;

export const command: CliCommand = {
  async run(args, io) {
    const { values, positionals } = parseCommandLine(args, HELP, {
      gateways: { type: 'string', default: '2' },
      meters: { type: 'string', default: '5' },
      duration: { type: 'string' },
      'broker-outage': { type: 'string' },
      'kill-gateway': { type: 'string' },
      'rotate-gateway': { type: 'string' },
      sources: { type: 'string', default: SOURCES.join(',') },
      'state-dir': { type: 'string', default: LOCAL_STATE_DIR },
      port: { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.out(USAGE);
      return EXIT_OK;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`, HELP);
    const gateways = positiveInteger(values.gateways, '--gateways');
    const meters = positiveInteger(values.meters, '--meters');
    const durationMs = values.duration === undefined ? undefined : parseDuration(values.duration, '--duration');
    const outageMs = values['broker-outage'] === undefined ? undefined : parseDuration(values['broker-outage'], '--broker-outage');
    const killAtMs = values['kill-gateway'] === undefined ? undefined : parseDuration(values['kill-gateway'], '--kill-gateway');
    const rotateAt = values['rotate-gateway'] ?? DEFAULT_ROTATE_AT;
    const rotateAtMs = rotateAt === 'off' ? undefined : parseDuration(rotateAt, '--rotate-gateway');
    const ports = { ...LOCAL_PORTS } as Record<LocalPortName, number>;
    for (const override of values.port) {
      const match = /^([a-z0-9]+)=(\d{1,5})$/.exec(override);
      if (!match || !(match[1]! in ports))
        throw new UsageError(`--port ${override}: expected <name>=<port> with a name from ${Object.keys(ports).join(', ')}`, HELP);
      ports[match[1] as LocalPortName] = Number(match[2]);
    }
    const chosen = values.sources
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const source of chosen) {
      if (!(SOURCES as readonly string[]).includes(source))
        throw new UsageError(`--sources: unknown source ${JSON.stringify(source)} (expected ${SOURCES.join(', ')})`, HELP);
    }
    const stateDir = resolve(values['state-dir']);
    const factories: SourceFactory[] = [];
    let iot: IotSource | undefined;
    if (chosen.includes('iot'))
      factories.push(
        async (platform) => (iot = await iotSource(platform, { gateways, metersPerGateway: meters, stateDir, modbusBasePort: ports.modbus })),
      );
    if (killAtMs !== undefined && !chosen.includes('iot')) throw new UsageError('--kill-gateway needs the iot source', HELP);
    if (values['rotate-gateway'] !== undefined && values['rotate-gateway'] !== 'off' && !chosen.includes('iot'))
      throw new UsageError('--rotate-gateway needs the iot source', HELP);
    const schedule: NonNullable<LocalModeOptions['schedule']> = [];
    if (killAtMs !== undefined)
      schedule.push({ atMs: killAtMs, label: 'SIGKILL gateway 1 (restart in 1 s)', run: async () => iot?.killGateway(0, 1000) });
    if (rotateAtMs !== undefined && chosen.includes('iot'))
      schedule.push({ atMs: rotateAtMs, label: 'certificate rotation of gateway 1 forced', run: async () => iot?.rotateGateway(0) });
    if (chosen.includes('smt')) factories.push((platform) => smtSource(platform, { stateDir, ftpsPort: ports.ftps, sftpPort: ports.sftp }));
    if (chosen.includes('ready')) factories.push((platform) => readySource(platform, { port: ports.ready, meters: meters * gateways }));

    const abort = new AbortController();
    const onSignal = () => {
      io.err('\ninterrupted: draining and checking (Ctrl-C again to quit at once)\n');
      abort.abort();
      process.once('SIGINT', () => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    try {
      const summary = await runLocalMode({
        ports,
        stateDir,
        sources: factories,
        ...(durationMs !== undefined ? { durationMs } : {}),
        ...(outageMs !== undefined ? { brokerOutage: { afterMs: 10_000, forMs: outageMs } } : {}),
        schedule,
        signal: abort.signal,
        out: io.out,
        err: io.err,
      });
      return summary.ok ? EXIT_OK : EXIT_FAILED;
    } finally {
      process.off('SIGINT', onSignal);
      // Everything local mode started has been stopped by now (a failed start included). Should a
      // handle still keep the event loop alive, exit anyway instead of hanging (the timer itself does not keep it alive).
      setTimeout(() => {
        io.err('meterbridge local: something still held the process open after the stop; exiting\n');
        process.exit(process.exitCode ?? EXIT_FAILED);
      }, 15_000).unref();
    }
  },
};

function positiveInteger(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 10_000)
    throw new UsageError(`${flag} must be an integer from 1 to 10000, got ${JSON.stringify(text)}`, HELP);
  return value;
}

/** `90`, `90s`, `2m`, `1h`, `500ms` -> milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match) throw new UsageError(`${flag} ${JSON.stringify(text)} is not a duration (e.g. 60, 90s, 2m)`, HELP);
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 's']!;
  return Math.round(Number(match[1]) * factor);
}
