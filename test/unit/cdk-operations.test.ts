import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { METRIC_CATALOG, type MetricSpec } from '../../lambdas/core/metric-catalog.ts';
import { AlarmTopic } from '../../lib/alarm-topic.ts';
import { IotIngestion } from '../../lib/iot-ingestion.ts';
import type { IngestionMonitoring } from '../../lib/monitoring.ts';
import { Operations } from '../../lib/operations.ts';
import { alarmRule } from '../../lib/operations/alarms.ts';
import { kebab } from '../../lib/operations/metric-refs.ts';
import { DEFAULT_ALARM_SETTINGS, parseStageSettings, StageSettingsError } from '../../lib/settings.ts';
import { ReadingStorage } from '../../lib/storage.ts';
import { TEST_STAGE_RAW, testSettings } from '../fixtures/stage-settings.ts';
import { dashboardWidgets, flatten, widgetMetricRefs } from '../support/cloudwatch-template.ts';

const CATALOG = METRIC_CATALOG as Readonly<Record<string, MetricSpec>>;

interface Built {
  stack: Stack;
  template: Template;
  operations: Operations;
  iot: IotIngestion;
}

/** Storage, topic, the IoT path and Operations over it (plus any extra monitored paths). */
function operationsStack(overrides: Record<string, unknown> = {}, extra: (stack: Stack) => IngestionMonitoring[] = () => []): Built {
  // Alarms and dashboards do not depend on the bundled code: skip esbuild to keep the tests fast.
  const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Test');
  const settings = testSettings(overrides);
  const storage = new ReadingStorage(stack, 'Storage');
  const alarmTopic = new AlarmTopic(stack, 'Alarms');
  const iot = new IotIngestion(stack, 'Iot', { settings, storage });
  const operations = new Operations(stack, 'Operations', { settings, storage, alarmTopic, ingestion: [iot.monitoring, ...extra(stack)] });
  return { stack, template: Template.fromStack(stack), operations, iot };
}

/** A stand-in for a second ingestion path (inline code: nothing to bundle). */
function fakePath(stack: Stack, source: 'smt' | 'ready', id: string = source): IngestionMonitoring {
  const deadLetterQueue = new sqs.Queue(stack, `${id}Dlq`, { enforceSSL: true });
  const queue = new sqs.Queue(stack, `${id}Queue`, {
    enforceSSL: true,
    visibilityTimeout: Duration.minutes(10),
    deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: 5 },
  });
  const fn = new lambda.Function(stack, `${id}Fn`, {
    runtime: lambda.Runtime.NODEJS_22_X,
    handler: 'index.handler',
    code: lambda.Code.fromInline('exports.handler=async()=>{}'),
  });
  return { source, functions: [{ label: 'process', fn }], queues: [{ label: 'files', queue, deadLetterQueue }], expectedSilenceMinutes: 26 * 60 };
}

function alarmNamed(template: Template, name: string): Record<string, unknown> {
  const found = Object.values(template.findResources('AWS::CloudWatch::Alarm', { Properties: { AlarmName: name } }));
  assert.equal(found.length, 1, `alarm ${name} expected once`);
  return (found[0] as { Properties: Record<string, unknown> }).Properties;
}

const topicActions = {
  AlarmActions: [{ Ref: Match.stringLikeRegexp('^AlarmsTopic') }],
  OKActions: [{ Ref: Match.stringLikeRegexp('^AlarmsTopic') }],
};

