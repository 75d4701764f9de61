/** What the CLI entry (bin/meterbridge.ts) and its commands share; kept apart so commands never import the entry. */

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

