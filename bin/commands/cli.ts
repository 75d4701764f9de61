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
