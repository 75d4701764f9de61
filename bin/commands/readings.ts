/**
 * `meterbridge readings query`: stored readings of one meter, as JSON lines, CSV or Green Button.
 * `meterbridge readings sql "<query>"`: SQL over the local data lake's Parquet files with DuckDB,
 * the stand-in for Athena (local/lake.ts), with the readings as the table `readings`.
 *
 * By default it reads the store of a running local mode (`npm start`); with `--table` a deployed
 * table (bin/operator/store-target.ts). The work is the query core (lambdas/core/query/), the same
 * code the query API runs: every channel the meter catalog knows for the meter, page by page.
 */
import { readingToJson, type Reading } from '../../shared/reading.ts';
import { readingsEspi } from '../../lambdas/core/query/espi.ts';
import { csvRow, CSV_HEADER, FORMATS, type Format } from '../../lambdas/core/query/formats.ts';
import { API_LIMITS, QueryError, ReadingsQuery, type QueryLimits } from '../../lambdas/core/query/readings-query.ts';
import { openStoreTarget, parseInstant, STORE_TARGET_OPTIONS, STORE_TARGET_USAGE } from '../operator/store-target.ts';
import { resolve } from 'node:path';
import { LOCAL_STATE_DIR } from '../../local/defaults.ts';
import { formatTable, localLakeFiles, queryLake, type SqlResult } from '../../local/lake.ts';
import { EXIT_FAILED, EXIT_OK, UsageError, parseSubcommandLine, subcommandOf, type CliCommand, type CliIo } from './cli.ts';

const HELP = 'meterbridge readings --help';
const DAY_MS = 86_400_000;
/** The CLI pages through the core itself, so it allows longer ranges than the API (a year and a day). */
export const CLI_LIMITS: QueryLimits = {
  ...API_LIMITS,
  defaultRangeMs: 7 * DAY_MS,
  maxRangeMs: 367 * DAY_MS,
  maxReadingPage: API_LIMITS.maxReadingPage,
  defaultReadingPage: API_LIMITS.maxReadingPage,
};

const USAGE = `Usage:
  meterbridge readings query --meter <id> [options]
  meterbridge readings sql "<query>" [--state-dir <dir>] [--format table|csv|json]

Prints the stored readings of one meter, oldest first within each channel, on every channel the
meter catalog knows for it (see meterbridge meters list). A summary goes to stderr. Exit 1 when
the store cannot be read.

  --meter <id>          meter id (ESIID without apostrophe, READY serial, gateway meter id)  required
  --channel <name>      one channel, e.g. energy.active.import        default: every channel of the meter
  --from <time>         ISO-8601 instant or YYYY-MM-DD (UTC midnight)  default: 7 days before --to
  --to <time>           exclusive; same forms                         default: tomorrow, UTC midnight
                        at most ${CLI_LIMITS.maxRangeMs / DAY_MS} days
  --format <f>          json: one JSON object per line
                          {"meterId","channel","kind","start","end" | "at","value","unit","quality","revision","source","originId"}
                        csv: header, then meterId,channel,start,end,value,unit,quality,revision,source
                          (a register read has its time in start and an empty end)
                        espi: a Green Button (NAESB ESPI) Atom feed                default json
${STORE_TARGET_USAGE}
  -h, --help            this text

sql runs SQL with DuckDB (the local stand-in for Athena) over the data lake local mode writes:
every changed reading as Parquet under <state-dir>/s3/, readable after local mode stopped.
  readings              every row: meter_id, channel, kind, interval_start, interval_end, value,
                        unit, quality, revision, origin_id, block_version, ingested_at, day, source
                        (superseded revisions stay; a retried delivery can repeat a row)
  readings_latest       the latest revision per interval (what the store holds)
  e.g. meterbridge readings sql "SELECT source, count(*), sum(value) FROM readings_latest GROUP BY source"
  --state-dir <dir>     local mode's state folder                     default ${LOCAL_STATE_DIR}/
  --format <f>          table, csv (header, then rows) or json (one object per line)  default table
`;

export const command: CliCommand = {
  async run(args, io) {
    const { subcommand, rest } = subcommandOf(args, 'readings', ['query', 'sql'], HELP);
    if (subcommand === 'help') {
      io.out(USAGE);
      return EXIT_OK;
    }
    if (subcommand === 'sql') return sql(rest, io);
    return query(rest, io);
  },
};