describe('Operations alarms', () => {
  let built: Built;
  before(() => {
    built = operationsStack();
  });

  it('fires the IoT freshness alarm when no reading is stored for an hour, missing data included', () => {
    built.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: 'meterbridge-test-iot-freshness',
      Namespace: 'Meterbridge',
      MetricName: 'ReadingsStored',
      Dimensions: [
        { Name: 'Source', Value: 'iot' },
        { Name: 'Stage', Value: 'test' },
      ],
      Statistic: 'Sum',
      Period: 3600,
      EvaluationPeriods: 1,
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      TreatMissingData: 'breaching',
      ...topicActions,
    });
  });

  it('takes the freshness window from cdk.json when the stage sets one', () => {
    const { template } = operationsStack({ alarms: { freshnessMinutes: { iot: 90 } } });

    assert.equal(alarmNamed(template, 'meterbridge-test-iot-freshness').Period, 5400);
  });

  it('alarms as soon as the IoT dead-letter queue holds a message, and not on an empty idle queue', () => {
    built.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: 'meterbridge-test-iot-telemetry-dlq',
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^IotDeadLetterQueue'), 'QueueName'] } }],
      Statistic: 'Maximum',
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0,
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
      ...topicActions,
    });
  });

  it('alarms on the ingest queue when its oldest message waits 30 minutes for two periods', () => {
    built.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: 'meterbridge-test-iot-telemetry-queue-age',
      MetricName: 'ApproximateAgeOfOldestMessage',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^IotQueue'), 'QueueName'] } }],
      Threshold: 1800,
      EvaluationPeriods: 2,
      TreatMissingData: 'notBreaching',
    });
    const { template } = operationsStack({ alarms: { queueAgeMinutes: { iot: 10 } } });
    assert.equal(alarmNamed(template, 'meterbridge-test-iot-telemetry-queue-age').Threshold, 600);
  });

  it('alarms on ingest function errors and throttles in 2 of 3 periods, at the stage thresholds', () => {
    for (const [suffix, metricName] of [
      ['lambda-errors', 'Errors'],
      ['lambda-throttles', 'Throttles'],
    ] as const) {
      built.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: `meterbridge-test-iot-ingest-${suffix}`,
        Namespace: 'AWS/Lambda',
        MetricName: metricName,
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: Match.stringLikeRegexp('^IotIngestFunction') } }],
        Threshold: 1,
        EvaluationPeriods: 3,
        DatapointsToAlarm: 2,
        TreatMissingData: 'notBreaching',
      });
    }
    const { template } = operationsStack({ alarms: { lambdaErrors: 4, lambdaThrottles: 2 } });
    assert.equal(alarmNamed(template, 'meterbridge-test-iot-ingest-lambda-errors').Threshold, 4);
    assert.equal(alarmNamed(template, 'meterbridge-test-iot-ingest-lambda-throttles').Threshold, 2);
  });

  it('sums a metric with a Reason dimension through Metrics Insights for its alarm', () => {
    const alarm = alarmNamed(built.template, 'meterbridge-test-iot-messages-rejected');

    assert.deepEqual(alarm.Metrics, [
      {
        Expression: `SELECT SUM(MessagesRejected) FROM "Meterbridge" WHERE Stage = 'test' AND Source = 'iot'`,
        Id: 'expr_1',
        Label: 'MessagesRejected (iot, all Reason)',
        Period: 300,
        ReturnData: true,
      },
    ]);
    assert.equal(alarm.Threshold, 1);
    assert.equal(alarm.TreatMissingData, 'notBreaching');
  });

  it("applies a metric's catalog alarm spec (IngestErrors: 2 of 3 periods)", () => {
    const alarm = alarmNamed(built.template, 'meterbridge-test-iot-ingest-errors');

    assert.equal(alarm.EvaluationPeriods, 3);
    assert.equal(alarm.DatapointsToAlarm, 2);
  });

  it('lets cdk.json raise the threshold of a catalog alarm', () => {
    const { template } = operationsStack({ alarms: { metricThresholds: { SequenceGaps: 5 } } });

    const alarm = alarmNamed(template, 'meterbridge-test-iot-sequence-gaps');
    assert.equal(alarm.Threshold, 5);
    assert.match(String(alarm.AlarmDescription), /threshold 5 set for this stage/);
  });

  it('alarms on IoT rule failures, error-action failures and throttling over every action type', () => {
    for (const [suffix, metric] of [
      ['rule-failures', 'Failure'],
      ['rule-error-action-failures', 'ErrorActionFailure'],
      ['rule-throttled', 'RuleMessageThrottled'],
    ] as const) {
      const alarm = alarmNamed(built.template, `meterbridge-test-iot-telemetry-${suffix}`);
      const expression = flatten((alarm.Metrics as Array<{ Expression: unknown }>)[0]?.Expression);
      assert.equal(expression, `SELECT SUM(${metric}) FROM "AWS/IoT" WHERE RuleName = 'meterbridge_test_telemetry'`);
      assert.equal(alarm.Threshold, 1);
    }
  });

  it('alarms on throttling and system errors of both tables', () => {
    for (const table of ['readings', 'ledger']) {
      const throttles = alarmNamed(built.template, `meterbridge-test-${table}-table-throttles`);
      const metrics = throttles.Metrics as Array<{ Expression?: string; MetricStat?: { Metric: { MetricName: string } } }>;
      assert.deepEqual(metrics.map((m) => m.Expression ?? m.MetricStat?.Metric.MetricName).sort(), [
        'FILL(reads, 0) + FILL(writes, 0)',
        'ReadThrottleEvents',
        'WriteThrottleEvents',
      ]);
      const errors = alarmNamed(built.template, `meterbridge-test-${table}-table-system-errors`);
      assert.match(
        flatten((errors.Metrics as Array<{ Expression: unknown }>)[0]?.Expression),
        /^SELECT SUM\(SystemErrors\) FROM "AWS\/DynamoDB" WHERE TableName = '<Ref:Storage/,
      );
    }
  });

  it('combines every alarm into one composite "pipeline unhealthy" alarm notifying on ALARM and OK', () => {
    // GIVEN
    const memberIds = Object.keys(built.template.findResources('AWS::CloudWatch::Alarm'));
    const composite = Object.values(built.template.findResources('AWS::CloudWatch::CompositeAlarm'));
    assert.equal(composite.length, 1);
    const props = (composite[0] as { Properties: Record<string, unknown> }).Properties;

    // WHEN
    const rule = flatten(props.AlarmRule);

    // THEN
    assert.equal(props.AlarmName, 'meterbridge-test-pipeline-unhealthy');
    assert.deepEqual(rule.split(' OR ').length, memberIds.length);
    for (const id of memberIds) assert.ok(rule.includes(`ALARM("<GetAtt:${id}.Arn>")`), `${id} missing from the composite rule`);
    built.template.hasResourceProperties('AWS::CloudWatch::CompositeAlarm', topicActions);
  });

  it('notifies the topic on ALARM and OK from every alarm', () => {
    for (const alarm of Object.values(built.template.findResources('AWS::CloudWatch::Alarm'))) {
      assert.deepEqual(
        Object.keys(topicActions).map((key) => JSON.stringify((alarm as { Properties: Record<string, unknown> }).Properties[key])),
        [
          JSON.stringify([{ Ref: Object.keys(built.template.findResources('AWS::SNS::Topic'))[0] }]),
          JSON.stringify([{ Ref: Object.keys(built.template.findResources('AWS::SNS::Topic'))[0] }]),
        ],
      );
    }
  });

  it("gives a newly wired path an alarm for each of its catalog metrics with watch 'alarm'", () => {
    // GIVEN
    const { template } = operationsStack({}, (stack) => [fakePath(stack, 'smt')]);
    const expected = Object.entries(CATALOG)
      .filter(([name, spec]) => spec.sources.includes('smt') && spec.watch === 'alarm' && name !== 'ReadingsStored')
      .map(([name]) => `meterbridge-test-smt-${kebab(name)}`);

    // THEN
    for (const name of [
      ...expected,
      'meterbridge-test-smt-freshness',
      'meterbridge-test-smt-files-dlq',
      'meterbridge-test-smt-process-lambda-errors',
    ]) {
      alarmNamed(template, name);
    }
    // Over a day: hourly periods that must all be empty (no alarm period longer than a day).
    const freshness = alarmNamed(template, 'meterbridge-test-smt-freshness');
    assert.deepEqual(
      [freshness.Period, freshness.EvaluationPeriods, freshness.DatapointsToAlarm, freshness.TreatMissingData],
      [3600, 26, 26, 'breaching'],
    );
  });

  it("sets a queue's age alarm past its full retry cycle (10 min visibility x 5 receives + 15 min)", () => {
    const { template } = operationsStack({}, (stack) => [fakePath(stack, 'smt')]);

    const alarm = alarmNamed(template, 'meterbridge-test-smt-files-queue-age');
    assert.equal(alarm.Threshold, 65 * 60);
    assert.match(String(alarm.AlarmDescription), /full retry cycle \(50 min: visibility timeout x receives before the DLQ\)/);
  });

  it('adds a path alarm to the composite and refuses one without a stage-scoped name', () => {
    // GIVEN: a path handing over an alarm of its own
    const { template } = operationsStack({}, (stack) => {
      const path = fakePath(stack, 'ready');
      const alarm = new cloudwatch.Alarm(stack, 'Own', {
        alarmName: 'meterbridge-test-ready-own',
        metric: new cloudwatch.Metric({
          namespace: 'Meterbridge',
          metricName: 'SubscriptionInactive',
          dimensionsMap: { Source: 'ready', Stage: 'test' },
        }),
        threshold: 1,
        evaluationPeriods: 1,
      });
      return [{ ...path, alarms: [{ alarm, why: 'a test alarm of the path itself' }] }];
    });

    // THEN
    const rule = flatten(
      (Object.values(template.findResources('AWS::CloudWatch::CompositeAlarm'))[0] as { Properties: { AlarmRule: unknown } }).Properties.AlarmRule,
    );
    assert.ok(rule.includes('<GetAtt:Own'), rule.slice(0, 200));

    assert.throws(
      () =>
        operationsStack({}, (stack) => [
          {
            ...fakePath(stack, 'ready'),
            alarms: [
              {
                alarm: new cloudwatch.Alarm(stack, 'Unnamed', {
                  metric: new cloudwatch.Metric({ namespace: 'X', metricName: 'Y' }),
                  threshold: 1,
                  evaluationPeriods: 1,
                }),
                why: 'x',
              },
            ],
          },
        ]),
      /needs a literal name meterbridge-test-ready-/,
    );
  });

  it('refuses the same source twice', () => {
    assert.throws(() => operationsStack({}, (stack) => [fakePath(stack, 'smt'), fakePath(stack, 'smt', 'smtAgain')]), /given twice: smt/);
  });
});

