/**
 * What an ingestion path hands to the operations construct (dashboard and alarms): the AWS
 * resources whose own metrics matter. Each ingestion construct exposes one `monitoring` property
 * of this shape, so the dashboard and the alarm set are built from the paths that exist rather
 * than from a hand-kept list.
 */
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { MetricSource } from '../lambdas/core/metric-catalog.ts';

export interface MonitoredFunction {
  /** Short label for widgets and alarm names, e.g. 'ingest', 'fetch', 'process', 'webhook'. */
  label: string;
  fn: lambda.IFunction;
}

export interface MonitoredQueue {
  /** Short label, e.g. 'telemetry', 'files'. */
  label: string;
  /** The work queue (depth and oldest-message age are watched). */
  queue: sqs.IQueue;
  /** Its dead-letter queue (any message there is an alarm). */
  deadLetterQueue: sqs.IQueue;
}

export interface IngestionMonitoring {
  source: MetricSource;
  functions: MonitoredFunction[];
  queues: MonitoredQueue[];
  /**
   * Longest silence (no ReadingsStored for this source) that is still normal, in minutes: the
   * freshness alarm fires after it. Gateways report every 15 min; SMT delivers daily files.
   */
  expectedSilenceMinutes: number;
  /** IoT topic rules feeding this path: their failures, error-action failures and throttling are alarmed. */
  topicRules?: MonitoredTopicRule[];
  /** API Gateway REST API stages receiving this path's traffic: requests, 4xx/5xx and latency are graphed. */
  apis?: MonitoredApi[];
  /**
   * Alarms the path makes itself (prefer a catalog `alarm` spec): they join the composite alarm,
   * the alarm status widget and the runbook check. They must notify the alarm topic themselves.
   */
  alarms?: MonitoredAlarm[];
}

export interface MonitoredAlarm {
  /** Must be created with a literal `alarmName` of the form `meterbridge-<stage>-<source>-...`. */
  alarm: cloudwatch.Alarm;
  /** One line defending its threshold and missing-data treatment (goes into the runbook table). */
  why: string;
}

export interface MonitoredTopicRule {
  /** Short label, e.g. 'telemetry'. */
  label: string;
  /** The rule's name (its RuleName dimension in AWS/IoT). */
  ruleName: string;
}

export interface MonitoredApi {
  /** Short label, e.g. 'webhook'. */
  label: string;
  /** The REST API's name (ApiName dimension in AWS/ApiGateway). */
  apiName: string;
  /** The deployed stage's name (Stage dimension). */
  stageName: string;
}
