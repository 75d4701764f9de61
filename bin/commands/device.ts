/**
 * `meterbridge device provision|revoke|rotate|retire`: gateway certificates on AWS IoT Core.
 *
 * The private key is generated on the machine that runs this (ideally the gateway itself) and
 * never leaves it; IoT Core only sees a CSR. The work is in bin/operator/device-provisioning.ts;
 * rotate and retire are in bin/operator/device-rotation.ts. This module parses the command line,
 * creates the IoT client and prints the outcome.
 */
import { readFileSync } from 'node:fs';
import { IoTClient } from '@aws-sdk/client-iot';
import { assertThingName, provisionDevice, provisionDeviceFromCsr, revokeDevice } from '../operator/device-provisioning.ts';
import { retireDeviceCertificate, thingCertificates } from '../operator/device-rotation.ts';
import { EXIT_FAILED, EXIT_OK, UsageError, cliLog, parseSubcommandLine, subcommandOf, type CliCommand, type CliIo } from './cli.ts';

const HELP = 'meterbridge device --help';

// Same rule as lib/settings.ts (not imported: it pulls in aws-cdk-lib, slow for a CLI).
const STAGE_NAME = /^[A-Za-z][A-Za-z0-9-]{0,63}$/;

const USAGE = `Usage:
  meterbridge device provision <thingName> --out <dir> [--csr <file>] [options]
  meterbridge device revoke <thingName> [--delete-thing] [options]
  meterbridge device rotate <thingName> [options]
  meterbridge device retire <certificateId> [--force] [options]

provision
  Generates an EC P-256 private key in <dir> (it never leaves this machine), has IoT Core sign a
  certificate for it from a CSR, creates the thing, attaches the gateway policy and the
  certificate. Writes device.key.pem (0600), device.cert.pem, AmazonRootCA1.pem and endpoint.json
  (endpoint, port, thing name, telemetry topic). Refuses a <dir> that already holds a key. If a
  step fails after the certificate was created, the certificate is deactivated and deleted.

  With --csr, the key was born on the gateway (meterbridge-gateway keygen): IoT Core signs that
  request and only device.cert.pem, AmazonRootCA1.pem and endpoint.json are written; no key is
  made or written here. The CSR's CN must be <thingName> and its signature must hold.

  --out <dir>           where to write the files (created 0700 if missing)     required
  --csr <file>          a PEM CSR made on the gateway (keys born on the device)
  --stage <name>        stage whose names are used below                       default dev
  --policy <name>       IoT policy for the certificate       default meterbridge-<stage>-gateway
  --thing-type <name>   thing type of the thing              default meterbridge-<stage>-gateway
  --rule <name>         Basic Ingest rule in the topic       default meterbridge_<stage>_telemetry

revoke
  Sets every certificate attached to the thing to REVOKED (it can never be activated again),
  detaches it from the thing and its policies. Safe to run again; a thing without certificates
  is reported, not an error.

  --delete-thing        also delete the thing

rotate
  A rotation starts on the gateway, not here: the new key is born on the device, and the agent
  listens to nothing but the answers to its own certificate requests. Shows the thing's
  certificates (status, age, expiry) and how to start the rotation on the gateway
  (meterbridge-gateway rotate) and check it. The agent also rotates by itself every
  rotation.intervalDays (90); the fleet function then revokes the old certificate.

  --interval-days <n>   age from which a certificate is shown as due         default 90

retire
  Retires one certificate as the fleet function does after a rotation: REVOKED, its policies and
  things detached. For an old certificate left attached (its retire notice never arrived).
  Refuses the only ACTIVE certificate of a thing (the gateway would be cut off) unless --force.
  Safe to run again.

  --force               retire it even if it is the thing's only ACTIVE certificate

common
  --region <region>     AWS region                                     default $AWS_REGION
  -h, --help            this text
`;

const COMMON_OPTIONS = {
  region: { type: 'string' },
  // Hidden: points the client at another IoT control-plane endpoint (the integration tests' stub).
  'endpoint-url': { type: 'string' },
} as const;

