#!/usr/bin/env -S npx tsx
/**
 * The operator CLI: `meterbridge <command> ...` (or `npx tsx bin/meterbridge.ts <command> ...`).
 *
 * Each command lives in `bin/commands/<name>.ts` and exports `command: CliCommand`; this file only
 * dispatches. Commands are imported lazily so `--help` does not load every AWS SDK client.
 *
 * Exit codes: 0 done, 1 the operation failed, 2 the command line was wrong (usage).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, type CliCommand, type CliIo } from './commands/cli.ts';

interface CommandEntry {
  summary: string;
  load(): Promise<CliCommand>;
}

const COMMANDS: Record<string, CommandEntry> = {
  device: {
    summary: 'provision and revoke gateway certificates on AWS IoT Core',
    load: async () => (await import('./commands/device.ts')).command,
  },
  local: {
    summary: 'run the whole pipeline on this machine against local stand-ins (npm start)',
    load: async () => (await import('./commands/local.ts')).command,
  },
  meters: {
    summary: 'list the meters the store has readings of, with channels, sources and time span',
    load: async () => (await import('./commands/meters.ts')).command,
  },
  readings: {
    summary: 'query stored readings as JSON lines, CSV or Green Button (a running local mode by default, or a deployed table)',
    load: async () => (await import('./commands/readings.ts')).command,
  },
  ready: {
    summary: 'subscribe, list and unsubscribe Kamstrup READY webhooks (OAuth2 client credentials)',
    load: async () => (await import('./commands/ready.ts')).command,
  },
  smt: {
    summary: 'parse a Smart Meter Texas file (decrypt, unzip, print readings) or replay an archived one',
    load: async () => (await import('./commands/smt.ts')).command,
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, entry]) => `  ${name.padEnd(width)}  ${entry.summary}`);
  return [
    'Usage: meterbridge <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    "Run 'meterbridge <command> --help' for a command's options.",
    'AWS credentials and region come from the usual AWS environment (AWS_PROFILE, AWS_REGION, ...).',
    '',
  ].join('\n');
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [first, ...rest] = argv;
  try {
    if (first === undefined) throw new UsageError('no command given');
    if (first === '--help' || first === '-h' || first === 'help') {
      io.out(usage());
      return EXIT_OK;
    }
    if (first.startsWith('-')) throw new UsageError(`unknown option ${first}`);
    const entry = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
    if (!entry) throw new UsageError(`unknown command ${JSON.stringify(first)} (commands: ${Object.keys(COMMANDS).join(', ')})`);
    const command = await entry.load();
    return await command.run(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`meterbridge: ${error.message}\nRun '${error.helpCommand}' for usage.\n`);
      return EXIT_USAGE;
    }
    io.err(`meterbridge: ${error instanceof Error ? error.message : String(error)}\n`);
    if (process.env.MB_DEBUG && error instanceof Error && error.stack) io.err(`${error.stack}\n`);
    return EXIT_FAILED;
  }
}

export const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
};

// Run only as the entry point (directly, through tsx, or through the npm bin symlink), not when imported.
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  void main(process.argv.slice(2), processIo).then((code) => {
    process.exitCode = code;
  });
}
