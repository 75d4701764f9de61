/**
 * `meterbridge meters list | show`: the meter catalog (lambdas/core/meter-catalog.ts) through the
 * query core, the same code the query API runs. Reads a running local mode by default, a
 * deployed table with --table (bin/operator/store-target.ts).
 */
import { meterToJson } from '../../lambdas/core/query/formats.ts';
import { QueryError, ReadingsQuery } from '../../lambdas/core/query/readings-query.ts';
import { SOURCES, type Source } from '../../shared/reading.ts';
import { openStoreTarget, parseInstant, STORE_TARGET_OPTIONS, STORE_TARGET_USAGE } from '../operator/store-target.ts';
import { CLI_LIMITS } from './readings.ts';
import { EXIT_FAILED, EXIT_OK, UsageError, parseSubcommandLine, subcommandOf, type CliCommand } from './cli.ts';

const HELP = 'meterbridge meters --help';

const USAGE = `Usage:
  meterbridge meters list [--source <iot|smt|ready>] [--since <time>] [options]
  meterbridge meters show --meter <id> [options]

list: every meter the store has readings of, one JSON object per line:
  {"meterId","sources","first","last","channels":[{"channel","units","intervalSeconds","sources","first","last"}]}
  (intervalSeconds 0 = register reads; first/last = identity instants of the first and last reading)
show: one meter, the same object; exit 1 when the meter is unknown.

  --source <s>          only meters with readings from this source (${SOURCES.join(', ')})
  --since <time>        only meters with a reading at or after this (ISO-8601 or YYYY-MM-DD)
${STORE_TARGET_USAGE}
  -h, --help            this text
`;

export const command: CliCommand = {
  async run(args, io) {
    const { subcommand, rest } = subcommandOf(args, 'meters', ['list', 'show'], HELP);
    const parsed =
      subcommand === 'help'
        ? undefined
        : parseSubcommandLine(
            rest,
            HELP,
            { source: { type: 'string' }, since: { type: 'string' }, meter: { type: 'string' }, ...STORE_TARGET_OPTIONS },
            { count: 0, what: `${subcommand} takes no positional arguments` },
          );
    if (!parsed) {
      io.out(USAGE);
      return EXIT_OK;
    }
    const { values } = parsed;
    if (values.source !== undefined && !SOURCES.includes(values.source as Source))
      throw new UsageError(`--source must be one of ${SOURCES.join(', ')}`, HELP);
    if (subcommand === 'show' && !values.meter) throw new UsageError('show needs --meter <id>', HELP);
    const since = values.since !== undefined ? parseInstant(values.since, '--since', HELP) : undefined;
    const target = openStoreTarget(values, io.env, HELP);
    const core = new ReadingsQuery(target.store, CLI_LIMITS);
    try {
      if (subcommand === 'show') {
        const meter = await core.meter(values.meter!);
        if (!meter) {
          io.err(`meterbridge meters: no meter ${values.meter} in ${target.tableName}\n`);
          return EXIT_FAILED;
        }
        io.out(`${JSON.stringify(meterToJson(meter))}\n`);
        return EXIT_OK;
      }
      let count = 0;
      let cursor: string | undefined;
      do {
        const page = await core.listMeters({
          ...(cursor ? { cursor } : {}),
          ...(values.source ? { source: values.source as Source } : {}),
          ...(since ? { since } : {}),
        });
        for (const meter of page.meters) io.out(`${JSON.stringify(meterToJson(meter))}\n`);
        count += page.meters.length;
        cursor = page.nextCursor;
      } while (cursor);
      io.err(`${count} meter(s) in ${target.tableName}${target.endpoint ? ` at ${target.endpoint}` : ''}\n`);
      return EXIT_OK;
    } catch (error) {
      if (error instanceof QueryError) throw new UsageError(error.message, HELP);
      io.err(`meterbridge meters: ${target.explain(error)}\n`);
      return EXIT_FAILED;
    } finally {
      target.close();
    }
  },
};
