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

/** The only dimension names metrics may carry: low-cardinality by construction (lambdas/core/metrics.ts refuses others). */
export const ALLOWED_DIMENSIONS = ['Stage', 'Source', 'Step', 'Status', 'Reason'] as const;
export type DimensionName = (typeof ALLOWED_DIMENSIONS)[number];

/** The CloudWatch units meterbridge's metrics use (a subset of the SDK's StandardUnit). */
export type MetricUnit = 'Count' | 'Seconds' | 'Milliseconds' | 'Bytes' | 'None';

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
  /**
   * How the alarm on a `watch: 'alarm'` metric is set (lib/operations). Without it a Count metric
   * alarms on any occurrence in 5 minutes (Sum >= 1, no data = fine); any other unit must say
   * here what is abnormal, because a gauge's threshold and direction cannot be guessed.
   */
  alarm?: MetricAlarmSpec;
}

export interface MetricAlarmSpec {
  /** @default 'Sum' for Count metrics, 'Maximum' otherwise */
  statistic?: 'Sum' | 'Maximum' | 'Minimum' | 'Average';
  /** 'above': alarm when statistic >= threshold; 'below': when statistic < threshold. @default 'above' */
  comparison?: 'above' | 'below';
  threshold: number;
  /** @default 5 */
  periodMinutes?: number;
  /** Periods looked at. @default 1 */
  evaluationPeriods?: number;
  /** Bad periods among them that alarm. @default evaluationPeriods */
  datapointsToAlarm?: number;
  /** What a period without data means: 'notBreaching' (fine), 'breaching', or 'ignore' (keep the state). @default 'notBreaching' */
  missingData?: 'notBreaching' | 'breaching' | 'ignore';
  /** One line defending threshold and missing-data treatment; shown in the alarm and the runbook. */
  why: string;
}

const ALL: readonly MetricSource[] = ['iot', 'smt', 'ready'];

