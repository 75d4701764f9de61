/**
 * The one place that sets up logging and metrics for Lambda handlers: a Powertools Logger
 * (structured JSON) adapted to the small Log interface core code depends on, and the middy
 * middleware every handler is wrapped in. The middleware adds the Lambda context (request id,
 * function name and version, cold start) to every log line of the invocation, gives the handler
 * a metrics buffer of its own in `context.metrics`, and flushes it once when the handler returns
 * or throws, so neither handlers nor core code flush metrics themselves.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import middy, { type MiddlewareObj, type MiddyfiedHandler } from '@middy/core';
import type { Context } from 'aws-lambda';
import type { Log } from '../shared/log.ts';
import type { Metrics } from './core/metrics.ts';
import type { SourceWiring } from './core/wiring.ts';

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

/** The Lambda context a handler behind `observability` receives: with its invocation's metrics buffer. */
export interface InvocationContext extends Context {
  metrics: Metrics;
}

/** Lambda context on every log line, one metrics buffer per invocation, flushed at the end whatever happens. */
export function observability<TEvent, TResult>(
  logger: Logger,
  wiring: Pick<SourceWiring, 'metrics'>,
): MiddlewareObj<TEvent, TResult, Error, InvocationContext> {
  const flush = async (request: { context: InvocationContext }) => {
    // Metrics.flush never throws: CloudWatch being down must not fail work that was done.
    await request.context.metrics?.flush();
  };
  return {
    name: 'meterbridge-observability',
    before: (request) => {
      logger.addContext(request.context);
      request.context.metrics = wiring.metrics();
    },
    after: flush,
    onError: flush,
  };
}

/** A handler wrapped in `observability`: what every Lambda entry exports. */
export function lambdaHandler<TEvent, TResult>(
  logger: Logger,
  wiring: Pick<SourceWiring, 'metrics'>,
  work: (event: TEvent, context: InvocationContext) => Promise<TResult>,
): MiddyfiedHandler<TEvent, TResult, Error, Context> {
  const handler = middy<TEvent, TResult, Error, InvocationContext>()
    .use(observability<TEvent, TResult>(logger, wiring))
    .handler((event, context) => work(event, context));
  // Lambda calls it with a plain Context; the middleware has added `metrics` before `work` runs.
  return handler as unknown as MiddyfiedHandler<TEvent, TResult, Error, Context>;
}

/**
 * A handler that publishes no metrics of its own (the query API: API Gateway already counts its
 * requests, errors and latency): Lambda context on every log line, like every other handler.
 */
export function loggedHandler<TEvent, TResult>(
  logger: Logger,
  work: (event: TEvent, context: Context) => Promise<TResult>,
): MiddyfiedHandler<TEvent, TResult, Error, Context> {
  return middy<TEvent, TResult, Error, Context>()
    .use({ name: 'meterbridge-lambda-context', before: (request) => logger.addContext(request.context) })
    .handler((event, context) => work(event, context));
}