export const command: CliCommand = {
  async run(args, io) {
    const { subcommand, rest } = subcommandOf(args, 'device', ['provision', 'revoke', 'rotate', 'retire'], HELP);
    if (subcommand === 'help') {
      io.out(USAGE);
      return EXIT_OK;
    }
    return { provision, revoke, rotate, retire }[subcommand](rest, io);
  },
};

async function provision(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(
    args,
    HELP,
    {
      ...COMMON_OPTIONS,
      out: { type: 'string' },
      csr: { type: 'string' },
      stage: { type: 'string', default: 'dev' },
      policy: { type: 'string' },
      'thing-type': { type: 'string' },
      rule: { type: 'string' },
    },
    ONE_THING('provision'),
  );
  if (!parsed) return usage(io);
  const { values } = parsed;
  const thingName = validThingName(parsed.positionals[0]!);
  if (!values.out) throw new UsageError('provision needs --out <dir>', HELP);
  const stage = values.stage;
  if (!STAGE_NAME.test(stage))
    throw new UsageError(`${JSON.stringify(stage)} is not a valid stage name (a letter, then letters, digits or '-')`, HELP);

  let csrPem: string | undefined;
  if (values.csr !== undefined) {
    try {
      csrPem = readFileSync(values.csr, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read --csr ${values.csr}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, HELP);
    }
  }

  const iot = iotClient(values, io);
  try {
    const options = {
      iot,
      thingName,
      policyName: values.policy ?? `meterbridge-${stage}-gateway`,
      thingTypeName: values['thing-type'] ?? `meterbridge-${stage}-gateway`,
      // IoT rule names allow no '-', which stage names do.
      ruleName: values.rule ?? `meterbridge_${stage.replaceAll('-', '_')}_telemetry`,
      outDir: values.out,
      log: cliLog(io),
    };
    const device = csrPem !== undefined ? await provisionDeviceFromCsr({ ...options, csrPem }) : await provisionDevice(options);
    io.out(
      [
        `provisioned ${device.thingName}${device.thingExisted ? ' (existing thing, same type)' : ''}`,
        `  certificate  ${device.certificateId} (ACTIVE)`,
        `  endpoint     ${device.endpoint}:${device.port}`,
        `  topic        ${device.topic}`,
        ...('key' in device.files
          ? [`  files        ${device.files.key} (0600)`, `               ${device.files.certificate}`]
          : [`  files        ${device.files.certificate} (the key stays on the gateway)`]),
        `               ${device.files.rootCa}`,
        `               ${device.files.endpoint}`,
        '',
      ].join('\n'),
    );
    return EXIT_OK;
  } finally {
    iot.destroy();
  }
}

async function revoke(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(args, HELP, { ...COMMON_OPTIONS, 'delete-thing': { type: 'boolean', default: false } }, ONE_THING('revoke'));
  if (!parsed) return usage(io);
  const { values } = parsed;
  const thingName = validThingName(parsed.positionals[0]!);
  const iot = iotClient(values, io);
  try {
    const report = await revokeDevice({ iot, thingName, deleteThing: values['delete-thing'], log: cliLog(io) });
    if (!report.thingFound) {
      io.out(`thing ${thingName} does not exist: nothing to revoke\n`);
      return EXIT_OK;
    }
    const lines: string[] = [];
    if (report.revokedCertificateIds.length === 0 && report.detachedOtherPrincipals.length === 0) {
      lines.push(`thing ${thingName} has no certificates attached: nothing to revoke`);
    }
    for (const id of report.revokedCertificateIds) {
      const policies = report.detachedPolicies.filter((p) => p.certificateId === id).map((p) => p.policyName);
      lines.push(`revoked certificate ${id}; detached from ${thingName}${policies.length ? ` and from policy ${policies.join(', ')}` : ''}`);
    }
    for (const principal of report.detachedOtherPrincipals) lines.push(`detached ${principal} (not a certificate: not revoked)`);
    if (report.thingDeleted) lines.push(`deleted thing ${thingName}`);
    io.out(`${lines.join('\n')}\n`);
    return EXIT_OK;
  } finally {
    iot.destroy();
  }
}

