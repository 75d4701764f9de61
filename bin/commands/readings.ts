/**
 * `meterbridge readings query`: stored readings of one meter as JSON lines.
 *
 * By default it reads the store of a running local mode (`npm start`: DynamoDB Local on its
 * fixed port, local table names); with `--table` it reads a deployed table with the usual AWS
 * credentials. The work is ReadingStore.query, the same code the handlers write through.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CHANNELS, readingToJson, type Reading } from '../../shared/reading.ts';
import { readyChannels } from '../../lambdas/core/ready/delivery.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { assertTimeZone } from '../../lambdas/core/time.ts';
import { LOCAL_BLOCK_TIME_ZONE, LOCAL_PORTS, LOCAL_TABLES } from '../../local/defaults.ts';
import { EXIT_FAILED, EXIT_OK, UsageError, parseCommandLine, type CliCommand, type CliIo } from './cli.ts';

const HELP = 'meterbridge readings --help';
const DAY_MS = 86_400_000;
/** A block's key names its channel, so without --channel every channel a source can write is asked. */
const KNOWN_CHANNELS = [...new Set<string>([...Object.values(CHANNELS), ...readyChannels()])];

const USAGE = `Usage:
  meterbridge readings query --meter <id> [options]

Prints the stored readings of one meter, one JSON object per line, oldest first:
  {"meterId","channel","kind","start","end" | "at","value","unit","quality","revision","source","originId"}
A summary goes to stderr. Exit 1 when the store cannot be read.

  --meter <id>          meter id (ESIID without apostrophe, READY serial, gateway meter id)  required
  --channel <name>      one channel, e.g. energy.active.import        default: every known channel
  --from <time>         ISO-8601 instant or YYYY-MM-DD (UTC midnight)  default: 7 days before --to
  --to <time>           exclusive; same forms                         default: tomorrow, UTC midnight
  --table <name>        a deployed readings table (AWS credentials and region from the environment)
                        default: the local mode's ${LOCAL_TABLES.readings}
  --endpoint <url>      DynamoDB endpoint     default: http://127.0.0.1:${LOCAL_PORTS.dynamodb} without --table
  --time-zone <tz>      the stage's blockTimeZone                     default ${LOCAL_BLOCK_TIME_ZONE}
  --region <region>     AWS region with --table                        default $AWS_REGION
  -h, --help            this text

Known channels: ${KNOWN_CHANNELS.join(', ')}
`;

export const command: CliCommand = {
  async run(args, io) {
    const [subcommand, ...rest] = args;
    if (subcommand === undefined) throw new UsageError('missing subcommand: query', HELP);
    if (subcommand === '--help' || subcommand === '-h' || subcommand === 'help') {
      io.out(USAGE);
      return EXIT_OK;
    }
    if (subcommand !== 'query') throw new UsageError(`unknown readings subcommand ${JSON.stringify(subcommand)} (expected query)`, HELP);
    return query(rest, io);
  },
};

async function query(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(args, HELP, {
    meter: { type: 'string' },
    channel: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    table: { type: 'string' },
    endpoint: { type: 'string' },
    'time-zone': { type: 'string', default: LOCAL_BLOCK_TIME_ZONE },
    region: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.out(USAGE);
    return EXIT_OK;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`, HELP);
  if (!values.meter) throw new UsageError('query needs --meter <id>', HELP);
  const timeZone = values['time-zone'];
  try {
    assertTimeZone(timeZone);
  } catch (error) {
    throw new UsageError((error as Error).message, HELP);
  }
  const to = values.to ? parseInstant(values.to, '--to') : new Date(Math.floor(Date.now() / DAY_MS + 1) * DAY_MS);
  const from = values.from ? parseInstant(values.from, '--from') : new Date(to.getTime() - 7 * DAY_MS);
  if (from >= to) throw new UsageError(`--from (${from.toISOString()}) must be before --to (${to.toISOString()})`, HELP);

  const local = values.table === undefined;
  const endpoint = values.endpoint ?? (local ? io.env.MB_DYNAMODB_ENDPOINT ?? `http://127.0.0.1:${LOCAL_PORTS.dynamodb}` : undefined);
  // DynamoDB Local (any loopback endpoint) accepts any credentials; a deployed table uses the environment's.
  const loopback = endpoint !== undefined && /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(endpoint);
  const region = values.region ?? io.env.AWS_REGION ?? (loopback ? 'us-east-1' : undefined);
  const client = new DynamoDBClient({
    ...(endpoint ? { endpoint } : {}),
    ...(region ? { region } : {}),
    ...(loopback ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
    maxAttempts: loopback ? 1 : 3,
  });
  const tableName = values.table ?? LOCAL_TABLES.readings;
  const store = new ReadingStore({ client, tableName, blockTimeZone: timeZone });
  const channels = values.channel ? [values.channel] : KNOWN_CHANNELS;
  try {
    const readings: Reading[] = [];
    for (const channel of channels) readings.push(...(await store.query({ meterId: values.meter, channel, from, to })));
    for (const reading of readings) io.out(`${JSON.stringify(readingToJson(reading))}\n`);
    io.err(`${readings.length} reading(s) of ${values.meter} in [${from.toISOString()}, ${to.toISOString()}) from ${tableName}${endpoint ? ` at ${endpoint}` : ''}\n`);
    return EXIT_OK;
  } catch (error) {
    const name = (error as Error).name;
    const hint =
      name === 'ResourceNotFoundException'
        ? ` (no table ${tableName}${local ? ': is local mode running? start it with npm start' : ''})`
        : local && /ECONNREFUSED/.test(String((error as Error).message) + String((error as { code?: string }).code ?? ''))
          ? ` (nothing answers at ${endpoint}: start local mode with npm start, or pass --table for a deployed table)`
          : '';
    io.err(`meterbridge readings: cannot read the store: ${(error as Error).message}${hint}\n`);
    return EXIT_FAILED;
  } finally {
    client.destroy();
  }
}

function parseInstant(text: string, flag: string): Date {
  const instant = /^\d{4}-\d{2}-\d{2}$/.test(text) ? new Date(`${text}T00:00:00Z`) : new Date(text);
  if (Number.isNaN(instant.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(text)) {
    throw new UsageError(`${flag} ${JSON.stringify(text)} is not an ISO-8601 instant or a YYYY-MM-DD date`, HELP);
  }
  return instant;
}
