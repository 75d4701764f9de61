/**
 * The logging interface core code depends on. Handlers pass a Powertools Logger (which has
 * these methods); tests and the CLI can use consoleLog. Keeping core code on this small
 * interface keeps it free of Lambda-only packages.
 */
export interface Log {
  debug(message: string, extra?: Record<string, unknown>): void;
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
}

function write(level: string, message: string, extra?: Record<string, unknown>): void {
  // One JSON object per line, like the Powertools logger, so local runs read the same as Lambda.
  process.stderr.write(`${JSON.stringify({ level, message, timestamp: new Date().toISOString(), ...extra })}\n`);
}

export const consoleLog: Log = {
  debug: (message, extra) => {
    if (process.env.LOG_LEVEL === 'DEBUG') write('DEBUG', message, extra);
  },
  info: (message, extra) => write('INFO', message, extra),
  warn: (message, extra) => write('WARN', message, extra),
  error: (message, extra) => write('ERROR', message, extra),
};

/** For tests that check behaviour, not log lines, and want quiet output. */
export const silentLog: Log = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
