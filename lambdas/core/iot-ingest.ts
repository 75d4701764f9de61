/**
 * IoT ingest: one SQS batch of telemetry messages (put there by the Basic Ingest topic rule)
 * into the reading store. The Lambda handler (lambdas/iot-ingest.ts) only wires clients to this.
 *
 * Per message: decode and validate (a bad message is sent to the dead-letter queue with its
 * reason and counted, without failing the rest of the batch), claim (gatewayId, seq) in the
 * ledger, write the readings, complete the claim, observe the sequence for gaps. A message
 * that fails for a transient reason (DynamoDB throttling) releases its claim and is reported
 * as a batch item failure, so SQS redelivers it alone.
 */
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { mapWithConcurrency } from '../../shared/concurrency.ts';
import type { Ledger } from './ledger.ts';
import type { Log } from '../../shared/log.ts';
import type { Metrics } from './metrics.ts';
import type { ReadingStore, WriteReport } from './reading-store.ts';
import type { SequenceTracker } from './sequence-tracker.ts';
import { decodeTelemetry, thingNameFromTopic } from '../../shared/telemetry.ts';
import { gridProblems, WRITE_STATUSES } from './interval-block.ts';
import { parseUntrustedJson, preview } from '../../shared/untrusted-json.ts';
import { METRIC_CATALOG, READING_STATUS_METRIC } from './metric-catalog.ts';

/** Skew at which a message's gateway is named in the log (the alarm's threshold: the metric has no gateway dimension). */
const GATEWAY_CLOCK_AHEAD_WARN_SECONDS = METRIC_CATALOG.GatewayClockSkew.alarm.threshold;

/**
 * Messages of a batch processed at once. Each message writes up to the store's concurrency (16)
 * blocks at once, so this bounds the batch's requests in flight: 3 x 16 = 48, within the SDK's
 * pool of 50 sockets per client. At 10 (160 in flight) the requests past 50 only queued in the
 * pool, and a batch of day blocks cost ~1.4x the CPU it costs at 1 or 3 (docs/performance.md).
 */
export const DEFAULT_MESSAGE_CONCURRENCY = 3;

/** Where messages that can never succeed go, with the reason, for an operator to inspect or redrive. */
export interface RejectSink {
  reject(body: string, reason: string): Promise<void>;
}

/** Sends rejected messages to the ingest queue's DLQ, so SQS's own DLQ redrive replays them after a fix. */
export class SqsRejectSink implements RejectSink {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async reject(body: string, reason: string): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: body,
        MessageAttributes: {
          rejectReason: { DataType: 'String', StringValue: reason.slice(0, 1024) },
          rejectedBy: { DataType: 'String', StringValue: 'iot-ingest' },
        },
      }),
    );
  }
}

export interface IotIngestDependencies {
  store: ReadingStore;
  ledger: Ledger;
  sequences: SequenceTracker;
  metrics: Metrics;
  rejects: RejectSink;
  log: Log;
  /** @default () => new Date() */
  clock?: () => Date;
  /** Messages processed at once within a batch. @default DEFAULT_MESSAGE_CONCURRENCY */
  concurrency?: number;
}

/** What became of one SQS record; returned for logs and tests. */
export type MessageOutcome =
  | { status: 'stored'; messageId: string; unitId: string; counts: WriteReport['counts'] }
  | { status: 'skipped'; messageId: string; unitId: string; why: 'completed' | 'failed' }
  | { status: 'rejected'; messageId: string; reason: string }
  | { status: 'retry'; messageId: string; reason: string };

interface Envelope {
  payload: Buffer;
  topic: string;
  /** The IoT rule's error action delivered it (the SQS action failed at the time). */
  fromErrorAction: boolean;
  /** The rule's timestamp() (epoch ms) when IoT Core received it; the error action's body has none. */
  receivedAt?: number;
}

/** The rule's envelope is one object of strings; an error action's adds one level (failures[]). */
const MAX_ENVELOPE_DEPTH = 4;

