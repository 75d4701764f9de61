/**
 * The optional `smt` block of a stage in cdk.json (`meterbridge:stages.<stage>.smt`), validated
 * with messages that name the key. Absent: SMT is deployed but switched off (the schedule is
 * disabled), so `cdk synth` of a stage without an SMT account still builds and checks everything.
 *
 *   "smt": { "enabled": true, "protocol": "sftp", "host": "sftp.smartmetertexas.biz", "port": 22,
 *            "folders": ["intervaldata", "adhocusage"], "afterArchive": "delete",
 *            "schedule": "rate(15 minutes)",
 *            "transportSecretName": "meterbridge/prod/smt/transport", "pgpSecretName": "meterbridge/prod/smt/pgp",
 *            "archiveColdAfterDays": 90, "fixedEgressIp": true, "egressAvailabilityZones": 1,
 *            "missingDaysSchedule": "cron(0 15 * * ? *)", "missingDaysWindow": 7 }
 */
import { isRecord } from './settings-values.ts';

export interface SmtSettings {
  /** Whether the fetch schedule runs. @default false */
  readonly enabled: boolean;
  /** @default 'sftp' (what SMT serves since September 2025) */
  readonly protocol: 'ftps' | 'sftp';
  /** SMT file server host name; required when enabled. */
  readonly host: string;
  /** @default 21 for ftps, 22 for sftp */
  readonly port: number;
  /** Name the FTPS server's certificate must carry, when it differs from `host`. */
  readonly tlsServerName?: string;
  /** Remote folders to drain. @default ['intervaldata', 'adhocusage'] */
  readonly folders: readonly string[];
  /** What happens to a file on the server once archived. @default 'delete' (SMT asks receivers to) */
  readonly afterArchive: 'delete' | 'keep';
  /** EventBridge schedule expression of the fetch step. @default 'rate(15 minutes)' */
  readonly schedule: string;
  /** Secrets Manager name of the transport credentials (shape in lambdas/core/smt/secrets.ts). */
  readonly transportSecretName: string;
  /** Secrets Manager name of the PGP private key and passphrase. */
  readonly pgpSecretName: string;
  /** Days after which archived files move to Glacier Instant Retrieval (still readable at once). @default 90 */
  readonly archiveColdAfterDays: number;
  /**
   * Refuse the spreadsheet variants of SMT's CSV reports (revisions without seconds, AM/PM, ISO
   * dates) as `layout` instead of taking them. @default false: unambiguous variants are taken (docs/smt.md)
   */
  readonly strictCsv: boolean;
  /**
   * Reserved concurrency of the fetch function. @default none: a fresh account's Lambda concurrency
   * quota is 10 and Lambda keeps 10 unreserved, so any reservation fails to deploy there. Not needed
   * for correctness: the ledger claims each file, a concurrent run skips what another holds.
   */
  readonly fetchReservedConcurrency?: number;
  /**
   * Run the fetch function in a VPC whose NAT gateway(s) leave through Elastic IPs, the addresses to
   * register with SMT (SMT allow-lists the public IP a third party pulls from). @default false
   */
  readonly fixedEgressIp: boolean;
  /** NAT gateways (one per AZ, one Elastic IP each) when fixedEgressIp is on: 2 survives an AZ outage. @default 1 */
  readonly egressAvailabilityZones: 1 | 2;
  /**
   * EventBridge schedule of the daily missing-days check (lib/smt-missing-days.ts), after SMT's
   * usual delivery of the previous day (early morning, Central time). @default 'cron(0 15 * * ? *)' (15:00 UTC)
   */
  readonly missingDaysSchedule: string;
  /**
   * Days before the newest delivered day within which an ESIID counts as still delivering: one
   * silent for longer is taken as gone (moved out), not missing. @default 7 (the CLI's DEFAULT_MISSING_WINDOW_DAYS,
   * lambdas/core/smt/esiid-days.ts, which lib/ may not import; test/unit/cdk-settings.test.ts ties the two)
   */
  readonly missingDaysWindow: number;
}

const KNOWN = [
  'enabled',
  'protocol',
  'host',
  'port',
  'tlsServerName',
  'folders',
  'afterArchive',
  'schedule',
  'transportSecretName',
  'pgpSecretName',
  'archiveColdAfterDays',
  'strictCsv',
  'fetchReservedConcurrency',
  'fixedEgressIp',
  'egressAvailabilityZones',
  'missingDaysSchedule',
  'missingDaysWindow',
] as const;

const HOST = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const FOLDER = /^[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;
const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const SCHEDULE = /^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\([^)]+\))$/;

export class SmtSettingsError extends Error {
  constructor(key: string, problem: string) {
    super(`${key}: ${problem}`);
    this.name = 'SmtSettingsError';
  }
}