async function query(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(
    args,
    HELP,
    {
      meter: { type: 'string' },
      channel: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      format: { type: 'string', default: 'json' },
      ...STORE_TARGET_OPTIONS,
    },
    { count: 0, what: 'query takes no positional arguments' },
  );
  if (!parsed) {
    io.out(USAGE);
    return EXIT_OK;
  }
  const { values } = parsed;
  if (!values.meter) throw new UsageError('query needs --meter <id>', HELP);
  const format = values.format as Format;
  if (!FORMATS.includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(', ')}`, HELP);
  const to = values.to ? parseInstant(values.to, '--to', HELP) : new Date(Math.floor(Date.now() / DAY_MS + 1) * DAY_MS);
  const from = values.from ? parseInstant(values.from, '--from', HELP) : new Date(to.getTime() - CLI_LIMITS.defaultRangeMs);
  if (from >= to) throw new UsageError(`--from (${from.toISOString()}) must be before --to (${to.toISOString()})`, HELP);
  if (to.getTime() - from.getTime() > CLI_LIMITS.maxRangeMs)
    throw new UsageError(`--from to --to spans more than ${CLI_LIMITS.maxRangeMs / DAY_MS} days`, HELP);

  const target = openStoreTarget(values, io.env, HELP);
  const core = new ReadingsQuery(target.store, CLI_LIMITS);
  try {
    let count = 0;
    const all: Reading[] = [];
    let cursor: string | undefined;
    if (format === 'csv') io.out(`${CSV_HEADER}\r\n`);
    do {
      const page = await core.readings({
        meterId: values.meter,
        ...(values.channel ? { channel: values.channel } : {}),
        from,
        to,
        ...(cursor ? { cursor } : {}),
      });
      count += page.readings.length;
      if (format === 'json') for (const reading of page.readings) io.out(`${JSON.stringify(readingToJson(reading))}\n`);
      if (format === 'csv') for (const reading of page.readings) io.out(`${csvRow(reading)}\r\n`);
      if (format === 'espi') all.push(...page.readings);
      cursor = page.nextCursor;
    } while (cursor);
    if (format === 'espi') io.out(readingsEspi(values.meter, all, { timeZone: target.timeZone, generatedAt: new Date() }));
    io.err(
      `${count} reading(s) of ${values.meter} in [${from.toISOString()}, ${to.toISOString()}) from ${target.tableName}${target.endpoint ? ` at ${target.endpoint}` : ''}\n`,
    );
    return EXIT_OK;
  } catch (error) {
    if (error instanceof QueryError) throw new UsageError(error.message, HELP);
    io.err(`meterbridge readings: ${target.explain(error)}\n`);
    return EXIT_FAILED;
  } finally {
    target.close();
  }
}

const SQL_FORMATS = ['table', 'csv', 'json'] as const;

async function sql(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(
    args,
    HELP,
    { 'state-dir': { type: 'string', default: LOCAL_STATE_DIR }, format: { type: 'string', default: 'table' } },
    { count: 1, what: 'sql needs one query, in quotes' },
  );
  if (!parsed) {
    io.out(USAGE);
    return EXIT_OK;
  }
  const { values, positionals } = parsed;
  const format = values.format as (typeof SQL_FORMATS)[number];
  if (!SQL_FORMATS.includes(format)) throw new UsageError(`--format must be one of ${SQL_FORMATS.join(', ')}`, HELP);
  const stateDir = resolve(values['state-dir']);
  const files = localLakeFiles(stateDir);
  let result: SqlResult;
  try {
    result = await queryLake(files, positionals[0]!);
  } catch (error) {
    io.err(`meterbridge readings sql: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_FAILED;
  }
  if (format === 'table') io.out(`${formatTable(result)}\n`);
  if (format === 'csv') io.out(`${[result.columns, ...result.rows].map((row) => row.map(csvCell).join(',')).join('\r\n')}\r\n`);
  if (format === 'json')
    for (const row of result.rows) io.out(`${JSON.stringify(Object.fromEntries(result.columns.map((name, index) => [name, row[index]])))}\n`);
  io.err(`${result.rows.length} row(s) from ${files.length} Parquet file(s) of the lake under ${stateDir}\n`);
  return EXIT_OK;
}

function csvCell(value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
