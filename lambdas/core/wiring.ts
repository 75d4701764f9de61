/**
 * The one wiring of a source's shared parts: the reading store, the ledger and a fresh metrics
 * buffer per invocation, with the stage and source dimensions every metric carries. The Lambda
 * entries (from their environment, `wiringFromEnv`), local mode, the CLI and the tests (on the
 * clients they bring, `wireSource`) all build them here, so lock times, dimensions and table
 * settings cannot drift between them. Lock times are per unit kind (work-units.ts), not per caller.
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import type { Log } from '../../shared/log.ts';
import { requiredEnv } from './env.ts';
import { Ledger } from './ledger.ts';
import type { MetricSource } from './metric-catalog.ts';
import { Metrics } from './metrics.ts';
import { ReadingStore } from './reading-store.ts';

const ignore = (): void => undefined;

/**
 * The logger of the SDK clients the wiring builds: it logs nothing, like the SDK's default
 * NoOpLogger, but has no `info` and no `error`. The SDK's logger middleware calls
 * `logger?.info?.({ input: filter(input), output: filter(output) })` after every request (and
 * `logger?.error?.(...)` on every failure, a failed write condition included), and the filter walks
 * every attribute value of the request: for a 96-slot block write, ~8 % of the IoT ingest's CPU
 * spent on a line the NoOpLogger then drops. With the methods absent the filter never runs.
 * Nothing the SDK logged before is lost: it logged nothing.
 */
// A cast, not a Logger: leaving `info` and `error` out is the point (the middleware tests for them).
export const QUIET_SDK_LOGGER = { trace: ignore, debug: ignore, warn: ignore } as unknown as NonNullable<DynamoDBClientConfig['logger']>;

/** The stage a function runs in when STAGE is not set (a function the stack did not create). */
export const DEFAULT_STAGE = 'dev';

export interface SourceWiringOptions {
  source: MetricSource;
  dynamodb: DynamoDBClient;
  cloudwatch: CloudWatchClient;
  tables: { readings?: string; ledger: string };
  /** The store's block time zone. @default 'UTC' (the store's own default) */
  blockTimeZone?: string;
  /** The Stage dimension of every metric. Omitted: metrics carry only Source (tests). */
  stage?: string;
  log: Log;
  /** Source of "now" for the ledger and metrics (tests). */
  clock?: () => Date;
}

export interface SourceWiring {
  source: MetricSource;
  ledger: Ledger;
  /** The reading store; throws when the source was wired without a readings table (the SMT fetch step). */
  store(): ReadingStore;
  /** A metrics buffer for one invocation; whoever runs the invocation flushes it once at the end. */
  metrics(): Metrics;
}

export function wireSource(options: SourceWiringOptions): SourceWiring {
  const { source, dynamodb, cloudwatch, tables, log, clock } = options;
  const ledger = new Ledger({ client: dynamodb, tableName: tables.ledger, ...(clock ? { clock } : {}) });
  let store: ReadingStore | undefined;
  const defaultDimensions = options.stage === undefined ? { Source: source } : { Stage: options.stage, Source: source };
  return {
    source,
    ledger,
    store() {
      if (tables.readings === undefined) throw new Error(`the ${source} wiring has no readings table`);
      store ??= new ReadingStore({
        client: dynamodb,
        tableName: tables.readings,
        ...(options.blockTimeZone ? { blockTimeZone: options.blockTimeZone } : {}),
      });
      return store;
    },
    metrics: () => new Metrics({ client: cloudwatch, defaultDimensions, log, ...(clock ? { clock } : {}) }),
  };
}

/**
 * A Lambda entry's wiring from the environment the stack gives it: LEDGER_TABLE always,
 * READINGS_TABLE and BLOCK_TIME_ZONE for a function that stores, STAGE for the metrics.
 */
export function wiringFromEnv(
  source: MetricSource,
  log: Log,
  options: { stores: boolean },
): SourceWiring & { dynamodb: DynamoDBClient; ledgerTable: string } {
  const dynamodb = new DynamoDBClient({ logger: QUIET_SDK_LOGGER });
  const ledgerTable = requiredEnv('LEDGER_TABLE');
  const wiring = wireSource({
    source,
    dynamodb,
    cloudwatch: new CloudWatchClient({}),
    tables: { ledger: ledgerTable, ...(options.stores ? { readings: requiredEnv('READINGS_TABLE') } : {}) },
    ...(options.stores ? { blockTimeZone: requiredEnv('BLOCK_TIME_ZONE') } : {}),
    stage: process.env.STAGE ?? DEFAULT_STAGE,
    log,
  });
  return { ...wiring, dynamodb, ledgerTable };
}

/**
 * Runs one invocation's work with a metrics buffer of its own and flushes it once at the end,
 * whatever happens: what the Lambda middleware (lambdas/observability.ts) does, for callers that
 * are not Lambda handlers (local mode's queues, the CLI, tests).
 */
export async function withInvocationMetrics<T>(wiring: Pick<SourceWiring, 'metrics'>, work: (metrics: Metrics) => Promise<T>): Promise<T> {
  const metrics = wiring.metrics();
  try {
    return await work(metrics);
  } finally {
    await metrics.flush();
  }
}