/** Validates the `smt` block of a stage; `key` is its context path for messages. */
export function parseSmtSettings(value: unknown, key: string, stage: string): SmtSettings {
  const raw = value ?? {};
  if (!isRecord(raw)) throw new SmtSettingsError(key, 'must be an object');
  for (const name of Object.keys(raw)) {
    if (!(KNOWN as readonly string[]).includes(name)) throw new SmtSettingsError(`${key}.${name}`, `unknown setting; known: ${KNOWN.join(', ')}`);
  }
  const enabled = raw.enabled ?? false;
  if (typeof enabled !== 'boolean') throw new SmtSettingsError(`${key}.enabled`, 'must be true or false');
  const protocol = raw.protocol ?? 'sftp';
  if (protocol !== 'ftps' && protocol !== 'sftp')
    throw new SmtSettingsError(`${key}.protocol`, `${JSON.stringify(protocol)} must be "ftps" or "sftp"`);
  const host = raw.host ?? '';
  if (typeof host !== 'string' || (host !== '' && !HOST.test(host)))
    throw new SmtSettingsError(`${key}.host`, `${JSON.stringify(host)} is not a host name`);
  if (enabled && host === '') throw new SmtSettingsError(`${key}.host`, 'is required when enabled is true (e.g. the SMT SFTP host SMT gave you)');
  const port = raw.port ?? (protocol === 'ftps' ? 21 : 22);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535)
    throw new SmtSettingsError(`${key}.port`, `${JSON.stringify(port)} is not a TCP port`);
  const tlsServerName = raw.tlsServerName;
  if (tlsServerName !== undefined && (typeof tlsServerName !== 'string' || !HOST.test(tlsServerName)))
    throw new SmtSettingsError(`${key}.tlsServerName`, 'must be a host name');
  const folders = raw.folders ?? ['intervaldata', 'adhocusage'];
  if (
    !Array.isArray(folders) ||
    folders.length === 0 ||
    !folders.every((f) => typeof f === 'string' && FOLDER.test(f) && !f.split('/').some((part) => part === '.' || part === '..'))
  ) {
    throw new SmtSettingsError(`${key}.folders`, 'must be a non-empty list of relative folder paths such as "intervaldata"');
  }
  const afterArchive = raw.afterArchive ?? 'delete';
  if (afterArchive !== 'delete' && afterArchive !== 'keep')
    throw new SmtSettingsError(`${key}.afterArchive`, `${JSON.stringify(afterArchive)} must be "delete" or "keep"`);
  const scheduleOf = (name: string, fallback: string): string => {
    const v = raw[name] ?? fallback;
    if (typeof v !== 'string' || !SCHEDULE.test(v)) {
      throw new SmtSettingsError(
        `${key}.${name}`,
        `${JSON.stringify(v)} is not an EventBridge schedule expression (rate(15 minutes), cron(0/15 * * * ? *))`,
      );
    }
    return v;
  };
  const schedule = scheduleOf('schedule', 'rate(15 minutes)');
  const missingDaysSchedule = scheduleOf('missingDaysSchedule', 'cron(0 15 * * ? *)');
  const secretName = (name: string, fallback: string): string => {
    const v = raw[name] ?? fallback;
    if (typeof v !== 'string' || !SECRET_NAME.test(v))
      throw new SmtSettingsError(`${key}.${name}`, `${JSON.stringify(v)} is not a Secrets Manager secret name`);
    return v;
  };
  const days = (name: string, fallback: number): number => {
    const v = raw[name] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 3650)
      throw new SmtSettingsError(`${key}.${name}`, `${JSON.stringify(v)} must be a whole number of days from 1 to 3650`);
    return v;
  };
  const archiveColdAfterDays = days('archiveColdAfterDays', 90);
  const missingDaysWindow = days('missingDaysWindow', 7);
  const fetchReservedConcurrency = raw.fetchReservedConcurrency;
  if (
    fetchReservedConcurrency !== undefined &&
    (typeof fetchReservedConcurrency !== 'number' || !Number.isInteger(fetchReservedConcurrency) || fetchReservedConcurrency < 1)
  ) {
    throw new SmtSettingsError(
      `${key}.fetchReservedConcurrency`,
      `${JSON.stringify(fetchReservedConcurrency)} must be a whole number from 1 (leave it out in accounts whose concurrency quota is 10)`,
    );
  }
  const strictCsv = raw.strictCsv ?? false;
  if (typeof strictCsv !== 'boolean') throw new SmtSettingsError(`${key}.strictCsv`, 'must be true or false');
  const fixedEgressIp = raw.fixedEgressIp ?? false;
  if (typeof fixedEgressIp !== 'boolean') throw new SmtSettingsError(`${key}.fixedEgressIp`, 'must be true or false');
  const egressAvailabilityZones = raw.egressAvailabilityZones ?? 1;
  if (egressAvailabilityZones !== 1 && egressAvailabilityZones !== 2)
    throw new SmtSettingsError(`${key}.egressAvailabilityZones`, `${JSON.stringify(egressAvailabilityZones)} must be 1 or 2`);
  if (raw.egressAvailabilityZones !== undefined && !fixedEgressIp)
    throw new SmtSettingsError(`${key}.egressAvailabilityZones`, 'only applies with fixedEgressIp: true');
  return {
    enabled,
    protocol,
    host,
    port,
    ...(tlsServerName ? { tlsServerName } : {}),
    folders: folders as string[],
    afterArchive,
    schedule,
    transportSecretName: secretName('transportSecretName', `meterbridge/${stage}/smt/transport`),
    pgpSecretName: secretName('pgpSecretName', `meterbridge/${stage}/smt/pgp`),
    archiveColdAfterDays,
    strictCsv,
    ...(fetchReservedConcurrency !== undefined ? { fetchReservedConcurrency } : {}),
    fixedEgressIp,
    egressAvailabilityZones,
    missingDaysSchedule,
    missingDaysWindow,
  };
}
