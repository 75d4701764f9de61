/**
 * How the dashboard and the alarms refer to metrics: meterbridge's own (from the catalog in
 * lambdas/core/metric-catalog.ts) and the AWS services' (IoT Core, DynamoDB).
 *
 * A custom metric carries Stage and Source, and some carry one more dimension (Reason, Step,
 * Status). CloudWatch does not add up across a dimension by itself, so a metric with an extra
 * dimension is read in two ways: graphs use SEARCH (one line per Reason, any time range) and
 * alarms use a Metrics Insights query that sums over the extra dimension (alarms cannot SEARCH).
 * The consistency test parses exactly these three shapes back out of the template.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { METRIC_CATALOG, type MetricName, type MetricSource, type MetricSpec } from '../../lambdas/core/metric-catalog.ts';
import { METRICS_NAMESPACE } from '../meterbridge-function.ts';

export const FIVE_MINUTES = Duration.minutes(5);

/** The catalog as a typed list, in declaration order (the dashboard keeps that order). */
export function catalogEntries(): Array<[MetricName, MetricSpec]> {
  return Object.entries(METRIC_CATALOG) as Array<[MetricName, MetricSpec]>;
}

export function catalogSpec(name: MetricName): MetricSpec {
  return METRIC_CATALOG[name];
}

/** Catalog metrics a source emits, in catalog order. */
export function metricsOfSource(source: MetricSource): MetricName[] {
  return catalogEntries()
    .filter(([, spec]) => spec.sources.includes(source))
    .map(([name]) => name);
}

type Statistic = 'Sum' | 'Maximum' | 'Minimum' | 'Average' | 'p50' | 'p99';

const INSIGHTS_FUNCTION: Partial<Record<Statistic, string>> = { Sum: 'SUM', Maximum: 'MAX', Minimum: 'MIN', Average: 'AVG' };

/**
 * One custom metric of one source as a single time series, fit for an alarm: a plain metric, or
 * for a metric with an extra dimension, a Metrics Insights query summing over it.
 */
export function customAlarmMetric(
  name: MetricName,
  source: MetricSource,
  stage: string,
  statistic: Statistic,
  period: Duration = FIVE_MINUTES,
): cloudwatch.IMetric {
  const spec = catalogSpec(name);
  if ((spec.extraDimensions ?? []).length === 0) return plainMetric(name, source, stage, statistic, period);
  const fn = INSIGHTS_FUNCTION[statistic];
  if (fn === undefined) {
    throw new Error(`${name}: statistic ${statistic} has no Metrics Insights function; use Sum, Maximum, Minimum or Average`);
  }
  return new cloudwatch.MathExpression({
    expression: `SELECT ${fn}(${name}) FROM "${METRICS_NAMESPACE}" WHERE Stage = '${stage}' AND Source = '${source}'`,
    label: `${name} (${source}, all ${(spec.extraDimensions ?? []).join('/')})`,
    period,
  });
}

/**
 * One custom metric of one source for a graph: a plain metric, or a SEARCH drawing one line per
 * value of its extra dimension (e.g. MessagesRejected per Reason).
 */
export function customGraphMetric(
  name: MetricName,
  source: MetricSource,
  stage: string,
  statistic: Statistic,
  label: string = name,
): cloudwatch.IMetric {
  const spec = catalogSpec(name);
  const extra = spec.extraDimensions ?? [];
  if (extra.length === 0) return plainMetric(name, source, stage, statistic, FIVE_MINUTES, label);
  const schema = [METRICS_NAMESPACE, ...[...extra, 'Source', 'Stage'].sort()].join(',');
  return new cloudwatch.MathExpression({
    expression: `SEARCH('{${schema}} MetricName="${name}" Source="${source}" Stage="${stage}"', '${statistic}', ${FIVE_MINUTES.toSeconds()})`,
    // A dynamic label: one line per value of the extra dimension(s), named after it.
    label: [label, ...extra.map((dimension) => `\${PROP('Dim.${dimension}')}`)].join(' '),
    period: FIVE_MINUTES,
  });
}

/** A custom metric with exactly the default dimensions, as every handler publishes it. */
function plainMetric(
  name: MetricName,
  source: MetricSource,
  stage: string,
  statistic: Statistic,
  period: Duration,
  label?: string,
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { Source: source, Stage: stage },
    statistic,
    period,
    label,
  });
}

/** Sum of an AWS metric over every dimension combination matching `where` (Metrics Insights; alarms only look back 3 h). */
export function insightsSum(namespace: string, metricName: string, where: Record<string, string>, label: string): cloudwatch.MathExpression {
  const conditions = Object.entries(where)
    .map(([dimension, value]) => `${dimension} = '${value}'`)
    .join(' AND ');
  return new cloudwatch.MathExpression({
    expression: `SELECT SUM(${quoteInsightsName(metricName)}) FROM "${namespace}" WHERE ${conditions}`,
    label,
    period: FIVE_MINUTES,
  });
}

/** Metrics Insights needs double quotes around names with characters other than letters, digits and `_`. */
function quoteInsightsName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : `"${name}"`;
}

/** A SEARCH over an AWS namespace for graphs, e.g. IoT rule action outcomes per ActionType. */
export function awsSearch(schema: readonly string[], filter: string, statistic: Statistic, label: string): cloudwatch.MathExpression {
  return new cloudwatch.MathExpression({
    expression: `SEARCH('{${schema.join(',')}} ${filter}', '${statistic}', ${FIVE_MINUTES.toSeconds()})`,
    label,
    period: FIVE_MINUTES,
  });
}

/** `MessagesRejected` -> `messages-rejected`: the metric's part of an alarm name. */
export function kebab(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/([A-Z])([A-Z][a-z])/g, '$1-$2')
    .toLowerCase();
}