/** Reads the rule's SQS body, or the error action's body when a DLQ redrive brings one back. */
export function parseEnvelope(body: string): Envelope | { error: string } {
  const parsed = parseUntrustedJson(body, MAX_ENVELOPE_DEPTH);
  if (!parsed.ok) {
    const what = parsed.code === 'not-json' ? 'is not JSON' : "is not the topic rule's envelope";
    return { error: `envelope ${what} (expected the topic rule's {payload, topic, receivedAt}): ${parsed.reason}` };
  }
  if (typeof parsed.value !== 'object' || parsed.value === null || Array.isArray(parsed.value)) {
    return { error: `envelope is ${preview(parsed.value)}, not the topic rule's {payload, topic, receivedAt} object` };
  }
  const json = parsed.value as Record<string, unknown>;
  if (typeof json.topic !== 'string') return { error: 'envelope has no topic' };
  if (typeof json.payload === 'string') {
    const receivedAt = typeof json.receivedAt === 'number' && Number.isFinite(json.receivedAt) ? { receivedAt: json.receivedAt } : {};
    return { payload: Buffer.from(json.payload, 'base64'), topic: json.topic, fromErrorAction: false, ...receivedAt };
  }
  if (typeof json.base64OriginalPayload === 'string') {
    return { payload: Buffer.from(json.base64OriginalPayload, 'base64'), topic: json.topic, fromErrorAction: true };
  }
  return { error: 'envelope has neither payload nor base64OriginalPayload' };
}

export async function ingestBatch(event: SQSEvent, deps: IotIngestDependencies): Promise<SQSBatchResponse & { outcomes: MessageOutcome[] }> {
  // One record's surprise must not fail its neighbours: it alone is retried (and dead-lettered
  // by SQS after maxReceiveCount), the rest of the batch is done.
  const outcomes = await mapWithConcurrency(event.Records, deps.concurrency ?? DEFAULT_MESSAGE_CONCURRENCY, (record) =>
    ingestRecord(record, deps).catch((error: unknown): MessageOutcome => {
      deps.log.error('message failed unexpectedly; it will be retried', { messageId: record.messageId, error: preview(String(error), 500) });
      deps.metrics.count('IngestErrors');
      return { status: 'retry', messageId: record.messageId, reason: `unexpected: ${preview(String(error), 500)}` };
    }),
  );
  deps.metrics.count('MessagesReceived', event.Records.length);
  return {
    batchItemFailures: outcomes.filter((o) => o.status === 'retry').map((o) => ({ itemIdentifier: o.messageId })),
    outcomes,
  };
}

