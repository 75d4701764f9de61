/**
 * The one place that sets up logging for Lambda handlers: a Powertools Logger (structured JSON,
 * Lambda context on every line) adapted to the small Log interface core code depends on.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import type { Log } from '../shared/log.ts';

export function createLogger(serviceName: string): { logger: Logger; log: Log } {
  const logger = new Logger({ serviceName });
  const log: Log = {
    debug: (message, extra) => logger.debug(message, extra ?? {}),
    info: (message, extra) => logger.info(message, extra ?? {}),
    warn: (message, extra) => logger.warn(message, extra ?? {}),
    error: (message, extra) => logger.error(message, extra ?? {}),
  };
  return { logger, log };
}
