/**
 * The stage's CloudWatch dashboard (`meterbridge-<stage>`): alarm status on top, then one band
 * per ingestion path, then the store.
 *
 * Each band is drawn from what the path exposes (IngestionMonitoring) and from the metric
 * catalog, so a metric added to the catalog appears without touching this file: the store
 * outcomes and rejects in one graph, latency, the freshness alarm, queues, dead-letter queues,
 * functions, then every other catalog metric of the source grouped by the first word of its name
 * (Messages*, Sequence*, Files*, Deliveries* ...).
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';
import { READING_STATUS_METRIC, type MetricName, type MetricSource } from '../../lambdas/core/metric-catalog.ts';
import type { IngestionMonitoring, MonitoredApi, MonitoredTopicRule } from '../monitoring.ts';
import type { StageSettings } from '../settings.ts';
import type { ReadingStorage } from '../storage.ts';
import type { OperationsAlarms } from './alarms.ts';
import { awsSearch, catalogSpec, customGraphMetric, FIVE_MINUTES, metricsOfSource } from './metric-refs.ts';

const SOURCE_TITLES: Record<MetricSource, string> = {
  iot: 'IoT Core: gateways over MQTT (mTLS) → topic rule → queue → ingest',
  smt: 'Smart Meter Texas: scheduled FTPS/SFTP pull → raw archive → decrypt, parse, store',
  ready: 'Kamstrup READY: webhooks through API Gateway → archive → store',
};

/** The metric in the latency graph of every source. */
const LATENCY_METRIC: MetricName = 'IngestLatency';

/** IoT message broker metrics (dimension Protocol); account-wide, not per stage. */
const BROKER_CONNECT_METRICS = [
  'Connect.Success',
  'Connect.AuthError',
  'Connection.AuthNError',
  'Connect.ClientError',
  'Connect.Throttle',
  'Connect.ClientIDThrottle',
];
const BROKER_PUBLISH_METRICS = ['PublishIn.Success', 'PublishIn.Throttle', 'PublishIn.AuthError', 'PublishIn.ClientError'];

export interface OperationsDashboardProps {
  readonly settings: StageSettings;
  readonly storage: ReadingStorage;
  readonly ingestion: readonly IngestionMonitoring[];
  readonly alarms: OperationsAlarms;
}