async function ingestRecord(record: SQSRecord, deps: IotIngestDependencies): Promise<MessageOutcome> {
  const { metrics, log } = deps;
  const messageId = record.messageId;
  const now = deps.clock?.() ?? new Date();

  const reject = async (reason: string, metricReason: string): Promise<MessageOutcome> => {
    try {
      await deps.rejects.reject(record.body, reason);
    } catch (error) {
      // Could not park it: let SQS retry it and, after maxReceiveCount, dead-letter it itself.
      log.error('could not send rejected message to the dead-letter queue', { messageId, reason, error: String(error) });
      return { status: 'retry', messageId, reason: `reject failed: ${String(error)}` };
    }
    metrics.count('MessagesRejected', 1, { Reason: metricReason });
    log.warn('message rejected', { messageId, reason });
    return { status: 'rejected', messageId, reason };
  };

  let envelope: ReturnType<typeof parseEnvelope>;
  let decoded: ReturnType<typeof decodeTelemetry>;
  try {
    envelope = parseEnvelope(record.body);
    if ('error' in envelope) return reject(envelope.error, 'envelope');
    if (envelope.fromErrorAction) metrics.count('MessagesFromRuleErrorAction');
    const thingName = thingNameFromTopic(envelope.topic);
    if (!thingName) return reject(`topic ${preview(envelope.topic, 200)} is not a gateway telemetry topic`, 'topic');
    decoded = decodeTelemetry(envelope.payload, { topicThingName: thingName, now });
  } catch (error) {
    // Decoding is documented never to throw; if it ever does, the message (not the batch) is
    // the problem, and retrying it would only fail again.
    return reject(`could not be decoded: ${preview(String(error), 500)}`, 'invalid');
  }
  if (!decoded.ok) return reject(decoded.reason, decoded.code);
  const { message, readings } = decoded;
  const unitId = `${message.gatewayId}/${message.seq}`;
  // The store's days and slots: an interval off its day's grid would overlap its neighbours.
  const misfits = gridProblems(readings, deps.store.blockTimeZone);
  if (misfits.length > 0) return reject(`readings do not fit the store's day blocks: ${misfits.join('; ')}`, 'misaligned');

  const claimed = await deps.ledger.claim('iot-message', unitId, { detail: { readings: readings.length } });
  if (claimed.status === 'completed' || claimed.status === 'failed') {
    metrics.count('MessagesDuplicate');
    return { status: 'skipped', messageId, unitId, why: claimed.status };
  }
  if (claimed.status === 'in_progress') {
    // Another worker holds it (or crashed holding it): SQS brings it back after the visibility timeout.
    return { status: 'retry', messageId, reason: `${unitId} is in progress elsewhere` };
  }

  let report: WriteReport;
  try {
    report = await deps.store.write(readings);
    await deps.ledger.complete(claimed.claim, report.counts);
  } catch (error) {
    await deps.ledger.release(claimed.claim).catch(() => undefined); // the lock expires anyway
    log.error('message will be retried', { messageId, unitId, error: String(error) });
    metrics.count('IngestErrors');
    return { status: 'retry', messageId, reason: String(error) };
  }

  for (const status of WRITE_STATUSES) metrics.count(READING_STATUS_METRIC[status], report.counts[status]);
  // Counted per distinct latency: a message of many meters' days repeats each one per meter.
  const latencies = new Map<number, number>();
  for (const outcome of report.outcomes) {
    if (outcome.status === 'conflict') log.warn('reading conflict', { unitId, meterId: outcome.reading.meterId, reason: outcome.reason });
    if (outcome.status === 'stored' || outcome.status === 'superseded') {
      const end = outcome.reading.kind === 'interval' ? outcome.reading.end : outcome.reading.at;
      const seconds = Math.round((now.getTime() - end.getTime()) / 1000);
      latencies.set(seconds, (latencies.get(seconds) ?? 0) + 1);
    }
  }
  for (const [seconds, times] of latencies) metrics.record('IngestLatency', seconds, 'Seconds', {}, times);

  const sequence = await deps.sequences.observe(message.gatewayId, message.seq);
  if (sequence.kind === 'gap') {
    metrics.count('SequenceGaps', sequence.missing);
    log.warn('gateway sequence gap', { gatewayId: message.gatewayId, seq: message.seq, missing: sequence.missing });
  } else if (sequence.kind === 'late') {
    metrics.count('SequenceLate');
  } else if (sequence.kind === 'reset') {
    metrics.count('SequenceResets');
    log.warn('gateway sequence restarted at 1', { gatewayId: message.gatewayId, previousHighest: sequence.previousHighest });
  }
  // Clock skew: sentAt is the gateway's clock when it built the message, receivedAt IoT Core's on
  // arrival. Re-sends are left out (a duplicate returned above; a late seq here): their sentAt is as
  // old as their stay in the outbox. A message held back (outbox after an outage) can only lower
  // the value, so the alarm watches the Maximum: a high one is the gateway's clock running ahead.
  if (envelope.receivedAt !== undefined && sequence.kind !== 'late') {
    const skewSeconds = Math.round((Date.parse(message.sentAt) - envelope.receivedAt) / 100) / 10;
    metrics.record('GatewayClockSkew', skewSeconds, 'Seconds');
    if (skewSeconds >= GATEWAY_CLOCK_AHEAD_WARN_SECONDS)
      log.warn('gateway clock ahead', { gatewayId: message.gatewayId, seq: message.seq, skewSeconds });
  }
  log.info('message stored', { messageId, unitId, counts: report.counts });
  return { status: 'stored', messageId, unitId, counts: report.counts };
}
