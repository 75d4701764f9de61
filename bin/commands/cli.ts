/** What the CLI entry (bin/meterbridge.ts) and its commands share; kept apart so commands never import the entry. */
import { parseArgs } from 'node:util';
import type { Log } from '../../shared/log.ts';

/** Where a command writes; the process streams in real use, buffers in tests. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
}

export interface CliCommand {
  /** Runs with the arguments after the command name; resolves to the exit code. */
  run(args: string[], io: CliIo): Promise<number>;
}

/** A wrong command line: printed with a pointer to --help, exit code 2. */
export class UsageError extends Error {
  /** The help command to point at, e.g. `meterbridge device --help`. */
  readonly helpCommand: string;
  constructor(message: string, helpCommand = 'meterbridge --help') {
    super(message);
    this.name = 'UsageError';
    this.helpCommand = helpCommand;
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

type Options = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

/** node:util parseArgs (strict, positionals allowed), with its errors turned into UsageErrors pointing at `help`. */
export function parseCommandLine<T extends Options>(args: string[], help: string, options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    // parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for unknown options, missing values, ...
    const code = typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : '';
    if (code.startsWith('ERR_PARSE_ARGS')) throw new UsageError((error as Error).message, help);
    throw error;
  }
}

const HELP_WORDS = new Set(['--help', '-h', 'help']);

/**
 * The subcommand a command line starts with, and the arguments after it: `help` for -h, --help or
 * `help` (the command prints its usage); a UsageError when it is missing or not one of `known`.
 */
export function subcommandOf<S extends string>(
  args: string[],
  command: string,
  known: readonly S[],
  help: string,
): { subcommand: S | 'help'; rest: string[] } {
  const [first, ...rest] = args;
  const expected = `${known.slice(0, -1).join(', ')}${known.length > 1 ? ' or ' : ''}${known.at(-1) ?? ''}`;
  if (first === undefined) throw new UsageError(`missing subcommand: ${expected}`, help);
  if (HELP_WORDS.has(first)) return { subcommand: 'help', rest };
  if (!(known as readonly string[]).includes(first))
    throw new UsageError(`unknown ${command} subcommand ${JSON.stringify(first)} (expected ${expected})`, help);
  return { subcommand: first as S, rest };
}

/**
 * parseCommandLine with every command's -h/--help and a check of the number of positionals
 * (`what` names them in the error). `undefined` when help was asked: the caller prints its usage.
 */
export function parseSubcommandLine<T extends Options>(args: string[], help: string, options: T, positionals: { count: number; what: string }) {
  const parsed = parseCommandLine(args, help, { ...options, help: { type: 'boolean', short: 'h' } });
  // Inside this generic function parseArgs' value type is not resolved yet; `help` is the option added above.
  if ((parsed.values as { help?: boolean }).help) return undefined;
  if (parsed.positionals.length !== positionals.count) {
    const got = parsed.positionals.length > 0 ? `, got: ${parsed.positionals.join(' ')}` : '';
    throw new UsageError(`${positionals.what}${got}`, help);
  }
  return parsed;
}

/** Progress and warnings to stderr as plain lines; stdout keeps only the result. */
export function cliLog(io: CliIo): Log {
  const line = (level: string) => (message: string, extra?: Record<string, unknown>) => {
    const details = extra
      ? Object.entries(extra)
          .map(([k, v]) => `${k}=${String(v)}`)
          .join(' ')
      : '';
    io.err(`${level}${message}${details ? ` (${details})` : ''}\n`);
  };
  return { debug: () => {}, info: line(''), warn: line('warning: '), error: line('error: ') };
}