async function rotate(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(args, HELP, { ...COMMON_OPTIONS, 'interval-days': { type: 'string', default: '90' } }, ONE_THING('rotate'));
  if (!parsed) return usage(io);
  const { values } = parsed;
  const thingName = validThingName(parsed.positionals[0]!);
  const intervalDays = Number(values['interval-days']);
  if (!Number.isFinite(intervalDays) || intervalDays < 1) throw new UsageError('--interval-days must be a number of days >= 1', HELP);
  const iot = iotClient(values, io);
  try {
    const certificates = await thingCertificates(iot, thingName);
    if (!certificates) {
      io.err(`thing ${thingName} does not exist\n`);
      return EXIT_FAILED;
    }
    const day = (date: Date | undefined) => date?.toISOString().slice(0, 10) ?? '-';
    const lines = [`certificates of ${thingName} (oldest first):`];
    if (certificates.length === 0) lines.push('  none attached: provision the gateway again (meterbridge device provision)');
    for (const c of certificates) {
      const due = c.status === 'ACTIVE' && (c.ageDays ?? 0) >= intervalDays ? '  DUE for rotation' : '';
      lines.push(
        `  ${c.certificateId}  ${c.status.padEnd(18)} since ${day(c.notBefore)} (${c.ageDays ?? '?'} days), expires ${day(c.notAfter)}${due}`,
      );
    }
    lines.push(
      '',
      `To rotate now, on the gateway ${thingName}:`,
      '  sudo meterbridge-gateway rotate --config /etc/meterbridge-gateway/gateway.yaml',
      'The agent starts within rotation.checkEverySeconds (log "rotation:", or meterbridge-gateway status --json: rotation.phase).',
      'It gets a certificate for a new key over MQTT; the fleet function activates it and revokes the old one.',
      `Then this command shows one ACTIVE certificate. An old one still attached after that: meterbridge device retire <certificateId>.`,
      '',
    );
    io.out(lines.join('\n'));
    return EXIT_OK;
  } finally {
    iot.destroy();
  }
}

async function retire(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(
    args,
    HELP,
    { ...COMMON_OPTIONS, force: { type: 'boolean', default: false } },
    { count: 1, what: 'retire takes one certificate id' },
  );
  if (!parsed) return usage(io);
  const { values, positionals } = parsed;
  const iot = iotClient(values, io);
  try {
    const report = await retireDeviceCertificate({ iot, certificateId: positionals[0]!, force: values.force, log: cliLog(io) });
    if (report.alreadyRetired) {
      io.out(`certificate ${report.certificateId} is already REVOKED and attached to nothing: nothing to do\n`);
      return EXIT_OK;
    }
    const from = [
      ...(report.things.length ? [`thing ${report.things.join(', ')}`] : []),
      ...(report.policies.length ? [`policy ${report.policies.join(', ')}`] : []),
    ];
    io.out(
      `retired certificate ${report.certificateId}: ${report.previousStatus} -> REVOKED` +
        `${from.length ? `; detached from ${from.join(' and ')}` : '; it was attached to nothing'}\n`,
    );
    return EXIT_OK;
  } finally {
    iot.destroy();
  }
}

/** The positional of provision, revoke and rotate: one thing name. */
const ONE_THING = (subcommand: string) => ({ count: 1, what: `${subcommand} takes one thing name` });

function usage(io: CliIo): number {
  io.out(USAGE);
  return EXIT_OK;
}

function validThingName(thingName: string): string {
  try {
    assertThingName(thingName);
  } catch (error) {
    throw new UsageError((error as Error).message, HELP);
  }
  return thingName;
}

function iotClient(values: { region?: string; 'endpoint-url'?: string }, io: CliIo): IoTClient {
  // Region from the flag, else AWS_REGION; if neither, the SDK's own chain (the profile's region).
  const region = values.region ?? io.env.AWS_REGION;
  return new IoTClient({
    ...(region ? { region } : {}),
    ...(values['endpoint-url'] ? { endpoint: values['endpoint-url'] } : {}),
  });
}
