/**
 * Every custom metric meterbridge publishes, in one place (namespace `Meterbridge`).
 *
 * `Metrics.count` and `Metrics.record` accept only these names, so TypeScript refuses a metric
 * that is not listed here. The operations construct (dashboard, alarms) and its consistency test
 * read this catalog: every metric is on the dashboard, and each one either has an alarm
 * (`watch: 'alarm'`) or is informational by decision (`watch: 'informational'`, with the reason).
 *
 * Every datum carries the dimensions Stage and Source (`iot`, `smt`, `ready`); some add Reason,
 * Step or Status as listed.
 */
import type { WriteStatus } from './interval-block.ts';
import type { DimensionName, MetricUnit } from './metrics.ts';

export type MetricSource = 'iot' | 'smt' | 'ready';

export interface MetricSpec {
  unit: MetricUnit;
  /** Sources that emit it (its Source dimension values). */
  sources: readonly MetricSource[];
  /** Dimensions beyond Stage and Source. */
  extraDimensions?: readonly DimensionName[];
  /** 'alarm': an alarm watches it. 'informational': on the dashboard only; `why` says why that is enough. */
  watch: 'alarm' | 'informational';
  why?: string;
  description: string;
}

const ALL: readonly MetricSource[] = ['iot', 'smt', 'ready'];

export const METRIC_CATALOG = {
  // The reading store, per source (one per WriteStatus).
  ReadingsStored: { unit: 'Count', sources: ALL, watch: 'alarm', description: 'readings written for the first time (the freshness alarms watch this)' },
  ReadingsSuperseded: { unit: 'Count', sources: ALL, watch: 'informational', why: 'revisions replacing estimates are normal (SMT revised days)', description: 'readings replaced by a later revision' },
  ReadingsDuplicate: { unit: 'Count', sources: ALL, watch: 'informational', why: 're-sent packets and re-pulled files are expected; idempotency absorbs them', description: 'readings already stored with the same value and revision' },
  ReadingsStale: { unit: 'Count', sources: ALL, watch: 'informational', why: 'an older revision arriving late is harmless and kept out', description: 'readings older than the stored revision, not written' },
  ReadingsConflict: { unit: 'Count', sources: ALL, watch: 'alarm', description: 'same revision, different value: a source is inconsistent' },
  IngestLatency: { unit: 'Seconds', sources: ALL, watch: 'informational', why: 'the freshness alarm (ReadingsStored missing) covers data that stops; latency itself varies by source by design (SMT is a day late)', description: 'reading end -> stored, seconds' },

  // Ingestion path 1: IoT Core telemetry.
  MessagesReceived: { unit: 'Count', sources: ['iot'], watch: 'informational', why: 'volume only; the freshness alarm covers silence', description: 'telemetry messages taken from the queue' },
  MessagesRejected: { unit: 'Count', sources: ['iot'], extraDimensions: ['Reason'], watch: 'alarm', description: 'messages refused (bad JSON, schema, thing mismatch); the original is in the DLQ' },
  MessagesFromRuleErrorAction: { unit: 'Count', sources: ['iot'], watch: 'informational', why: 'these are replays of what the topic rule failed to deliver; the rule failure itself is alarmed on AWS/IoT', description: 'messages redriven from the rule error action' },
  MessagesDuplicate: { unit: 'Count', sources: ['iot'], watch: 'informational', why: 'QoS 1 re-sends are expected', description: 'messages already ingested (ledger hit)' },
  IngestErrors: { unit: 'Count', sources: ['iot'], watch: 'alarm', description: 'transient failures; the message is retried and lands in the DLQ after 5 tries' },
  SequenceGaps: { unit: 'Count', sources: ['iot'], watch: 'alarm', description: 'message sequence numbers a gateway skipped (possible loss in the field)' },
  SequenceLate: { unit: 'Count', sources: ['iot'], watch: 'informational', why: 'a late message is one that arrived, only out of order', description: 'messages with a seq below the highest seen' },
  SequenceResets: { unit: 'Count', sources: ['iot'], watch: 'informational', why: 'a gateway restarting its sequence (re-install) is logged with its id', description: 'gateway seq restarted at 1' },
} as const satisfies Record<string, MetricSpec>;

export type MetricName = keyof typeof METRIC_CATALOG;

/** The store metric for each write outcome. */
export const READING_STATUS_METRIC: Record<WriteStatus, MetricName> = {
  stored: 'ReadingsStored',
  superseded: 'ReadingsSuperseded',
  duplicate: 'ReadingsDuplicate',
  stale: 'ReadingsStale',
  conflict: 'ReadingsConflict',
};