export class OperationsDashboard extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;
  public readonly dashboardName: string;

  private readonly stage: string;
  private readonly alarms: OperationsAlarms;

  constructor(scope: Construct, id: string, props: OperationsDashboardProps) {
    super(scope, id);
    this.stage = props.settings.stage;
    this.alarms = props.alarms;
    this.dashboardName = `meterbridge-${this.stage}`;

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: this.dashboardName,
      defaultInterval: Duration.days(1),
      periodOverride: cloudwatch.PeriodOverride.AUTO,
    });
    // cfn-lint 1.51's schema for AWS::CloudWatch::Dashboard predates Tags (CloudFormation and
    // aws-cdk-lib accept them; the stack's Tags reach the dashboard), so its E3002 "Additional
    // properties are not allowed ('Tags' was unexpected)" is skipped for this resource only.
    (this.dashboard.node.defaultChild as cloudwatch.CfnDashboard).addMetadata('cfn-lint', { config: { ignore_checks: ['E3002'] } });

    const everyAlarm = [props.alarms.pipelineUnhealthy, ...[...props.alarms.alarms, ...props.alarms.pathAlarms].map((entry) => entry.alarm)];
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown: [
          `# meterbridge ${this.stage}`,
          `Sources: ${props.ingestion.map((path) => path.source).join(', ') || 'none yet'}. ` +
            'Every alarm notifies the alarm topic on ALARM and OK; what to do for each is in docs/runbook.md, by alarm name.',
        ].join('\n\n'),
        width: 24,
        height: 2,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({
        title: `Alarms (${everyAlarm.length})`,
        alarms: everyAlarm,
        width: 24,
        height: Math.min(12, 2 + Math.ceil(everyAlarm.length / 4)),
        sortBy: cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
      }),
    );

    let brokerDrawn = false;
    for (const path of props.ingestion) {
      this.dashboard.addWidgets(new cloudwatch.TextWidget({ markdown: `## ${SOURCE_TITLES[path.source]}`, width: 24, height: 1 }));
      this.dashboard.addWidgets(...this.sourceWidgets(path));
      for (const rule of path.topicRules ?? []) this.dashboard.addWidgets(...topicRuleWidgets(rule));
      if ((path.topicRules ?? []).length > 0 && !brokerDrawn) {
        this.dashboard.addWidgets(...brokerWidgets());
        brokerDrawn = true;
      }
      for (const api of path.apis ?? []) this.dashboard.addWidgets(...apiWidgets(api));
    }

    this.dashboard.addWidgets(new cloudwatch.TextWidget({ markdown: '## Store: DynamoDB tables (shared by every source)', width: 24, height: 1 }));
    this.dashboard.addWidgets(...tableWidgets('readings', props.storage.readingsTable), ...tableWidgets('ledger', props.storage.ledgerTable));
  }

  private sourceWidgets(path: IngestionMonitoring): cloudwatch.IWidget[] {
    const { source } = path;
    const metrics = metricsOfSource(source);
    const placed = new Set<MetricName>();
    const graph = (name: MetricName, label: string = name): cloudwatch.IMetric => {
      placed.add(name);
      const spec = catalogSpec(name);
      const statistic = spec.alarm?.statistic ?? (spec.unit === 'Count' ? 'Sum' : 'Maximum');
      return customGraphMetric(name, source, this.stage, statistic, spec.watch === 'alarm' ? `${label} (alarm)` : label);
    };
    const widgets: cloudwatch.IWidget[] = [];
    widgets.push(this.outcomeWidget(source, metrics, graph));
    if (metrics.includes(LATENCY_METRIC)) {
      placed.add(LATENCY_METRIC);
      widgets.push(this.latencyWidget(source));
    }
    widgets.push(...this.freshnessWidgets(path));
    widgets.push(...this.queueWidgets(path));
    widgets.push(...functionWidgets(path));
    widgets.push(
      ...familyWidgets(
        source,
        metrics.filter((name) => !placed.has(name)),
        graph,
      ),
    );
    return widgets;
  }

  /** Store outcomes per 5 minutes, and what was refused before it reached the store. */
  private outcomeWidget(source: MetricSource, metrics: readonly MetricName[], graph: CatalogGraph): cloudwatch.IWidget {
    const outcomes = Object.values(READING_STATUS_METRIC).filter((name) => metrics.includes(name));
    const rejects = metrics.filter((name) => name.endsWith('Rejected'));
    return new cloudwatch.GraphWidget({
      title: `${source}: readings by outcome; rejected input (right)`,
      left: outcomes.map((name) => graph(name, name.replace(/^Readings/, '').toLowerCase())),
      right: rejects.map((name) => graph(name)),
      leftYAxis: { min: 0, label: 'readings / 5 min', showUnits: false },
      rightYAxis: { min: 0, label: 'rejected / 5 min', showUnits: false },
      width: 8,
      height: 6,
    });
  }

  private latencyWidget(source: MetricSource): cloudwatch.IWidget {
    return new cloudwatch.GraphWidget({
      title: `${source}: end-to-end latency (reading end → stored)`,
      left: (['p50', 'p99', 'Maximum'] as const).map((statistic) => customGraphMetric(LATENCY_METRIC, source, this.stage, statistic, `${statistic}`)),
      leftYAxis: { min: 0, label: 'seconds', showUnits: false },
      width: 8,
      height: 6,
    });
  }

  private freshnessWidgets(path: IngestionMonitoring): cloudwatch.IWidget[] {
    const freshness = this.alarms.freshness(path.source);
    if (freshness === undefined) return [];
    return [
      new cloudwatch.AlarmWidget({
        title: `${path.source}: freshness (readings newly stored; alarm when none for ${this.alarms.freshnessMinutes(path)} min)`,
        alarm: freshness.alarm,
        leftYAxis: { min: 0 },
        width: 8,
        height: 6,
      }),
    ];
  }

  private queueWidgets(path: IngestionMonitoring): cloudwatch.IWidget[] {
    const { source } = path;
    return path.queues.flatMap(({ label, queue, deadLetterQueue }) => [
      new cloudwatch.GraphWidget({
        title: `${source}: queue ${label}: depth; oldest message age (right)`,
        left: [
          queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: FIVE_MINUTES, label: 'visible' }),
          queue.metricApproximateNumberOfMessagesNotVisible({ statistic: 'Maximum', period: FIVE_MINUTES, label: 'in flight' }),
        ],
        right: [queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: FIVE_MINUTES, label: 'oldest (s)' })],
        rightAnnotations: [{ value: this.alarms.queueAgeSeconds(source, queue), label: 'alarm', color: cloudwatch.Color.RED }],
        leftYAxis: { min: 0, showUnits: false },
        rightYAxis: { min: 0, label: 'seconds', showUnits: false },
        width: 8,
        height: 6,
      }),
      new cloudwatch.GraphWidget({
        title: `${source}: ${label} dead-letter queue (alarm above 0)`,
        left: [deadLetterQueue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: FIVE_MINUTES, label: 'messages' })],
        leftAnnotations: [{ value: 0, color: cloudwatch.Color.RED }],
        leftYAxis: { min: 0, showUnits: false },
        width: 4,
        height: 6,
      }),
    ]);
  }
}

