/**
 * The alarm set of one stage: built from the metric catalog (every `watch: 'alarm'` metric of
 * every ingestion path present) and from the AWS resources each path exposes (queues, dead-letter
 * queues, functions, IoT topic rules), plus the two tables and one composite alarm over all.
 *
 * Every alarm has a stable, readable name (`meterbridge-<stage>-...`, the runbook in docs/runbook.md is
 * keyed by it), a one-line `why` defending its threshold and missing-data treatment (also its
 * description, so it arrives with the notification), and notifies the alarm topic on ALARM and OK.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { MetricAlarmSpec, MetricName, MetricSource } from '../../lambdas/core/metric-catalog.ts';
import type { AlarmTopic } from '../alarm-topic.ts';
import type { IngestionMonitoring, MonitoredAlarm } from '../monitoring.ts';
import { DEFAULT_QUEUE_AGE_MINUTES, type StageSettings } from '../settings.ts';
import type { ReadingStorage } from '../storage.ts';
import { catalogSpec, customAlarmMetric, FIVE_MINUTES, insightsSum, kebab, metricsOfSource } from './metric-refs.ts';

/** The metric the freshness alarms watch: a reading newly stored is the proof that data flows. */
export const FRESHNESS_METRIC: MetricName = 'ReadingsStored';

/** Metrics Insights alarms see only the last 3 hours of data. */
const INSIGHTS_WINDOW_MINUTES = 180;

export type AlarmKind =
  | 'freshness'
  | 'metric'
  | 'dead-letter-queue'
  | 'queue-age'
  | 'lambda-errors'
  | 'lambda-throttles'
  | 'rule-failures'
  | 'rule-error-action-failures'
  | 'rule-throttled'
  | 'table-throttles'
  | 'table-system-errors';

export interface OperationsAlarm {
  /** Stable name, `meterbridge-<stage>-...`; the runbook section is keyed by it. */
  readonly name: string;
  /** One line defending the threshold and the missing-data treatment. */
  readonly why: string;
  readonly kind: AlarmKind;
  readonly alarm: cloudwatch.Alarm;
  /** The ingestion path it belongs to; undefined for the shared tables. */
  readonly source?: MetricSource;
  /** The catalog metric it watches, if it watches one. */
  readonly metric?: MetricName;
}

export interface OperationsAlarmsProps {
  readonly settings: StageSettings;
  readonly storage: ReadingStorage;
  readonly alarmTopic: AlarmTopic;
  readonly ingestion: readonly IngestionMonitoring[];
  /**
   * Alarms of stage-wide parts that are no ingestion path (the readings feed), made by their own
   * constructs with a literal name `meterbridge-<stage>-...`: they join the composite, the status
   * widget and the runbook check like the paths' own alarms.
   */
  readonly stageAlarms?: readonly MonitoredAlarm[];
}

export class OperationsAlarms extends Construct {
  /** Every metric alarm, in creation order (per source, then the tables). */
  public readonly alarms: OperationsAlarm[] = [];
  /** Alarms the ingestion paths made themselves (`monitoring.alarms`); the composite watches them too. */
  public readonly pathAlarms: Array<{ name: string; why: string; source?: MetricSource; alarm: cloudwatch.Alarm }> = [];
  /** ANY of `alarms` and `pathAlarms` in ALARM. */
  public readonly pipelineUnhealthy: cloudwatch.CompositeAlarm;
  public readonly pipelineUnhealthyName: string;
  public readonly pipelineUnhealthyWhy =
    'any meterbridge alarm of this stage is in ALARM: one signal to page on, the member alarms say what and where';

  private readonly settings: StageSettings;
  private readonly topic: AlarmTopic;
  private readonly freshnessBySource = new Map<MetricSource, OperationsAlarm>();

