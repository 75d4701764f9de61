/**
 * The daily SMT missing-days check (issue 18): an EventBridge schedule (smt.missingDaysSchedule)
 * invokes a function that reads every ESIID's newest delivered day from the readings table, counts
 * the ESIIDs that delivered within smt.missingDaysWindow days but not the newest day others got,
 * publishes SmtMissingEsiidDays (alarmed from the metric catalog by lib/operations) and logs the
 * list for a request to SMT (lambdas/core/smt/esiid-days.ts).
 *
 * Least privilege: dynamodb:Query on the readings table (the check's only read) and PutMetricData
 * in the Meterbridge namespace; no ledger, no writes.
 */
import { fileURLToPath } from 'node:url';
import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import { Construct } from 'constructs';
import { MeterbridgeFunction } from './meterbridge-function.ts';
import type { StageSettings } from './settings.ts';
import type { SmtSettings } from './smt-settings.ts';
import type { ReadingStorage } from './storage.ts';

const ENTRY = fileURLToPath(new URL('../lambdas/smt-missing-days.ts', import.meta.url));

export interface SmtMissingDaysProps {
  readonly settings: StageSettings;
  readonly storage: ReadingStorage;
  readonly smt: SmtSettings;
}

export class SmtMissingDays extends Construct {
  public readonly function: MeterbridgeFunction;
  /** Daily; disabled while `smt.enabled` is false, like the fetch schedule. */
  public readonly schedule: events.Rule;

  constructor(scope: Construct, id: string, props: SmtMissingDaysProps) {
    super(scope, id);
    const { settings, storage, smt } = props;
    this.function = new MeterbridgeFunction(this, 'Function', {
      entry: ENTRY,
      settings,
      serviceName: 'smt-missing-days',
      description: `meterbridge ${settings.stage}: daily check for ESIIDs Smart Meter Texas stopped delivering`,
      // 16 paged Queries of ~60-byte items: seconds even for a large portfolio.
      timeout: Duration.seconds(60),
      environment: {
        READINGS_TABLE: storage.readingsTable.tableName,
        SMT_MISSING_WINDOW_DAYS: String(smt.missingDaysWindow),
      },
    });
    storage.grantStoreRead(this.function);
    this.function.grantPutMetrics();

    this.schedule = new events.Rule(this, 'Schedule', {
      description: `meterbridge ${settings.stage}: check for ESIIDs missing the newest SMT day`,
      schedule: events.Schedule.expression(smt.missingDaysSchedule),
      enabled: smt.enabled,
      // The check only reads: a retry after a failed attempt is harmless.
      targets: [new targets.LambdaFunction(this.function, { retryAttempts: 2 })],
    });
  }
}