type CatalogGraph = (name: MetricName, label?: string) => cloudwatch.IMetric;

function functionWidgets(path: IngestionMonitoring): cloudwatch.IWidget[] {
  const { source } = path;
  return path.functions.flatMap(({ label, fn }) => [
    new cloudwatch.GraphWidget({
      title: `${source}: λ ${label}: invocations, errors, throttles`,
      left: [
        fn.metricInvocations({ statistic: 'Sum', period: FIVE_MINUTES, label: 'invocations' }),
        fn.metricErrors({ statistic: 'Sum', period: FIVE_MINUTES, label: 'errors (alarm)' }),
        fn.metricThrottles({ statistic: 'Sum', period: FIVE_MINUTES, label: 'throttles (alarm)' }),
      ],
      leftYAxis: { min: 0, showUnits: false },
      width: 6,
      height: 6,
    }),
    new cloudwatch.GraphWidget({
      title: `${source}: λ ${label}: duration`,
      left: (['p50', 'p99', 'Maximum'] as const).map((statistic) => fn.metricDuration({ statistic, period: FIVE_MINUTES, label: statistic })),
      leftYAxis: { min: 0, label: 'ms', showUnits: false },
      width: 6,
      height: 6,
    }),
  ]);
}

/**
 * Everything else the source emits, grouped by the first word of the name and by unit, so a
 * metric added to the catalog lands here with its family (and never shares an axis with a
 * metric of another unit).
 */
function familyWidgets(source: MetricSource, unplaced: readonly MetricName[], graph: CatalogGraph): cloudwatch.IWidget[] {
  const widgets: cloudwatch.IWidget[] = [];
  const groups = new Map<string, MetricName[]>();
  for (const name of unplaced) {
    const family = `${/^[A-Z][a-z0-9]*/.exec(name)?.[0] ?? name} (${catalogSpec(name).unit})`;
    groups.set(family, [...(groups.get(family) ?? []), name]);
  }
  for (const [family, names] of groups) {
    const unit = catalogSpec(names[0] as MetricName).unit;
    widgets.push(
      new cloudwatch.GraphWidget({
        title: `${source}: ${family.replace(/ \(.*\)$/, '')}`,
        left: names.map((name) => graph(name)),
        leftYAxis: { min: 0, label: unit === 'Count' ? 'per 5 min' : unit.toLowerCase(), showUnits: false },
        width: 6,
        height: 6,
      }),
    );
  }
  return widgets;
}

function topicRuleWidgets({ label, ruleName }: MonitoredTopicRule): cloudwatch.IWidget[] {
  const ruleMetric = (metricName: string, alarmed: boolean): cloudwatch.Metric =>
    new cloudwatch.Metric({
      namespace: 'AWS/IoT',
      metricName,
      dimensionsMap: { RuleName: ruleName },
      statistic: 'Sum',
      period: FIVE_MINUTES,
      label: alarmed ? `${metricName} (alarm)` : metricName,
    });
  return [
    new cloudwatch.GraphWidget({
      title: `IoT rule ${label} (${ruleName}): messages matched, throttled, unparseable`,
      left: [ruleMetric('TopicMatch', false), ruleMetric('RuleMessageThrottled', true), ruleMetric('ParseError', false)],
      leftYAxis: { min: 0, showUnits: false },
      width: 12,
      height: 6,
    }),
    new cloudwatch.GraphWidget({
      title: `IoT rule ${label}: action and error-action outcomes (Failure, ErrorActionFailure alarm)`,
      left: [awsSearch(['AWS/IoT', 'ActionType', 'RuleName'], `RuleName="${ruleName}"`, 'Sum', "${PROP('MetricName')} ${PROP('Dim.ActionType')}")],
      leftYAxis: { min: 0, showUnits: false },
      width: 12,
      height: 6,
    }),
  ];
}