  constructor(scope: Construct, id: string, props: OperationsAlarmsProps) {
    super(scope, id);
    this.settings = props.settings;
    this.topic = props.alarmTopic;

    const sources = props.ingestion.map((path) => path.source);
    const repeated = sources.filter((source, index) => sources.indexOf(source) !== index);
    if (repeated.length > 0) {
      throw new Error(`Operations: ingestion source(s) given twice: ${repeated.join(', ')}`);
    }

    for (const path of props.ingestion) {
      this.addIngestionAlarms(path);
      for (const { alarm, why } of path.alarms ?? []) {
        const name = (alarm.node.defaultChild as cloudwatch.CfnAlarm).alarmName;
        if (typeof name !== 'string' || !name.startsWith(`meterbridge-${this.settings.stage}-${path.source}-`)) {
          throw new Error(
            `Operations: ${path.source} path alarm ${alarm.node.path} needs a literal name meterbridge-${this.settings.stage}-${path.source}-...`,
          );
        }
        this.pathAlarms.push({ name, why, source: path.source, alarm });
      }
    }
    for (const { alarm, why } of props.stageAlarms ?? []) {
      const name = (alarm.node.defaultChild as cloudwatch.CfnAlarm).alarmName;
      if (typeof name !== 'string' || !name.startsWith(`meterbridge-${this.settings.stage}-`)) {
        throw new Error(`Operations: stage alarm ${alarm.node.path} needs a literal name meterbridge-${this.settings.stage}-...`);
      }
      this.pathAlarms.push({ name, why, alarm });
    }
    this.addTableAlarms('readings', props.storage.readingsTable);
    this.addTableAlarms('ledger', props.storage.ledgerTable);

    this.pipelineUnhealthyName = this.alarmName('pipeline-unhealthy');
    this.pipelineUnhealthy = new cloudwatch.CompositeAlarm(this, 'PipelineUnhealthy', {
      compositeAlarmName: this.pipelineUnhealthyName,
      alarmDescription: describe('pipeline-unhealthy', this.pipelineUnhealthyWhy),
      alarmRule: cloudwatch.AlarmRule.anyOf(...[...this.alarms, ...this.pathAlarms].map((entry) => entry.alarm)),
    });
    this.topic.addAlarm(this.pipelineUnhealthy);
  }

  /** The freshness alarm of a source (every ingestion path has one). */
  public freshness(source: MetricSource): OperationsAlarm | undefined {
    return this.freshnessBySource.get(source);
  }

  /**
   * Age in seconds of a queue's oldest message that alarms: the stage's `queueAgeMinutes` for the
   * source, else a full retry cycle of the queue (visibility timeout x receives before the DLQ)
   * plus 15 minutes, and never under 30 minutes. A message older than that is not being retried,
   * it is waiting for a consumer.
   */
  public queueAgeSeconds(source: MetricSource, queue: sqs.IQueue): number {
    const configured = this.settings.alarms.queueAgeMinutes[source];
    if (configured !== undefined) return configured * 60;
    const cycle = retryCycleSeconds(queue);
    return Math.max(DEFAULT_QUEUE_AGE_MINUTES * 60, cycle === undefined ? 0 : Math.ceil(cycle / 60) * 60 + 15 * 60);
  }

  /** Minutes without a newly stored reading after which a source's freshness alarm fires. */
  public freshnessMinutes(path: IngestionMonitoring): number {
    return this.settings.alarms.freshnessMinutes[path.source] ?? path.expectedSilenceMinutes;
  }

  private addIngestionAlarms(path: IngestionMonitoring): void {
    this.addFreshnessAlarm(path);
    this.addCatalogAlarms(path.source);
    this.addQueueAlarms(path);
    this.addFunctionAlarms(path);
    this.addTopicRuleAlarms(path);
  }