describe('catalog alarm rules', () => {
  it('alarm a Count metric on any occurrence in 5 minutes by default', () => {
    const rule = alarmRule('SequenceGaps', 'Count', 'gaps', undefined);

    assert.equal(rule.threshold, 1);
    assert.equal(rule.periodMinutes, undefined);
    assert.match(rule.why, /no data = none happened/);
  });

  it("refuse a gauge with watch 'alarm' but no spec, naming the metric and the fix", () => {
    assert.throws(
      () => alarmRule('HoursSinceLastFile', 'None', 'hours', undefined),
      /HoursSinceLastFile \(unit None\) has watch 'alarm' but no `alarm` in lambdas\/core\/metric-catalog\.ts/,
    );
  });
});

describe('Operations dashboard', () => {
  let built: Built;
  before(() => {
    built = operationsStack();
  });

  it('is one dashboard per stage, named after it', () => {
    built.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    built.template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'meterbridge-test' });
  });

  it('shows the status of every alarm, the composite first', () => {
    // GIVEN
    const status = dashboardWidgets(built.template).filter((widget) => widget.type === 'alarm');

    // THEN
    assert.equal(status.length, 1);
    const arns = status[0]?.properties.alarms ?? [];
    const alarmCount = Object.keys(built.template.findResources('AWS::CloudWatch::Alarm')).length;
    assert.equal(arns.length, alarmCount + 1);
    assert.match(arns[0] ?? '', /^<GetAtt:OperationsAlarmsPipelineUnhealthy/);
  });

  it('has a band for the IoT path: outcomes, latency, freshness, queue, DLQ, function, rule, broker', () => {
    const titles = dashboardWidgets(built.template).map((widget) => widget.properties.title ?? widget.properties.markdown ?? '');

    for (const expected of [
      /^## IoT Core/,
      /^iot: readings by outcome; rejected input/,
      /^iot: end-to-end latency/,
      /^iot: freshness \(readings newly stored; alarm when none for 60 min\)/,
      /^iot: queue telemetry: depth; oldest message age/,
      /^iot: telemetry dead-letter queue/,
      /^iot: λ ingest: invocations, errors, throttles$/,
      /^iot: λ ingest: duration$/,
      /^iot: Sequence$/,
      /^IoT rule telemetry \(meterbridge_test_telemetry\)/,
      /^IoT rule telemetry: action and error-action outcomes/,
      /^IoT Core connections/,
      /^IoT Core inbound publishes/,
      /^readings table: throttle events/,
      /^ledger table: request latency p99/,
    ]) {
      assert.ok(
        titles.some((title) => expected.test(title)),
        `no widget titled ${expected}`,
      );
    }
  });

  it('draws a metric with a Reason dimension one line per reason', () => {
    const refs = dashboardWidgets(built.template).flatMap(widgetMetricRefs);

    assert.ok(refs.some((ref) => ref.metricName === 'MessagesRejected' && ref.form === 'search' && ref.dimensions.Source === 'iot'));
  });

  it('draws the broker connection metrics, including authentication failures', () => {
    const refs = dashboardWidgets(built.template)
      .flatMap(widgetMetricRefs)
      .filter((ref) => ref.namespace === 'AWS/IoT');

    for (const name of ['Connect.Success', 'Connection.AuthNError', 'PublishIn.Throttle', 'TopicMatch', 'RuleMessageThrottled']) {
      assert.ok(
        refs.some((ref) => ref.metricName === name),
        name,
      );
    }
  });

  it('draws requests and errors of an API a path exposes', () => {
    const { template } = operationsStack({}, (stack) => [
      { ...fakePath(stack, 'ready'), apis: [{ label: 'webhook', apiName: 'meterbridge-test-ready', stageName: 'test' }] },
    ]);

    const refs = dashboardWidgets(template)
      .flatMap(widgetMetricRefs)
      .filter((ref) => ref.namespace === 'AWS/ApiGateway');
    assert.deepEqual([...new Set(refs.map((ref) => ref.metricName))].sort(), ['4XXError', '5XXError', 'Count', 'IntegrationLatency', 'Latency']);
    assert.ok(refs.every((ref) => ref.dimensions.ApiName === 'meterbridge-test-ready' && ref.dimensions.Stage === 'test'));
  });

  it('keeps every widget inside the 24-column grid', () => {
    for (const widget of dashboardWidgets(built.template) as Array<{ x?: number; width?: number }>) {
      assert.ok((widget.x ?? 0) + (widget.width ?? 0) <= 24);
    }
  });
});

