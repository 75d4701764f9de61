/**
 * The operations consistency check (issue 7): the metric catalog, the synthesized dashboard and
 * alarms, and the runbook (docs/runbook.md) agree with each other.
 *
 * Everything is derived from the catalog and from the stack as it is wired today, so an ingestion
 * path or a catalog metric added later is checked without editing this file.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { METRIC_CATALOG, READING_STATUS_METRIC, type MetricSource, type MetricSpec } from '../../lambdas/core/metric-catalog.ts';
import { METRICS_NAMESPACE } from '../../lib/meterbridge-function.ts';
import { MeterbridgeStack } from '../../lib/meterbridge-stack.ts';
import { testSettings } from '../fixtures/stage-settings.ts';
import { alarmMetricRefs, alarms, dashboardWidgets, widgetMetricRefs, type AlarmResource, type MetricRef } from '../support/cloudwatch-template.ts';

const STAGE = 'test';
const CATALOG = METRIC_CATALOG as Readonly<Record<string, MetricSpec>>;

/**
 * Metrics AWS services publish that meterbridge alarms or draws on (from each service's
 * "metrics and dimensions" documentation page). '*' stands for a SEARCH over a whole schema.
 */
const AWS_METRICS: Readonly<Record<string, readonly string[]>> = {
  'AWS/SQS': ['ApproximateNumberOfMessagesVisible', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateAgeOfOldestMessage'],
  'AWS/Lambda': ['Invocations', 'Errors', 'Throttles', 'Duration'],
  'AWS/IoT': [
    'TopicMatch',
    'RuleMessageThrottled',
    'ParseError',
    'Success',
    'Failure',
    'ErrorActionSuccess',
    'ErrorActionFailure',
    '*',
    'Connect.Success',
    'Connect.AuthError',
    'Connection.AuthNError',
    'Connect.ClientError',
    'Connect.Throttle',
    'Connect.ClientIDThrottle',
    'PublishIn.Success',
    'PublishIn.Throttle',
    'PublishIn.AuthError',
    'PublishIn.ClientError',
  ],
  'AWS/DynamoDB': [
    'ReadThrottleEvents',
    'WriteThrottleEvents',
    'SystemErrors',
    'ConsumedReadCapacityUnits',
    'ConsumedWriteCapacityUnits',
    'SuccessfulRequestLatency',
  ],
  'AWS/ApiGateway': ['Count', '4XXError', '5XXError', 'Latency', 'IntegrationLatency'],
};

/** Every .ts file that deploys: under lambdas/ and the shared/ code the handlers import. */
function lambdaSources(): string[] {
  return ['../../lambdas/', '../../shared/'].flatMap((folder) => {
    const root = fileURLToPath(new URL(folder, import.meta.url));
    return (readdirSync(root, { recursive: true }) as string[]).filter((file) => file.endsWith('.ts')).map((file) => join(root, file));
  });
}

/** The runbook: docs/runbook.md, from its `# Runbook` title on. */
function runbookSection(): string {
  const runbook = readFileSync(new URL('../../docs/runbook.md', import.meta.url), 'utf8');
  assert.ok(runbook.startsWith('# Runbook\n'), 'docs/runbook.md does not start with "# Runbook"');
  return runbook;
}

/** `meterbridge-test-iot-freshness` -> `meterbridge-<stage>-iot-freshness`, as the runbook writes it. */
function generic(name: string): string {
  return name.replace(`meterbridge-${STAGE}-`, 'meterbridge-<stage>-');
}

/** `(metric, source)` pairs a set of references covers in the Meterbridge namespace. */
function customPairs(refs: MetricRef[]): Set<string> {
  return new Set(refs.filter((ref) => ref.namespace === METRICS_NAMESPACE).map((ref) => `${ref.metricName}/${ref.dimensions.Source ?? '?'}`));
}

describe('operations consistency', () => {
  let template: Template;
  let sources: readonly MetricSource[];
  let alarmList: AlarmResource[];
  let dashboardRefs: MetricRef[];
  let alarmRefs: Array<{ alarm: AlarmResource; refs: MetricRef[] }>;
  let known: ReadonlyArray<{ name: string; why: string }>;
  let pathAlarmNames: Set<string>;

  before(() => {
    // The real stack as wired today; bundling skipped, the Lambda code is not what is checked here.
    const stack = new MeterbridgeStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Meterbridge-test', {
      settings: testSettings({}, STAGE),
    });
    template = Template.fromStack(stack);
    sources = stack.operations.sources;
    known = stack.operations.allAlarms;
    pathAlarmNames = new Set(stack.operations.alarms.pathAlarms.map((entry) => entry.name));
    alarmList = alarms(template);
    dashboardRefs = dashboardWidgets(template).flatMap(widgetMetricRefs);
    alarmRefs = alarmList.map((alarm) => ({ alarm, refs: alarmMetricRefs(alarm) }));
  });

  /** Catalog (metric, source) pairs for the sources wired into the stack. */
  function wiredCatalogPairs(filter: (spec: MetricSpec) => boolean = () => true): string[] {
    return Object.entries(CATALOG).flatMap(([name, spec]) =>
      filter(spec) ? spec.sources.filter((source) => sources.includes(source)).map((source) => `${name}/${source}`) : [],
    );
  }

  it('watches at least the IoT path', () => {
    assert.ok(sources.includes('iot'), `sources: ${sources.join(', ')}`);
  });

  it('draws every catalog metric of every wired source on the dashboard', (t) => {
    // GIVEN
    const drawn = customPairs(dashboardRefs);

    // WHEN
    const missing = wiredCatalogPairs().filter((pair) => !drawn.has(pair));

    // THEN
    assert.deepEqual(missing, [], `catalog metrics missing from the dashboard (metric/source)`);
    const unwired = Object.entries(CATALOG)
      .filter(([, spec]) => !spec.sources.some((source) => sources.includes(source)))
      .map(([name]) => name);
    if (unwired.length > 0) t.diagnostic(`not drawn until their source is wired into the stack: ${unwired.join(', ')}`);
  });

  it("puts an alarm on every catalog metric with watch 'alarm', for every wired source", () => {
    // GIVEN
    const alarmed = customPairs(alarmRefs.flatMap(({ refs }) => refs));

    // WHEN
    const missing = wiredCatalogPairs((spec) => spec.watch === 'alarm').filter((pair) => !alarmed.has(pair));

    // THEN
    assert.deepEqual(missing, [], "catalog metrics with watch 'alarm' that no alarm watches (metric/source)");
  });

  it('finds every catalog metric published somewhere in the handler code', () => {
    // GIVEN: the sources under lambdas/ (the catalog itself aside)
    const code = lambdaSources()
      .filter((file) => !file.endsWith('metric-catalog.ts'))
      .map((file) => readFileSync(file, 'utf8'))
      .join('\n');
    const viaStatusMap = new Set<string>(code.includes('READING_STATUS_METRIC') ? Object.values(READING_STATUS_METRIC) : []);

    // WHEN
    const unpublished = Object.keys(CATALOG).filter((name) => !viaStatusMap.has(name) && !code.includes(`'${name}'`));

    // THEN: an alarm on one of these would watch a metric nobody sends
    assert.deepEqual(unpublished, []);
  });

  it('says why every informational catalog metric needs no alarm', () => {
    const silent = Object.entries(CATALOG)
      .filter(([, spec]) => spec.watch === 'informational' && (spec.why ?? '').trim() === '')
      .map(([name]) => name);

    assert.deepEqual(silent, []);
  });

  it('references only catalog metrics in the Meterbridge namespace, with a source the catalog lists', () => {
    // GIVEN
    const everywhere = [
      ...dashboardRefs.map((ref) => ({ where: 'dashboard', ref })),
      ...alarmRefs.flatMap(({ alarm, refs }) => refs.map((ref) => ({ where: alarm.name, ref }))),
    ].filter(({ ref }) => ref.namespace === METRICS_NAMESPACE);

    // WHEN
    const unknown = everywhere
      .filter(({ ref }) => {
        const spec = CATALOG[ref.metricName];
        return spec === undefined || !spec.sources.includes(ref.dimensions.Source as MetricSource) || ref.dimensions.Stage !== STAGE;
      })
      .map(({ where, ref }) => `${where}: ${ref.metricName} ${JSON.stringify(ref.dimensions)}`);

    // THEN
    assert.ok(everywhere.length > 0, 'no custom metric found at all: the parser is broken');
    assert.deepEqual(unknown, [], 'metrics nobody publishes (not in lambdas/core/metric-catalog.ts, or for another source/stage)');
  });

  it('references only AWS metrics the services publish', () => {
    const refs = [...dashboardRefs, ...alarmRefs.flatMap(({ refs }) => refs)].filter((ref) => ref.namespace !== METRICS_NAMESPACE);

    const unknown = refs
      .filter((ref) => !(AWS_METRICS[ref.namespace] ?? []).includes(ref.metricName))
      .map((ref) => `${ref.namespace} ${ref.metricName}`);

    assert.ok(refs.length > 0);
    assert.deepEqual([...new Set(unknown)], []);
  });

  it('gives every metric alarm at least one metric to watch', () => {
    const blind = alarmRefs.filter(({ alarm, refs }) => alarm.type === 'AWS::CloudWatch::Alarm' && refs.length === 0).map(({ alarm }) => alarm.name);

    assert.deepEqual(blind, []);
  });

  it('names every alarm meterbridge-<stage>-..., each name once', () => {
    const names = alarmList.map((alarm) => alarm.name);

    assert.deepEqual(
      names.filter((name) => !/^meterbridge-test-[a-z0-9]+(-[a-z0-9]+)*$/.test(name)),
      [],
    );
    assert.equal(new Set(names).size, names.length);
  });

  it('notifies the alarm topic on ALARM and on OK from every alarm, composite included', () => {
    // GIVEN
    const topic = Object.keys(template.findResources('AWS::SNS::Topic'));
    assert.equal(topic.length, 1);
    const expected = [{ Ref: topic[0] }];

    // THEN
    for (const alarm of alarmList) {
      assert.deepEqual(alarm.properties.AlarmActions, expected, `${alarm.name} AlarmActions`);
      assert.deepEqual(alarm.properties.OKActions, expected, `${alarm.name} OKActions`);
    }
  });

  it('knows every alarm in the stack, so the composite and the status widget cover them all', () => {
    const names = new Set(known.map((entry) => entry.name));

    assert.deepEqual(
      alarmList.map((alarm) => alarm.name).filter((name) => !names.has(name)),
      [],
      'alarms the operations construct does not know of',
    );
  });

  it('explains every alarm in its description; its own alarms also point to the runbook', () => {
    for (const alarm of alarmList) {
      const description = String(alarm.properties.AlarmDescription ?? '');
      assert.ok(description.length > 40, `${alarm.name} has no reason in its description`);
      if (pathAlarmNames.has(alarm.name)) continue;
      assert.ok(description.includes(generic(alarm.name)), `${alarm.name}: description should name its runbook entry`);
    }
  });

  it('covers every alarm by name in the runbook, with its reason', () => {
    // GIVEN
    const runbook = runbookSection();

    // WHEN: each alarm needs its row in the alarm table (name and why) ...
    const rows = known.map(({ name, why }) => `| \`${generic(name)}\` | ${why} |`);
    const missingRows = rows.filter((row) => !runbook.includes(row));

    // THEN
    assert.deepEqual(missingRows, [], 'rows missing from the alarm table of docs/runbook.md (paste them in)');
  });

  it('gives every alarm a runbook entry: a ### heading naming it, or its family', () => {
    // GIVEN: headings like "### `meterbridge-<stage>-<source>-<queue>-dlq`"
    const runbook = runbookSection();
    const headingNames = [...runbook.matchAll(/^###[^\n]*$/gm)].flatMap((heading) =>
      [...heading[0].matchAll(/`(meterbridge-<stage>-[^`]+)`/g)].map((m) => m[1] as string),
    );
    const patterns = headingNames.map(
      (name) =>
        new RegExp(
          `^${name
            .replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
            .replace('<stage>', STAGE)
            .replace(/<source>/g, '(iot|smt|ready)')
            .replace(/<(queue|function|rule|table|label)>/g, '[a-z0-9]+(?:-[a-z0-9]+)*')}$`,
        ),
    );

    // WHEN
    const uncovered = alarmList.map((alarm) => alarm.name).filter((name) => !patterns.some((pattern) => pattern.test(name)));

    // THEN
    assert.ok(headingNames.length > 0, 'no runbook entries found');
    assert.deepEqual(uncovered.map(generic), [], 'alarms without a runbook entry (### heading) in docs/runbook.md');
  });
});