  /** Freshness: must FIRE when data stops, so no data is breaching. */
  private addFreshnessAlarm(path: IngestionMonitoring): void {
    const { source } = path;
    const { stage } = this.settings;
    const silence = this.freshnessMinutes(path);
    if (!Number.isInteger(silence) || silence < 1 || silence > 7 * 24 * 60) {
      throw new Error(
        `Operations: ${source} freshness window ${silence} min must be whole minutes from 1 to 10080 (CloudWatch evaluates at most 7 days)`,
      );
    }
    const window = freshnessWindow(silence);
    const freshness = this.add({
      suffix: `${source}-freshness`,
      kind: 'freshness',
      source,
      metric: FRESHNESS_METRIC,
      why:
        `no reading newly stored from ${source} for ${silence} min (longer than its normal silence); ` +
        'no data counts as breaching because a source that stops sending publishes nothing at all',
      props: {
        metric: customAlarmMetric(FRESHNESS_METRIC, source, stage, 'Sum', Duration.minutes(window.periodMinutes)),
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        threshold: 1,
        evaluationPeriods: window.periods,
        datapointsToAlarm: window.periods,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      },
    });
    this.freshnessBySource.set(source, freshness);
  }

  /** Every other alarmed catalog metric of this source. */
  private addCatalogAlarms(source: MetricSource): void {
    const { stage, alarms: thresholds } = this.settings;
    for (const name of metricsOfSource(source)) {
      const spec = catalogSpec(name);
      if (spec.watch !== 'alarm' || name === FRESHNESS_METRIC) continue;
      const rule = alarmRule(name, spec.unit, spec.description, spec.alarm);
      const threshold = thresholds.metricThresholds[name] ?? rule.threshold;
      const period = rule.periodMinutes ?? 5;
      const evaluationPeriods = rule.evaluationPeriods ?? 1;
      if ((spec.extraDimensions ?? []).length > 0 && period * evaluationPeriods > INSIGHTS_WINDOW_MINUTES) {
        throw new Error(
          `Operations: ${name} is read with Metrics Insights, which sees 3 hours; its alarm looks at ${period * evaluationPeriods} min`,
        );
      }
      this.add({
        suffix: `${source}-${kebab(name)}`,
        kind: 'metric',
        source,
        metric: name,
        why: threshold === rule.threshold ? rule.why : `${rule.why} (threshold ${threshold} set for this stage in cdk.json)`,
        props: {
          metric: customAlarmMetric(name, source, stage, rule.statistic ?? (spec.unit === 'Count' ? 'Sum' : 'Maximum'), Duration.minutes(period)),
          comparisonOperator:
            rule.comparison === 'below'
              ? cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
              : cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          threshold,
          evaluationPeriods,
          datapointsToAlarm: rule.datapointsToAlarm ?? evaluationPeriods,
          treatMissingData: MISSING_DATA[rule.missingData ?? 'notBreaching'],
        },
      });
    }
  }

