/**
 * Lambda entry of the daily SMT missing-days check: an EventBridge schedule invokes it once a day
 * after SMT's usual delivery (lambdas/core/smt/esiid-days.ts). Thin: the clients and the metrics
 * wiring are built once per container; the middleware flushes SmtMissingEsiidDays.
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { requiredEnv } from './core/env.ts';
import { Metrics } from './core/metrics.ts';
import { checkMissingDays, EsiidDays } from './core/smt/esiid-days.ts';
import { DEFAULT_STAGE } from './core/wiring.ts';
import { createLogger, lambdaHandler } from './observability.ts';

const { logger, log } = createLogger('smt-missing-days');
const days = new EsiidDays(new DynamoDBClient({}), requiredEnv('READINGS_TABLE'));
/** The stage's `smt.missingDaysWindow`. */
const windowDays = Number(requiredEnv('SMT_MISSING_WINDOW_DAYS'));
const cloudwatch = new CloudWatchClient({});
const defaultDimensions = { Stage: process.env.STAGE ?? DEFAULT_STAGE, Source: 'smt' };
const wiring = { metrics: () => new Metrics({ client: cloudwatch, defaultDimensions, log }) };

/** What the invocation answers (the list itself is in the log, in parts). */
export interface MissingDaysOutcome {
  newestDay: string | null;
  missing: number;
  reporting: number;
}

export const handler = lambdaHandler<unknown, MissingDaysOutcome>(logger, wiring, async (_event, { metrics }) => {
  const report = await checkMissingDays({ days, windowDays, metrics, log });
  return { newestDay: report.newestDay ?? null, missing: report.missing.length, reporting: report.reporting };
});