describe('Operations under cdk-nag', () => {
  it('adds no AwsSolutions finding of its own', () => {
    // GIVEN
    const { stack } = operationsStack();

    // WHEN
    const report = new AwsSolutionsChecks().validateScope(stack);

    // THEN: nothing at all, and in particular nothing under Operations
    const findings = report.violations.flatMap((violation) =>
      violation.violatingResources.map((resource) => `${violation.ruleName} at ${resource.constructPath ?? '?'}`),
    );
    assert.deepEqual(findings, []);
  });
});

describe('alarm settings (cdk.json `alarms`)', () => {
  const parse = (alarms: unknown) => parseStageSettings('dev', { dev: { ...TEST_STAGE_RAW, alarms } });
  function rejects(alarms: unknown, key: string): void {
    assert.throws(
      () => parse(alarms),
      (error: unknown) => error instanceof StageSettingsError && error.message.startsWith(`meterbridge:stages.dev.alarms${key}: `),
    );
  }

  it('defaults every threshold when the block is absent', () => {
    assert.deepEqual(parseStageSettings('dev', { dev: TEST_STAGE_RAW }).alarms, DEFAULT_ALARM_SETTINGS);
  });

  it('reads per-source windows, counts and metric thresholds', () => {
    const alarms = parse({
      freshnessMinutes: { smt: 1560 },
      queueAgeMinutes: { iot: 20 },
      lambdaErrors: 3,
      metricThresholds: { SequenceGaps: 10 },
    }).alarms;

    assert.deepEqual(alarms, {
      ...DEFAULT_ALARM_SETTINGS,
      freshnessMinutes: { smt: 1560 },
      queueAgeMinutes: { iot: 20 },
      lambdaErrors: 3,
      metricThresholds: { SequenceGaps: 10 },
    });
  });

  it('names the bad key', () => {
    rejects({ freshnesMinutes: {} }, '.freshnesMinutes');
    rejects({ freshnessMinutes: { mqtt: 60 } }, '.freshnessMinutes.mqtt');
    rejects({ freshnessMinutes: { iot: 20000 } }, '.freshnessMinutes.iot');
    rejects({ queueAgeMinutes: { iot: 0 } }, '.queueAgeMinutes.iot');
    rejects({ lambdaErrors: 0.5 }, '.lambdaErrors');
    rejects({ tableThrottles: '1' }, '.tableThrottles');
    rejects({ metricThresholds: { ReadingsSuperseded: 1 } }, '.metricThresholds.ReadingsSuperseded');
    rejects({ metricThresholds: { ReadingsStored: 1 } }, '.metricThresholds.ReadingsStored');
    rejects({ metricThresholds: { SequenceGaps: -1 } }, '.metricThresholds.SequenceGaps');
    rejects([], '');
  });
});