export const METRIC_CATALOG = {
  // The reading store, per source (one per WriteStatus).
  ReadingsStored: {
    unit: 'Count',
    sources: ALL,
    watch: 'alarm',
    description: 'readings written for the first time (the freshness alarms watch this)',
  },
  ReadingsSuperseded: {
    unit: 'Count',
    sources: ALL,
    watch: 'informational',
    why: 'revisions replacing estimates are normal (SMT revised days)',
    description: 'readings replaced by a later revision',
  },
  ReadingsDuplicate: {
    unit: 'Count',
    sources: ALL,
    watch: 'informational',
    why: 're-sent packets and re-pulled files are expected; idempotency absorbs them',
    description: 'readings already stored with the same value and revision',
  },
  ReadingsStale: {
    unit: 'Count',
    sources: ALL,
    watch: 'informational',
    why: 'an older revision arriving late is harmless and kept out',
    description: 'readings older than the stored revision, not written',
  },
  ReadingsConflict: { unit: 'Count', sources: ALL, watch: 'alarm', description: 'same revision, different value: a source is inconsistent' },
  IngestLatency: {
    unit: 'Seconds',
    sources: ALL,
    watch: 'informational',
    why: 'the freshness alarm (ReadingsStored missing) covers data that stops; latency itself varies by source by design (SMT is a day late)',
    description: 'reading end -> stored, seconds',
  },

  // Ingestion path 1: IoT Core telemetry.
  MessagesReceived: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'informational',
    why: 'volume only; the freshness alarm covers silence',
    description: 'telemetry messages taken from the queue',
  },
  MessagesRejected: {
    unit: 'Count',
    sources: ['iot'],
    extraDimensions: ['Reason'],
    watch: 'alarm',
    description: 'messages refused (bad JSON, schema, thing mismatch); the original is in the DLQ',
  },
  MessagesFromRuleErrorAction: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'informational',
    why: 'these are replays of what the topic rule failed to deliver; the rule failure itself is alarmed on AWS/IoT',
    description: 'messages redriven from the rule error action',
  },
  MessagesDuplicate: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'informational',
    why: 'QoS 1 re-sends are expected',
    description: 'messages already ingested (ledger hit)',
  },
  IngestErrors: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'alarm',
    description: 'transient failures; the message is retried and lands in the DLQ after 5 tries',
    alarm: {
      threshold: 1,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      why: 'a retried blip heals itself; errors in 2 of 3 five-minute periods mean a dependency keeps failing (what is finally lost shows on the DLQ alarm)',
    },
  },
  SequenceGaps: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'alarm',
    description: 'message sequence numbers a gateway skipped (possible loss in the field)',
  },
  SequenceLate: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'informational',
    why: 'a late message is one that arrived, only out of order',
    description: 'messages with a seq below the highest seen',
  },
  GatewayClockSkew: {
    unit: 'Seconds',
    sources: ['iot'],
    watch: 'alarm',
    description:
      "a message's sentAt (the gateway's clock) minus the topic rule's timestamp() on arrival, seconds: positive = the gateway clock is ahead; re-sends (ledger duplicates, late seqs) are left out",
    alarm: {
      statistic: 'Maximum',
      threshold: 120,
      periodMinutes: 5,
      why: 'a clock 2 minutes ahead shifts interval starts and breaks mTLS handshakes (certificate not yet valid); time a message spent in the outbox only lowers the value, so a high Maximum is the clock, never the network; no data = no gateway messages (freshness covers silence)',
    },
  },
  // Gateway fleet: rotation notices and status reports (lambdas/core/gateway-fleet.ts).
  GatewayCertificateAgeDays: {
    unit: 'None',
    sources: ['iot'],
    watch: 'alarm',
    description:
      "age in days of the certificate each gateway is connected with, from its status report (one datum per report; the Maximum is the fleet's most overdue gateway, named in the fleet function's log)",
    alarm: {
      statistic: 'Maximum',
      threshold: 104,
      periodMinutes: 60,
      why: 'gateways rotate every 90 days (rotation.intervalDays); 14 days past that a gateway has failed to rotate for two weeks of retries and its certificate is heading for expiry; no data = no status reports (GatewaysReporting and freshness cover silence)',
    },
  },
  RotationsRefused: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'alarm',
    extraDimensions: ['Reason'],
    description: 'rotation notices the fleet function refused (Reason: invalid, not-attached, refused), with the gateway and reason in its log',
  },
  CertificatesRotated: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'informational',
    why: 'the normal outcome of a rotation; refusals and overdue certificates are what alarm',
    extraDimensions: ['Step'],
    description: 'rotation steps done (Step: activate = new certificate active and attached, retire = old one revoked and detached)',
  },
  GatewaysReporting: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'informational',
    why: 'silence is covered by the freshness alarms on ReadingsStored; this counts status reports to show the fleet on the dashboard',
    description: 'gateway status reports received (every gateway reports every health.reportEverySeconds)',
  },
  GatewaySpoolDepth: {
    // A gauge, not a count: 'None' makes the dashboard plot its Maximum (Count metrics are summed).
    unit: 'None',
    sources: ['iot'],
    watch: 'informational',
    why: 'a deep spool with data still arriving is a drain in progress; readings not arriving alarm through freshness and SequenceGaps',
    description: 'readings a gateway holds unacknowledged, per status report (dashboard: Maximum across the fleet)',
  },
  GatewayOldestUnsentSeconds: {
    unit: 'Seconds',
    sources: ['iot'],
    watch: 'informational',
    why: 'shown beside spool depth; a gateway that cannot deliver is silent and the freshness alarms fire',
    description: 'age of the oldest reading a gateway has not delivered, per status report',
  },
  GatewayReadErrors: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'informational',
    why: 'a meter read error is a field fault per meter; the gateway logs which meter, and missing intervals show in the data',
    description: 'meter read errors a gateway counted since its previous status report',
  },
  SequenceResets: {
    unit: 'Count',
    sources: ['iot'],
    watch: 'informational',
    why: 'a gateway restarting its sequence (re-install) is logged with its id',
    description: 'gateway seq restarted at 1',
  },

  // Ingestion path 2: Smart Meter Texas files (scheduled FTPS/SFTP pull, archive, PGP, parse).
  FilesFetched: {
    unit: 'Count',
    sources: ['smt'],
    watch: 'informational',
    why: 'volume only; HoursSinceLastFile carries the freshness alarm',
    description: 'SMT files archived to S3 by the fetch step (counted also when zero)',
  },
  BytesFetched: {
    unit: 'Bytes',
    sources: ['smt'],
    watch: 'informational',
    why: 'volume only, for capacity and cost',
    description: 'bytes of SMT files archived',
  },
  FetchErrors: {
    unit: 'Count',
    sources: ['smt'],
    extraDimensions: ['Reason'],
    watch: 'alarm',
    description:
      'fetch-step failures (Reason: auth = login, certificate or host key refused; connect; list; transfer; archive; delete); the file stays on the SMT server for the next run',
    alarm: {
      threshold: 1,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      periodMinutes: 15,
      why: 'one failed run heals on the next schedule; two of three failing runs mean the connection or credentials are broken, and SMT deletes files after 10 days',
    },
  },
  FilesProcessed: {
    unit: 'Count',
    sources: ['smt'],
    watch: 'informational',
    why: 'volume only; failures are alarmed as FilesFailed',
    description: 'archived SMT files decrypted, parsed and stored',
  },
  FilesDuplicate: {
    unit: 'Count',
    sources: ['smt'],
    watch: 'informational',
    why: 'a re-delivered S3 event or a replay of a completed file is absorbed by the ledger',
    description: 'archived files already processed (ledger hit), skipped',
  },
  FilesFailed: {
    unit: 'Count',
    sources: ['smt'],
    extraDimensions: ['Reason'],
    watch: 'alarm',
    description:
      'archived SMT files, or members of a ZIP bundle, refused for good (Reason: wrong-key, integrity, corrupt, not-pgp, too-large, layout, unknown-type, bundle, invalid-reading, incomplete-archive); the original stays in the archive for `meterbridge smt replay`',
  },
  FilesUnsupported: {
    unit: 'Count',
    sources: ['smt'],
    watch: 'informational',
    why: 'monthly billing summaries are recognised and not stored by decision (docs/smt.md); the original stays in the archive',
    description: 'SMT files or bundle members of a recognised type meterbridge does not store (reason unsupported-type)',
  },
  DecryptFailures: {
    unit: 'Count',
    sources: ['smt'],
    extraDimensions: ['Reason'],
    watch: 'alarm',
    description: 'PGP decryption or integrity failures (wrong key, tampered or truncated file)',
  },
  IntervalsMissing: {
    unit: 'Count',
    sources: ['smt'],
    watch: 'informational',
    why: 'SMT leaves intervals blank until the meter is read; a later revision fills them',
    description: 'blank intervals in SMT files (missing, not stored as zero)',
  },
  OldestUnfetchedFileAge: {
    unit: 'Seconds',
    sources: ['smt'],
    watch: 'alarm',
    description: 'age of the oldest file left on the SMT server after a fetch run (0 when none is left)',
    alarm: {
      statistic: 'Maximum',
      threshold: 6 * 3600,
      periodMinutes: 60,
      why: 'runs every 15 minutes drain the folders; a file older than 6 hours is stuck (SMT deletes files after 10 days)',
    },
  },
  HoursSinceLastFile: {
    unit: 'None',
    sources: ['smt'],
    watch: 'alarm',
    description: 'hours since the fetch step last archived a new SMT file (recorded on every run)',
    alarm: {
      statistic: 'Maximum',
      threshold: 36,
      periodMinutes: 60,
      missingData: 'breaching',
      why: 'SMT delivers daily files; 36 hours without one is a missed delivery, and no data at all means the fetch step is not running',
    },
  },
  SmtMissingEsiidDays: {
    unit: 'Count',
    sources: ['smt'],
    watch: 'alarm',
    description:
      'ESIIDs SMT delivered within the last smt.missingDaysWindow days but not for the newest day it delivered for others (the daily missing-days check, lambdas/core/smt/esiid-days.ts); the check function logs them with their last day, `meterbridge smt missing` lists them',
    alarm: {
      statistic: 'Maximum',
      threshold: 1,
      periodMinutes: 60,
      missingData: 'ignore',
      why: 'one datum a day (the scheduled check); any ESIID missing the day others got is a day to request from SMT before it deletes files after 10 days, so the alarm holds until the next check finds none (no data keeps the state; a check that fails alarms as its lambda errors)',
    },
  },

  // Ingestion path 3: Kamstrup READY webhooks (data and status callbacks, verification handshake).
  DeliveriesReceived: {
    unit: 'Count',
    sources: ['ready'],
    extraDimensions: ['Step'],
    watch: 'informational',
    why: 'volume only (Step = data | status); the freshness alarm covers silence',
    description: 'READY callbacks with a body (POST), archived before anything else',
  },
  DeliveriesRejected: {
    unit: 'Count',
    sources: ['ready'],
    extraDimensions: ['Reason'],
    watch: 'alarm',
    description:
      'READY callbacks refused with a 4xx (Reason: too_large, bad_json, unsupported_media_type, unknown_shape, unauthenticated, forbidden, ...); the original is in the archive',
  },
  DeliveriesConflicting: {
    unit: 'Count',
    sources: ['ready'],
    watch: 'alarm',
    description:
      'READY deliveries refused 409 because their id was stored before with other readings (a reused delivery id); the original is in the archive, nothing of it stored',
  },
  DeliveriesDuplicate: {
    unit: 'Count',
    sources: ['ready'],
    watch: 'informational',
    why: 'webhook senders re-deliver on timeouts; the ledger absorbs it',
    description: 'READY deliveries already stored (ledger hit), answered 200 without writing',
  },
  WebhookErrors: {
    unit: 'Count',
    sources: ['ready'],
    extraDimensions: ['Step'],
    watch: 'alarm',
    description: 'transient webhook failures answered 5xx/429 so READY retries (Step: archive, secret, store, unexpected)',
  },
  VerificationRequests: {
    unit: 'Count',
    sources: ['ready'],
    watch: 'informational',
    why: 'a handshake happens once per subscription; failures are alarmed separately',
    description: 'subscription verification handshakes answered',
  },
  VerificationFailures: {
    unit: 'Count',
    sources: ['ready'],
    extraDimensions: ['Reason'],
    watch: 'alarm',
    description: 'handshakes that could not be answered (Reason: missing_token, secret)',
  },
  StatusCallbacks: {
    unit: 'Count',
    sources: ['ready'],
    extraDimensions: ['Status'],
    watch: 'informational',
    why: 'the state gauge SubscriptionInactive carries the alarm',
    description: 'READY status callbacks recorded, by reported status',
  },
  SubscriptionStateChanges: {
    unit: 'Count',
    sources: ['ready'],
    extraDimensions: ['Status'],
    watch: 'informational',
    why: 'the state gauge SubscriptionInactive carries the alarm',
    description: 'subscription state transitions (Status = the new state)',
  },
  SubscriptionInactive: {
    unit: 'None',
    sources: ['ready'],
    watch: 'informational',
    why: 'alarmed by the READY construct itself (lib/ready-ingestion.ts, "subscription not active": Maximum >= 1, missing data keeps the last state), because a state gauge needs that missing-data rule rather than the catalog alarms\' count threshold',
    description:
      'state gauge, one datum per status callback: 0 when the subscription reports active, 1 when it reports anything else (pending, suspended, failed, deleted)',
  },
  // Readings out: the feed from the readings table's stream (lambdas/core/feed/), Source = the block write's source.
  FeedEventsPublished: {
    unit: 'Count',
    sources: ALL,
    watch: 'informational',
    why: 'volume only: one per block write that changed data; failures are alarmed as FeedFailures',
    description: 'events put on the readings EventBridge bus (one per block write that changed data)',
  },
  FeedRowsDelivered: {
    unit: 'Count',
    sources: ALL,
    watch: 'informational',
    why: 'volume only: one per changed reading; failures are alarmed as FeedFailures',
    description: 'changed readings sent to the data lake (Firehose -> Parquet in S3)',
  },
  FeedFailures: {
    unit: 'Count',
    sources: ALL,
    extraDimensions: ['Step'],
    watch: 'alarm',
    description:
      'block writes the feed could not deliver (Step: events = EventBridge, lake = Firehose); the stream batch is retried, bisected, and finally parked in the feed DLQ',
    alarm: {
      threshold: 1,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      why: 'a retried blip heals itself (the stream retries the batch); failures in 2 of 3 five-minute periods mean EventBridge or Firehose keeps refusing, and consumers fall behind (what is finally given up shows on the feed DLQ alarm)',
    },
  },
  MeterEvents: {
    unit: 'Count',
    sources: ['ready'],
    extraDimensions: ['Reason'],
    watch: 'informational',
    why: 'meter alarms (leak, burst, tamper, dry, ...) are customer events stored as event.<code> readings, not faults of the pipeline',
    description: 'meter info/alarm codes received (Reason = code)',
  },
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