  private addQueueAlarms(path: IngestionMonitoring): void {
    const { source } = path;
    for (const { label, queue, deadLetterQueue } of path.queues) {
      this.add({
        suffix: `${source}-${label}-dlq`,
        kind: 'dead-letter-queue',
        source,
        why:
          `every message here was not stored (rejected, out of receives${(path.topicRules ?? []).length > 0 ? ', or an IoT rule failure' : ''}) ` +
          'and stays until redriven, so > 0 holds the alarm until someone acts; no data = an empty queue SQS stopped reporting',
        props: {
          metric: deadLetterQueue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: FIVE_MINUTES }),
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
          threshold: 0,
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        },
      });
      const ageSeconds = this.queueAgeSeconds(source, queue);
      const cycle = retryCycleSeconds(queue);
      this.add({
        suffix: `${source}-${label}-queue-age`,
        kind: 'queue-age',
        source,
        why:
          `a message waiting ${ageSeconds / 60} min outlasts a full retry cycle` +
          (cycle === undefined ? '' : ` (${cycle / 60} min: visibility timeout x receives before the DLQ)`) +
          ', so the consumer is not keeping up or not running (two periods in a row, so one slow batch does not page); no data = an idle queue',
        props: {
          metric: queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: FIVE_MINUTES }),
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          threshold: ageSeconds,
          evaluationPeriods: 2,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        },
      });
    }
  }

  private addFunctionAlarms(path: IngestionMonitoring): void {
    const { source } = path;
    const { alarms: thresholds } = this.settings;
    for (const { label, fn } of path.functions) {
      this.add({
        suffix: `${source}-${label}-lambda-errors`,
        kind: 'lambda-errors',
        source,
        why:
          `an unhandled error or timeout fails a whole batch or request; a retried blip heals, >= ${thresholds.lambdaErrors} ` +
          'in 2 of 3 five-minute periods is a persistent fault; no data = no invocations',
        props: {
          metric: fn.metricErrors({ statistic: 'Sum', period: FIVE_MINUTES }),
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          threshold: thresholds.lambdaErrors,
          evaluationPeriods: 3,
          datapointsToAlarm: 2,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        },
      });
      this.add({
        suffix: `${source}-${label}-lambda-throttles`,
        kind: 'lambda-throttles',
        source,
        why:
          `throttling delays queued work and fails synchronous callers (an error answer they retry); >= ${thresholds.lambdaThrottles} in 2 of 3 ` +
          'five-minute periods is a concurrency limit, not a blip; no data = no throttles',
        props: {
          metric: fn.metricThrottles({ statistic: 'Sum', period: FIVE_MINUTES }),
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          threshold: thresholds.lambdaThrottles,
          evaluationPeriods: 3,
          datapointsToAlarm: 2,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        },
      });
    }
  }

  private addTopicRuleAlarms(path: IngestionMonitoring): void {
    const { source } = path;
    for (const { label, ruleName } of path.topicRules ?? []) {
      // Metrics Insights sums over ActionType, whose values IoT chooses; no dimension to get wrong.
      const rule = { RuleName: ruleName };
      this.add({
        suffix: `${source}-${label}-rule-failures`,
        kind: 'rule-failures',
        source,
        why:
          'the rule could not hand a message to its queue; the error action parked it in the DLQ (replayable) but the path ' +
          'is broken until fixed, so any failure alarms; no data = no failures',
        props: anyOccurrence(insightsSum('AWS/IoT', 'Failure', rule, `${ruleName} action failures`)),
      });
      this.add({
        suffix: `${source}-${label}-rule-error-action-failures`,
        kind: 'rule-error-action-failures',
        source,
        why: 'a message failed and so did its error action: it is lost unless the gateway re-sends, so any one alarms; no data = none',
        props: anyOccurrence(insightsSum('AWS/IoT', 'ErrorActionFailure', rule, `${ruleName} error action failures`)),
      });
      this.add({
        suffix: `${source}-${label}-rule-throttled`,
        kind: 'rule-throttled',
        source,
        why: 'the rules engine refused messages over its rate limit, so they never reached the queue; any one alarms; no data = none',
        props: anyOccurrence(insightsSum('AWS/IoT', 'RuleMessageThrottled', rule, `${ruleName} throttled messages`)),
      });
    }
  }

  private addTableAlarms(label: string, table: dynamodb.ITable): void {
    const { tableThrottles } = this.settings.alarms;
    this.add({
      suffix: `${label}-table-throttles`,
      kind: 'table-throttles',
      why:
        `on-demand tables throttle only on a hot partition or a surge past twice the previous peak; the SDK retries blips, ` +
        `>= ${tableThrottles} in 2 of 3 five-minute periods is sustained; no data = no throttling`,
      props: {
        metric: new cloudwatch.MathExpression({
          expression: 'FILL(reads, 0) + FILL(writes, 0)',
          usingMetrics: {
            reads: table.metric('ReadThrottleEvents', { statistic: 'Sum', period: FIVE_MINUTES }),
            writes: table.metric('WriteThrottleEvents', { statistic: 'Sum', period: FIVE_MINUTES }),
          },
          label: `${label} table throttle events`,
          period: FIVE_MINUTES,
        }),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        threshold: tableThrottles,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      },
    });
    this.add({
      suffix: `${label}-table-system-errors`,
      kind: 'table-system-errors',
      why: 'DynamoDB answered 5xx; the SDK retries single ones, so errors in 2 of 3 five-minute periods mean a service-side problem; no data = none',
      props: {
        metric: insightsSum('AWS/DynamoDB', 'SystemErrors', { TableName: table.tableName }, `${label} table system errors`),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        threshold: 1,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      },
    });
  }

  private alarmName(suffix: string): string {
    return `meterbridge-${this.settings.stage}-${suffix}`;
  }

  private add(entry: {
    suffix: string;
    kind: AlarmKind;
    why: string;
    source?: MetricSource;
    metric?: MetricName;
    props: Omit<cloudwatch.AlarmProps, 'alarmName' | 'alarmDescription'>;
  }): OperationsAlarm {
    const name = this.alarmName(entry.suffix);
    if (this.alarms.some((existing) => existing.name === name)) {
      throw new Error(`Operations: two alarms would be named ${name}; give the queues/functions of a path distinct labels`);
    }
    const alarm = new cloudwatch.Alarm(this, entry.suffix, { ...entry.props, alarmName: name, alarmDescription: describe(entry.suffix, entry.why) });
    this.topic.addAlarm(alarm);
    const made: OperationsAlarm = { name, why: entry.why, kind: entry.kind, alarm, source: entry.source, metric: entry.metric };
    this.alarms.push(made);
    return made;
  }
}