function brokerWidgets(): cloudwatch.IWidget[] {
  const search = (names: readonly string[]): cloudwatch.MathExpression =>
    awsSearch(
      ['AWS/IoT', 'Protocol'],
      `(${names.map((name) => `MetricName="${name}"`).join(' OR ')})`,
      'Sum',
      "${PROP('MetricName')} ${PROP('Dim.Protocol')}",
    );
  return [
    new cloudwatch.GraphWidget({
      title: 'IoT Core connections (whole account and region, every stage)',
      left: [search(BROKER_CONNECT_METRICS)],
      leftYAxis: { min: 0, showUnits: false },
      width: 12,
      height: 6,
    }),
    new cloudwatch.GraphWidget({
      title: 'IoT Core inbound publishes (whole account and region, every stage)',
      left: [search(BROKER_PUBLISH_METRICS)],
      leftYAxis: { min: 0, showUnits: false },
      width: 12,
      height: 6,
    }),
  ];
}

function apiWidgets({ label, apiName, stageName }: MonitoredApi): cloudwatch.IWidget[] {
  const apiMetric = (metricName: string, statistic: string, metricLabel: string): cloudwatch.Metric =>
    new cloudwatch.Metric({
      namespace: 'AWS/ApiGateway',
      metricName,
      dimensionsMap: { ApiName: apiName, Stage: stageName },
      statistic,
      period: FIVE_MINUTES,
      label: metricLabel,
    });
  return [
    new cloudwatch.GraphWidget({
      title: `API ${label}: requests, 4xx (401/403/413/415/429), 5xx`,
      left: [apiMetric('Count', 'Sum', 'requests'), apiMetric('4XXError', 'Sum', '4xx'), apiMetric('5XXError', 'Sum', '5xx')],
      leftYAxis: { min: 0, showUnits: false },
      width: 12,
      height: 6,
    }),
    new cloudwatch.GraphWidget({
      title: `API ${label}: latency`,
      left: [apiMetric('Latency', 'p99', 'p99'), apiMetric('IntegrationLatency', 'p99', 'integration p99')],
      leftYAxis: { min: 0, label: 'ms', showUnits: false },
      width: 12,
      height: 6,
    }),
  ];
}

function tableWidgets(label: string, table: dynamodb.ITable): cloudwatch.IWidget[] {
  const tableMetric = (metricName: string, metricLabel: string): cloudwatch.Metric =>
    table.metric(metricName, { statistic: 'Sum', period: FIVE_MINUTES, label: metricLabel });
  const perOperation = (metricName: string, statistic: 'Sum' | 'p99'): cloudwatch.MathExpression =>
    awsSearch(
      ['AWS/DynamoDB', 'Operation', 'TableName'],
      `MetricName="${metricName}" TableName="${table.tableName}"`,
      statistic,
      `${metricName} \${PROP('Dim.Operation')}`,
    );
  return [
    new cloudwatch.GraphWidget({
      title: `${label} table: throttle events (alarm), system errors (alarm)`,
      left: [
        tableMetric('ReadThrottleEvents', 'read throttles'),
        tableMetric('WriteThrottleEvents', 'write throttles'),
        perOperation('SystemErrors', 'Sum'),
      ],
      leftYAxis: { min: 0, showUnits: false },
      width: 8,
      height: 6,
    }),
    new cloudwatch.GraphWidget({
      title: `${label} table: consumed capacity units`,
      left: [tableMetric('ConsumedWriteCapacityUnits', 'write units'), tableMetric('ConsumedReadCapacityUnits', 'read units')],
      leftYAxis: { min: 0, showUnits: false },
      width: 8,
      height: 6,
    }),
    new cloudwatch.GraphWidget({
      title: `${label} table: request latency p99 by operation`,
      left: [perOperation('SuccessfulRequestLatency', 'p99')],
      leftYAxis: { min: 0, label: 'ms', showUnits: false },
      width: 8,
      height: 6,
    }),
  ];
}
