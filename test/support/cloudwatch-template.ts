/**
 * Reads CloudWatch alarms and dashboards back out of a synthesized template: which metrics they
 * reference (plain metrics, SEARCH expressions, Metrics Insights queries), and the dashboard body
 * as JSON. CloudFormation references inside strings become `<Ref:Id>` / `<GetAtt:Id.Attr>`.
 */
import type { Template } from 'aws-cdk-lib/assertions';

export interface MetricRef {
  namespace: string;
  metricName: string;
  /** Dimension filters the reference names (for a plain metric: all its dimensions). */
  dimensions: Record<string, string>;
  /** How it was written: a plain metric, a SEARCH, or a Metrics Insights SELECT. */
  form: 'metric' | 'search' | 'select';
}

export interface AlarmResource {
  logicalId: string;
  type: 'AWS::CloudWatch::Alarm' | 'AWS::CloudWatch::CompositeAlarm';
  properties: Record<string, unknown>;
  name: string;
}

/** A CloudFormation value as the string it becomes once deployed, references as placeholders. */
export function flatten(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  const object = value as Record<string, unknown>;
  if ('Ref' in object) return `<Ref:${String(object.Ref)}>`;
  if ('Fn::GetAtt' in object) return `<GetAtt:${(object['Fn::GetAtt'] as string[]).join('.')}>`;
  if ('Fn::Join' in object) {
    const [separator, parts] = object['Fn::Join'] as [string, unknown[]];
    return parts.map(flatten).join(separator);
  }
  throw new Error(`cannot flatten ${JSON.stringify(value)}`);
}

export function alarms(template: Template): AlarmResource[] {
  const result: AlarmResource[] = [];
  for (const type of ['AWS::CloudWatch::Alarm', 'AWS::CloudWatch::CompositeAlarm'] as const) {
    for (const [logicalId, resource] of Object.entries(template.findResources(type))) {
      const properties = (resource as { Properties: Record<string, unknown> }).Properties;
      result.push({ logicalId, type, properties, name: String(properties.AlarmName) });
    }
  }
  return result;
}

/** Metrics an alarm watches (none for a composite alarm). */
export function alarmMetricRefs(alarm: AlarmResource): MetricRef[] {
  const props = alarm.properties;
  if (typeof props.MetricName === 'string') {
    return [
      {
        namespace: String(props.Namespace),
        metricName: props.MetricName,
        dimensions: dimensionsOf(props.Dimensions as Array<{ Name: string; Value: unknown }> | undefined),
        form: 'metric',
      },
    ];
  }
  const queries = (props.Metrics ?? []) as Array<{
    Expression?: unknown;
    MetricStat?: { Metric: { Namespace: string; MetricName: string; Dimensions?: Array<{ Name: string; Value: unknown }> } };
  }>;
  return queries.flatMap((query): MetricRef[] => {
    if (query.MetricStat !== undefined) {
      const metric = query.MetricStat.Metric;
      return [{ namespace: metric.Namespace, metricName: metric.MetricName, dimensions: dimensionsOf(metric.Dimensions), form: 'metric' }];
    }
    return query.Expression === undefined ? [] : expressionRefs(flatten(query.Expression));
  });
}

export interface DashboardWidget {
  type: string;
  properties: { title?: string; metrics?: unknown[][]; alarms?: string[]; annotations?: { alarms?: string[] }; markdown?: string };
}

export function dashboardWidgets(template: Template): DashboardWidget[] {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  if (dashboards.length !== 1) throw new Error(`one dashboard expected, found ${dashboards.length}`);
  const body = flatten((dashboards[0] as { Properties: { DashboardBody: unknown } }).Properties.DashboardBody);
  return (JSON.parse(body) as { widgets: DashboardWidget[] }).widgets;
}

/** Metrics a dashboard widget draws. */
export function widgetMetricRefs(widget: DashboardWidget): MetricRef[] {
  return (widget.properties.metrics ?? []).flatMap((entry): MetricRef[] => {
    const last = entry[entry.length - 1];
    const options = typeof last === 'object' && last !== null ? (last as { expression?: string }) : undefined;
    if (options?.expression !== undefined) return expressionRefs(options.expression);
    const [namespace, metricName, ...rest] = entry.filter((part) => typeof part === 'string') as string[];
    if (namespace === undefined || metricName === undefined) return [];
    const dimensions: Record<string, string> = {};
    for (let i = 0; i + 1 < rest.length; i += 2) dimensions[rest[i] as string] = rest[i + 1] as string;
    return [{ namespace, metricName, dimensions, form: 'metric' }];
  });
}

/**
 * Metrics named by a SEARCH or Metrics Insights expression. A SEARCH may name several metrics
 * (`MetricName="a" OR MetricName="b"`) or none (it then matches every metric of its schema, e.g.
 * IoT rule Success/Failure per ActionType): that is reported with metricName '*'.
 */
export function expressionRefs(expression: string): MetricRef[] {
  const select = /^SELECT\s+\w+\(\s*"?([^")\s]+)"?\s*\)\s+FROM\s+(?:SCHEMA\(\s*)?"?([^",\s)]+)"?[^W]*(?:WHERE\s+(.*))?$/i.exec(expression.trim());
  if (select !== null) {
    const dimensions: Record<string, string> = {};
    for (const match of (select[3] ?? '').matchAll(/(\w+)\s*=\s*'([^']*)'/g)) dimensions[match[1] as string] = match[2] as string;
    return [{ namespace: select[2] as string, metricName: select[1] as string, dimensions, form: 'select' }];
  }
  const search = /SEARCH\(\s*'\{([^}]*)\}\s*([^']*)'/.exec(expression);
  if (search !== null) {
    const [namespace] = (search[1] as string).split(',');
    const dimensions: Record<string, string> = {};
    const names: string[] = [];
    for (const match of (search[2] as string).matchAll(/(\w+)="([^"]*)"/g)) {
      if (match[1] === 'MetricName') names.push(match[2] as string);
      else dimensions[match[1] as string] = match[2] as string;
    }
    return (names.length > 0 ? names : ['*']).map((metricName) => ({
      namespace: namespace as string,
      metricName,
      dimensions,
      form: 'search' as const,
    }));
  }
  // Plain metric math over metrics listed elsewhere in the same widget or alarm (e.g. FILL(a, 0) + FILL(b, 0)).
  return [];
}

function dimensionsOf(dimensions: Array<{ Name: string; Value: unknown }> | undefined): Record<string, string> {
  return Object.fromEntries((dimensions ?? []).map(({ Name, Value }) => [Name, flatten(Value)]));
}
