/**
 * Operations of one stage: the alarm set (lib/operations/alarms.ts) and the dashboard
 * (lib/operations/dashboard.ts), both built from the metric catalog and from what each ingestion
 * path exposes as `monitoring`. Adding an ingestion path to the stack's list is all it takes to
 * give it alarms, a dashboard band, and a place in the composite "pipeline unhealthy" alarm.
 */
import { Construct } from 'constructs';
import type { MetricSource } from '../lambdas/core/metric-catalog.ts';
import type { AlarmTopic } from './alarm-topic.ts';
import type { IngestionMonitoring, MonitoredAlarm } from './monitoring.ts';
import { OperationsAlarms, type OperationsAlarm } from './operations/alarms.ts';
import { OperationsDashboard } from './operations/dashboard.ts';
import type { StageSettings } from './settings.ts';
import type { ReadingStorage } from './storage.ts';

export type { OperationsAlarm } from './operations/alarms.ts';

export interface OperationsProps {
  /** Stage name (alarm and dashboard names) and alarm thresholds (`alarms` in cdk.json). */
  readonly settings: StageSettings;
  /** The tables whose throttling and system errors are watched. */
  readonly storage: ReadingStorage;
  /** Notified by every alarm on ALARM and on OK. */
  readonly alarmTopic: AlarmTopic;
  /** One entry per ingestion path in the stack (each construct's `monitoring`), each source once. */
  readonly ingestion: readonly IngestionMonitoring[];
  /** Alarms of stage-wide parts that are no ingestion path (the readings feed's DLQ), named `meterbridge-<stage>-...`. */
  readonly stageAlarms?: readonly MonitoredAlarm[];
}

export class Operations extends Construct {
  public readonly alarms: OperationsAlarms;
  public readonly dashboard: OperationsDashboard;
  /** The sources watched, in the order given. */
  public readonly sources: readonly MetricSource[];

  constructor(scope: Construct, id: string, props: OperationsProps) {
    super(scope, id);
    this.sources = props.ingestion.map((path) => path.source);
    this.alarms = new OperationsAlarms(this, 'Alarms', props);
    this.dashboard = new OperationsDashboard(this, 'Dashboard', { ...props, alarms: this.alarms });
  }

  /** Every alarm of the stage with its name and reason (the paths' own included), the composite last. */
  public get allAlarms(): ReadonlyArray<Pick<OperationsAlarm, 'name' | 'why'>> {
    return [...this.alarms.alarms, ...this.alarms.pathAlarms, { name: this.alarms.pipelineUnhealthyName, why: this.alarms.pipelineUnhealthyWhy }];
  }
}
