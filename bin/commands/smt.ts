/**
 * `meterbridge smt parse|replay`: Smart Meter Texas files for operators.
 *
 * `parse` decrypts (when the file is PGP), unzips and parses a file exactly like the process
 * step, and prints one JSON reading per line, only after the whole file passed its integrity and
 * layout checks: a failing file prints no reading at all and exits 1.
 * `replay` runs the process step on an archived file (e.g. one that failed for a wrong key).
 * `missing` lists the ESIIDs SMT stopped delivering, with the daily check's own core function.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { PrivateKey } from 'openpgp';
import { RawArchive } from '../../lambdas/core/raw-archive.ts';
import { readingToJson } from '../../shared/reading.ts';
import { DECRYPT_STALL_MS, decryptToFile, loadPrivateKey, SmtDecryptError } from '../../lambdas/core/smt/pgp/decrypt.ts';
import { readingsOf, SMT_TIME_ZONE } from '../../lambdas/core/smt/model.ts';
import { checkParts, daysOf, PermanentFailure, processArchivedFile, type PartOutcome } from '../../lambdas/core/smt/process.ts';
import { checkMissingDays, DEFAULT_MISSING_WINDOW_DAYS, EsiidDays } from '../../lambdas/core/smt/esiid-days.ts';
import { pgpKeyFrom, readSecretJson } from '../../lambdas/core/smt/secrets.ts';
import { assertTimeZone } from '../../lambdas/core/time.ts';
import { wireSource } from '../../lambdas/core/wiring.ts';
import { openStoreTarget, STORE_TARGET_OPTIONS, STORE_TARGET_USAGE } from '../operator/store-target.ts';
import { cliLog, EXIT_FAILED, EXIT_OK, parseSubcommandLine, subcommandOf, UsageError, type CliCommand, type CliIo } from './cli.ts';

const HELP = 'meterbridge smt --help';

const USAGE = `Usage:
  meterbridge smt parse <file> [--private-key <armored key file>] [--passphrase-env <VAR>] [--strict]
  meterbridge smt replay <s3 key> --bucket <archive bucket> --readings-table <t> --ledger-table <t> [options]
  meterbridge smt missing [--days <n>] [store options]

parse
  Decrypts <file> when it is PGP (armored or binary), unzips it when the clear content is a ZIP,
  parses it (interval CSV, LSE or daily register reads, recognised by the first line) and prints
  one JSON object per reading per line:
    {"meterId","channel","kind","start","end","value","unit","quality","revision","source","originId"[,"status"]}
  (start/end ISO-8601 UTC; meterId without SMT's apostrophe; a blank interval prints nothing).
  Nothing of a part (the file, or one member of a ZIP bundle) is printed unless the whole part
  passed its checks; each refused part is named on stderr with its reason (layout, unknown-type,
  unsupported-type = monthly billing, invalid-reading) and the line and field. Exit 1 when nothing
  could be taken.

  --private-key <file>     armored PGP private key (needed for encrypted files)
  --passphrase-env <VAR>   environment variable holding the key's passphrase
  --time-zone <zone>       zone of SMT's local times                    default ${SMT_TIME_ZONE}
  --strict                 only SMT's own spellings: refuse a spreadsheet's re-save (M/D/YYYY H:MM
                           revisions without seconds, AM/PM, ISO dates); by default they are taken
                           when unambiguous, as the pipeline does
  --decrypt-stall-seconds <n>  refuse the file as corrupt when decryption makes no progress
                           for this long (some corrupted files make it hang) default ${DECRYPT_STALL_MS / 1000}

replay
  Processes an archived file again, as the process Lambda does: claims it in the ledger (a
  failed file is re-taken; a completed one is skipped: its readings are stored), decrypts,
  parses and stores. Needs AWS credentials for S3, DynamoDB and, without --private-key, Secrets
  Manager. The bucket name is the stack output SmtArchiveBucketName.

  --bucket <name>            SMT archive bucket                             required
  --readings-table <name>    readings table (stack output ReadingsTableName) required
  --ledger-table <name>      ledger table (stack output LedgerTableName)     required
  --pgp-secret <name>        Secrets Manager secret with the PGP key   default meterbridge/<stage>/smt/pgp
  --stage <name>             stage, for the default secret name              default dev
  --private-key <file>       use this key instead of the secret (with --passphrase-env)
  --passphrase-env <VAR>
  --time-zone <zone>         block time zone of the readings table          default ${SMT_TIME_ZONE}
  --region <region>          AWS region                                       default $AWS_REGION
  --s3-endpoint <url>        S3 endpoint (local mode's s3rver)
  --dynamodb-endpoint <url>  DynamoDB endpoint (DynamoDB Local)

missing
  The ESIIDs SMT delivered within the <n> days before the newest day it delivered for any ESIID,
  but not for that newest day: one JSON object per line, oldest last day first,
    {"esiid","lastDay","newestDay"}
  and a summary on stderr. The same check as the daily scheduled function (SmtMissingEsiidDays);
  ask SMT to re-send these ESIIDs' days. Reads a running local mode by default.

  --days <n>            the window in days (the stage's smt.missingDaysWindow)  default ${DEFAULT_MISSING_WINDOW_DAYS}
${STORE_TARGET_USAGE}

common
  -h, --help                 this text
`;

export const command: CliCommand = {
  async run(args, io) {
    const { subcommand, rest } = subcommandOf(args, 'smt', ['parse', 'replay', 'missing'], HELP);
    if (subcommand === 'help') {
      io.out(USAGE);
      return EXIT_OK;
    }
    return { parse, replay, missing }[subcommand](rest, io);
  },
};

async function keyFromFile(path: string | undefined, passphraseEnv: string | undefined, io: CliIo): Promise<PrivateKey[]> {
  if (!path) return [];
  const passphrase = passphraseEnv ? io.env[passphraseEnv] : undefined;
  if (passphraseEnv && passphrase === undefined) throw new UsageError(`environment variable ${passphraseEnv} (--passphrase-env) is not set`, HELP);
  return [await loadPrivateKey({ armoredKey: await readFile(path, 'utf8'), passphrase })];
}

async function parse(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(
    args,
    HELP,
    {
      'private-key': { type: 'string' },
      'passphrase-env': { type: 'string' },
      'time-zone': { type: 'string', default: SMT_TIME_ZONE },
      strict: { type: 'boolean' },
      'decrypt-stall-seconds': { type: 'string', default: String(DECRYPT_STALL_MS / 1000) },
    },
    { count: 1, what: 'parse takes one file' },
  );
  if (!parsed) {
    io.out(USAGE);
    return EXIT_OK;
  }
  const { values, positionals } = parsed;
  const stallSeconds = Number(values['decrypt-stall-seconds']);
  if (!(stallSeconds > 0 && stallSeconds <= 86_400))
    throw new UsageError(
      `--decrypt-stall-seconds ${JSON.stringify(values['decrypt-stall-seconds'])} is not a number of seconds between 0 and 86400`,
      HELP,
    );
  const file = positionals[0]!;
  const timeZone = values['time-zone'];
  try {
    assertTimeZone(timeZone);
  } catch (error) {
    throw new UsageError((error as Error).message, HELP);
  }
  const keys = await keyFromFile(values['private-key'], values['passphrase-env'], io);

  const work = await mkdtemp(join(tmpdir(), 'mb-smt-cli-'));
  try {
    const clearPath = join(work, 'clear');
    let kind: string;
    try {
      const report = await decryptToFile(createReadStream(file), clearPath, {
        keys,
        maxClearBytes: 8 * 2 ** 30,
        allowClear: true,
        stallMs: stallSeconds * 1000,
      });
      kind = report.kind;
    } catch (error) {
      if (error instanceof SmtDecryptError) {
        const hint = keys.length === 0 && error.reason !== 'not-pgp' ? ' (the file is PGP-encrypted: give --private-key)' : '';
        io.err(`smt parse: ${file}: refused (${error.reason}): ${error.message}${hint}\n`);
        return EXIT_FAILED;
      }
      throw error;
    }
    const now = new Date();
    const options = { originId: file, timeZone, now, strict: values.strict === true };
    const maxUnzipped = 8 * 2 ** 30;
    // Pass 1: every part must parse and validate before a single reading of it is printed.
    let parts: PartOutcome[];
    try {
      parts = await checkParts(clearPath, options, maxUnzipped, now);
    } catch (error) {
      if (error instanceof PermanentFailure) {
        io.err(`smt parse: ${file}: refused (${error.reason}): ${error.message}\n`);
        return EXIT_FAILED;
      }
      throw error;
    }
    const accepted = parts.filter((part) => part.reason === undefined);
    for (const part of parts) {
      if (part.reason !== undefined)
        io.err(`smt parse: ${file}${part.entry === undefined ? '' : `#${part.entry}`}: refused (${part.reason}): ${part.message}\n`);
    }
    if (accepted.length === 0) return EXIT_FAILED;
    // Pass 2: print the accepted parts.
    const take = new Set(accepted.map((part) => part.entry));
    for await (const batch of daysOf(clearPath, options, maxUnzipped, (entry) => take.has(entry))) {
      let text = '';
      for (const day of batch) {
        for (const reading of readingsOf(day)) {
          const status = reading.kind === 'interval' ? day.unknownStatuses?.[reading.start.toISOString()] : undefined;
          text += `${JSON.stringify(status === undefined ? readingToJson(reading) : { ...readingToJson(reading), status })}\n`;
        }
      }
      io.out(text);
    }
    const sum = (field: 'days' | 'readings' | 'missing') => accepted.reduce((total, part) => total + part[field], 0);
    const [days, readings, missing] = [sum('days'), sum('readings'), sum('missing')];
    const layout = [...new Set(accepted.map((part) => part.layout).filter(Boolean))].join('+');
    const refused = parts.length - accepted.length;
    if (refused > 0) io.err(`smt parse: ${file}: ${accepted.length} of ${parts.length} part(s) taken, ${refused} refused (above)\n`);
    io.err(`smt parse: ${file}: ${kind}, ${layout || 'no data'}, ${days} day(s), ${readings} reading(s), ${missing} blank interval(s)\n`);
    return EXIT_OK;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function replay(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(
    args,
    HELP,
    {
      bucket: { type: 'string' },
      'readings-table': { type: 'string' },
      'ledger-table': { type: 'string' },
      'pgp-secret': { type: 'string' },
      stage: { type: 'string', default: 'dev' },
      'private-key': { type: 'string' },
      'passphrase-env': { type: 'string' },
      'time-zone': { type: 'string', default: SMT_TIME_ZONE },
      region: { type: 'string' },
      's3-endpoint': { type: 'string' },
      'dynamodb-endpoint': { type: 'string' },
    },
    { count: 1, what: 'replay takes one archive key' },
  );
  if (!parsed) {
    io.out(USAGE);
    return EXIT_OK;
  }
  const { values, positionals } = parsed;
  for (const required of ['bucket', 'readings-table', 'ledger-table'] as const) {
    if (!values[required]) throw new UsageError(`replay needs --${required}`, HELP);
  }
  const region = values.region ?? io.env.AWS_REGION;
  const local = (endpoint: string | undefined) => ({
    ...(region ? { region } : endpoint ? { region: 'us-east-1' } : {}),
    ...(endpoint ? { endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
  });
  // A local endpoint is local mode's s3rver, which takes its own fixed credentials.
  const s3 = values['s3-endpoint']
    ? (await import('../../local/s3-server.ts')).localS3Client(values['s3-endpoint'])
    : new S3Client(region ? { region } : {});
  const dynamodb = new DynamoDBClient(local(values['dynamodb-endpoint']));
  const log = cliLog(io);
  try {
    let keys = await keyFromFile(values['private-key'], values['passphrase-env'], io);
    if (keys.length === 0) {
      const secretId = values['pgp-secret'] ?? `meterbridge/${values.stage}/smt/pgp`;
      const secrets = new SecretsManagerClient(region ? { region } : {});
      try {
        keys = [await loadPrivateKey(pgpKeyFrom(secretId, await readSecretJson(secrets, secretId)))];
      } finally {
        secrets.destroy();
      }
    }
    const wiring = wireSource({
      source: 'smt',
      dynamodb,
      cloudwatch: new CloudWatchClient({ region: region ?? 'us-east-1' }),
      tables: { ledger: values['ledger-table']!, readings: values['readings-table']! },
      ...(values['time-zone'] ? { blockTimeZone: values['time-zone'] } : {}),
      log,
    });
    const outcome = await processArchivedFile(
      {
        archive: new RawArchive({ client: s3, bucket: values.bucket! }),
        ledger: wiring.ledger,
        store: wiring.store(),
        // Metrics of a replay are not sent anywhere (never flushed): the CLI reports the outcome itself.
        metrics: wiring.metrics(),
        log,
        keys: async () => keys,
      },
      positionals[0]!,
      { replay: true },
    );
    io.out(`${JSON.stringify(outcome)}\n`);
    return outcome.status === 'failed' ? EXIT_FAILED : EXIT_OK;
  } finally {
    s3.destroy();
    dynamodb.destroy();
  }
}

async function missing(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(
    args,
    HELP,
    { days: { type: 'string', default: String(DEFAULT_MISSING_WINDOW_DAYS) }, ...STORE_TARGET_OPTIONS },
    { count: 0, what: 'missing takes no positional arguments' },
  );
  if (!parsed) {
    io.out(USAGE);
    return EXIT_OK;
  }
  const { values } = parsed;
  const windowDays = Number(values.days);
  if (!Number.isInteger(windowDays) || windowDays < 1 || windowDays > 3650)
    throw new UsageError(`--days ${JSON.stringify(values.days)} must be a whole number of days from 1 to 3650`, HELP);
  const target = openStoreTarget(values, io.env, HELP);
  try {
    const report = await checkMissingDays({ days: EsiidDays.of(target.store), windowDays });
    for (const entry of report.missing) io.out(`${JSON.stringify({ esiid: entry.esiid, lastDay: entry.lastDay, newestDay: report.newestDay })}\n`);
    io.err(
      report.newestDay === undefined
        ? `no SMT day recorded in ${target.tableName}\n`
        : `${report.missing.length} ESIID(s) missing ${report.newestDay} (delivered within the ${windowDays} days before it); ` +
            `${report.reporting} delivered it; ${report.silentLonger} silent for longer (not listed)\n`,
    );
    return EXIT_OK;
  } catch (error) {
    io.err(`meterbridge smt missing: ${target.explain(error)}\n`);
    return EXIT_FAILED;
  } finally {
    target.close();
  }
}