/**
 * Periods of the freshness alarm: one period of the whole window up to a day; beyond, hourly
 * periods that must all be empty, so no alarm period exceeds a day (the total stays <= 7 days).
 */
export function freshnessWindow(silenceMinutes: number): { periodMinutes: number; periods: number } {
  if (silenceMinutes <= 24 * 60) return { periodMinutes: silenceMinutes, periods: 1 };
  return { periodMinutes: 60, periods: Math.ceil(silenceMinutes / 60) };
}

/** Visibility timeout x maxReceiveCount of a queue defined in this app; undefined for an imported one. */
function retryCycleSeconds(queue: sqs.IQueue): number | undefined {
  const resource = queue.node.defaultChild;
  if (!(resource instanceof sqs.CfnQueue)) return undefined;
  const visibility = resource.visibilityTimeout;
  const redrive = resource.redrivePolicy as { maxReceiveCount?: unknown } | undefined;
  if (typeof visibility !== 'number' || typeof redrive?.maxReceiveCount !== 'number') return undefined;
  return visibility * redrive.maxReceiveCount;
}

const MISSING_DATA: Record<NonNullable<MetricAlarmSpec['missingData']>, cloudwatch.TreatMissingData> = {
  notBreaching: cloudwatch.TreatMissingData.NOT_BREACHING,
  breaching: cloudwatch.TreatMissingData.BREACHING,
  ignore: cloudwatch.TreatMissingData.IGNORE,
};

/** The alarm of a catalog metric: its own spec, or for a Count, "any occurrence in 5 minutes". */
export function alarmRule(name: MetricName, unit: string, description: string, spec: MetricAlarmSpec | undefined): MetricAlarmSpec {
  if (spec !== undefined) return spec;
  if (unit !== 'Count') {
    throw new Error(
      `Operations: ${name} (unit ${unit}) has watch 'alarm' but no \`alarm\` in lambdas/core/metric-catalog.ts; ` +
        'a gauge needs its statistic, threshold, direction and missing-data treatment stated there',
    );
  }
  return { threshold: 1, why: `any one is worth a look: ${description}; no data = none happened (silence is the freshness alarm's job)` };
}

function anyOccurrence(metric: cloudwatch.IMetric): Omit<cloudwatch.AlarmProps, 'alarmName' | 'alarmDescription'> {
  return {
    metric,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    threshold: 1,
    evaluationPeriods: 1,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  };
}

/** The alarm description: why it exists and where the runbook entry is (it travels with the notification). */
function describe(suffix: string, why: string): string {
  return `${why}. Runbook: docs/runbook.md, meterbridge-<stage>-${suffix}`.slice(0, 1024);
}
