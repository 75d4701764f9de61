/**
 * What happens between the IoT broker and the ingest Lambda in AWS, done locally:
 *
 *   accepted publish ─▶ topic rule (SQL) ─▶ SQS message body ─▶ SQS queue ─▶ Lambda event source
 *                        toRuleMessageBody                       LocalQueue    mapping: SQSEvent
 *
 * The real rule is
 *   SELECT encode(*, 'base64') AS payload, topic() AS topic, timestamp() AS receivedAt
 *   FROM 'gateways/+/telemetry'
 * with an SQS action, so the ingest handler receives the same bodies locally and in AWS.
 *
 * Gateway events (rotation notices, status reports) take the fleet rule instead (lib/gateway-fleet.ts:
 * the same SQL plus `principal()`, a Lambda action): fleetRuleAction hands them to the fleet
 * function's core, as its Lambda entry does.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { handleGatewayEvent, type FleetDeps, type GatewayEventOutcome, type GatewayEventRecord } from '../lambdas/core/gateway-fleet.ts';
import type { Metrics } from '../lambdas/core/metrics.ts';
import { withoutBasicIngestPrefix } from '../shared/telemetry.ts';

/** The part of an accepted publish the rule uses (a `LocalIotPublish` fits). */
export interface RulePublish {
  /** Topic as published, with or without the Basic Ingest prefix. */
  topic: string;
  payload: Buffer;
  /** Epoch milliseconds. */
  receivedAt: number;
}

/** The JSON object the rule's SQL produces, i.e. the SQS message body. */
export interface RuleMessage {
  /** Base64 of the exact published bytes (`encode(*, 'base64')`). */
  payload: string;
  /**
   * `topic()`: for a Basic Ingest publish this is the topic WITHOUT `$aws/rules/<rule>/` — AWS
   * documents that the prefix is not available to topic() — so `gateways/<thing>/telemetry`.
   */
  topic: string;
  /** `timestamp()`: epoch milliseconds when the rules engine received the message. */
  receivedAt: number;
}

/** The SQS message body the topic rule would send for this publish. */
export function toRuleMessageBody(publish: RulePublish): string {
  const message: RuleMessage = {
    payload: publish.payload.toString('base64'),
    topic: withoutBasicIngestPrefix(publish.topic),
    receivedAt: publish.receivedAt,
  };
  return JSON.stringify(message);
}

export interface SqsEventOptions {
  /**
   * ARN of the queue the records come from.
   * @default 'arn:aws:sqs:us-east-1:000000000000:meterbridge-local-iot-ingest'
   */
  queueArn?: string;
  /**
   * `ApproximateReceiveCount` of every record (toSqsEvent only; LocalQueue tracks real counts).
   * @default 1
   */
  receiveCount?: number;
  /**
   * Clock for SentTimestamp and ApproximateFirstReceiveTimestamp.
   * @default () => Date.now()
   */
  now?: () => number;
}

export const DEFAULT_QUEUE_ARN = 'arn:aws:sqs:us-east-1:000000000000:meterbridge-local-iot-ingest';
/**
 * SenderId of messages sent by an IoT rule action: the rule's assumed role session
 * (`<role id>:<session>`). The role id here is made up; its shape is the real one.
 */
const RULE_SENDER_ID = 'AROALOCALIOTRULEROLE0:meterbridge-local-iot-rule';

/** An SQS-triggered Lambda handler with partial batch responses (ReportBatchItemFailures). */
export type SqsBatchHandler = (event: SQSEvent) => Promise<SQSBatchResponse>;

/** Wraps bodies into the event Lambda's SQS event source mapping would deliver, all first receives. */
export function toSqsEvent(bodies: string[], options: SqsEventOptions = {}): SQSEvent {
  const { queueArn = DEFAULT_QUEUE_ARN, receiveCount = 1, now = Date.now } = options;
  const at = now();
  return {
    Records: bodies.map((body) =>
      toSqsRecord({ messageId: randomUUID(), body, sentAt: at, firstReceivedAt: at }, receiptHandle(), receiveCount, queueArn),
    ),
  };
}

interface RecordSource {
  messageId: string;
  body: string;
  sentAt: number;
  firstReceivedAt: number;
}

function toSqsRecord(message: RecordSource, handle: string, receiveCount: number, queueArn: string): SQSRecord {
  return {
    messageId: message.messageId,
    receiptHandle: handle,
    body: message.body,
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: String(message.sentAt),
      SenderId: RULE_SENDER_ID,
      ApproximateFirstReceiveTimestamp: String(message.firstReceivedAt),
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(message.body, 'utf8').digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    // The region is the ARN's fourth field, as in real events.
    awsRegion: queueArn.split(':')[3] ?? 'us-east-1',
  };
}

/** Receipt handles are opaque, long base64 strings in SQS; a new one per receive. */
function receiptHandle(): string {
  return randomBytes(96).toString('base64');
}

/** A message in the local queue. */
export interface LocalQueueMessage {
  messageId: string;
  body: string;
  /** Epoch ms of send. */
  sentAt: number;
  /** How many times it has been received (delivered to the handler). */
  receiveCount: number;
}

export interface PollingOptions {
  /**
   * Records per handler invocation (the event source mapping's BatchSize).
   * @default 10
   */
  batchSize?: number;
  /**
   * How long a received message stays invisible; a failed message is redelivered after it
   * (the queue's VisibilityTimeout; Lambda does not change it on failure).
   * @default 30000
   */
  visibilityTimeoutMs?: number;
  /**
   * Receives before the redrive policy moves a message to the dead-letter queue. As in SQS, the
   * move happens on the receive attempt after the last allowed one, so the handler sees a
   * message at most this many times.
   * @default 3
   */
  maxReceiveCount?: number;
  /**
   * Receives the messages the redrive policy moved out (the dead-letter queue).
   * @default drop them
   */
  onDeadLetter?: (message: LocalQueueMessage) => void | Promise<void>;
  /**
   * How long the poller waits for more messages before invoking with a partial batch (the event
   * source mapping's MaximumBatchingWindowInSeconds).
   * @default 0
   */
  batchWindowMs?: number;
  /**
   * Called when the handler throws (the whole batch then counts as failed, as in Lambda).
   * @default ignore
   */
  onHandlerError?: (error: unknown) => void;
}

export interface Poller {
  /** Stops polling after the batch in progress, if any, has been settled. */
  stop(): Promise<void>;
}

interface StoredMessage extends LocalQueueMessage {
  firstReceivedAt: number;
  /** Epoch ms from which the message can be received again. */
  visibleAt: number;
  /** Current receipt handle; only the latest receive can delete the message. */
  receiptHandle: string | undefined;
}

export interface LocalQueueOptions {
  /**
   * ARN used in the records' eventSourceARN.
   * @default DEFAULT_QUEUE_ARN
   */
  queueArn?: string;
  /**
   * Clock, so tests could drive time.
   * @default () => Date.now()
   */
  now?: () => number;
}

/**
 * An in-memory SQS standard queue with a Lambda event source mapping (one concurrent batch), with
 * partial batch responses: items listed in `batchItemFailures` stay and come back after the
 * visibility timeout with a higher ApproximateReceiveCount; the rest are deleted; a handler that
 * throws, or returns an itemIdentifier that is not in the batch, fails the whole batch.
 */
export class LocalQueue {
  readonly queueArn: string;
  private readonly now: () => number;
  /** Insertion order doubles as delivery order; SQS standard does not promise order either. */
  private readonly messages = new Map<string, StoredMessage>();
  private wake: (() => void) | undefined;
  private emptyWaiters: (() => void)[] = [];

  constructor(options: LocalQueueOptions = {}) {
    this.queueArn = options.queueArn ?? DEFAULT_QUEUE_ARN;
    this.now = options.now ?? Date.now;
  }

  /** Enqueues a body (SendMessage) and returns its message id. */
  send(body: string): string {
    const messageId = randomUUID();
    const at = this.now();
    this.messages.set(messageId, { messageId, body, sentAt: at, firstReceivedAt: 0, receiveCount: 0, visibleAt: at, receiptHandle: undefined });
    this.wake?.();
    return messageId;
  }

  /** Messages not yet deleted or dead-lettered (visible and in flight). */
  get size(): number {
    return this.messages.size;
  }

  /** Resolves once every message has been deleted or dead-lettered. */
  whenEmpty(): Promise<void> {
    if (this.messages.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptyWaiters.push(resolve));
  }

  /** Starts invoking `handler` with batches of visible messages until `stop()`. */
  startPolling(handler: SqsBatchHandler, options: PollingOptions = {}): Poller {
    const {
      batchSize = 10,
      visibilityTimeoutMs = 30_000,
      maxReceiveCount = 3,
      onDeadLetter = () => {},
      batchWindowMs = 0,
      onHandlerError = () => {},
    } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new Error('batchSize must be an integer from 1 to 10,000');
    if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 1) throw new Error('maxReceiveCount must be a positive integer');

    let running = true;
    const loop = (async () => {
      while (running) {
        const received = await this.receive(batchSize, batchWindowMs, visibilityTimeoutMs, maxReceiveCount, onDeadLetter, () => running);
        if (received.length === 0) continue;
        const event: SQSEvent = {
          Records: received.map((m) => toSqsRecord(m, m.receiptHandle!, m.receiveCount, this.queueArn)),
        };
        let failed: Set<string>;
        try {
          const response = await handler(event);
          failed = failedIds(response, event);
        } catch (error) {
          onHandlerError(error);
          failed = new Set(received.map((m) => m.messageId));
        }
        for (const record of event.Records) {
          if (failed.has(record.messageId)) continue; // stays invisible until its timeout expires
          this.deleteMessage(record.messageId, record.receiptHandle);
        }
      }
    })();

    return {
      stop: async () => {
        running = false;
        this.wake?.();
        await loop;
      },
    };
  }

  /** Waits for visible messages and receives up to `max` of them (ReceiveMessage + redrive). */
  private async receive(
    max: number,
    batchWindowMs: number,
    visibilityTimeoutMs: number,
    maxReceiveCount: number,
    onDeadLetter: (message: LocalQueueMessage) => void | Promise<void>,
    running: () => boolean,
  ): Promise<StoredMessage[]> {
    let windowEnds: number | undefined;
    while (running()) {
      const now = this.now();
      const visible = [...this.messages.values()].filter((m) => m.visibleAt <= now);
      // Redrive: a message already received maxReceiveCount times moves to the DLQ instead.
      for (const message of visible.filter((m) => m.receiveCount >= maxReceiveCount)) {
        this.messages.delete(message.messageId);
        await onDeadLetter({ messageId: message.messageId, body: message.body, sentAt: message.sentAt, receiveCount: message.receiveCount });
      }
      this.notifyIfEmpty();
      const ready = visible.filter((m) => m.receiveCount < maxReceiveCount && this.messages.has(m.messageId));
      if (ready.length > 0) {
        windowEnds ??= now + batchWindowMs;
        if (ready.length >= max || now >= windowEnds) {
          const batch = ready.slice(0, max);
          for (const message of batch) {
            message.receiveCount++;
            if (message.receiveCount === 1) message.firstReceivedAt = now;
            message.visibleAt = now + visibilityTimeoutMs;
            message.receiptHandle = receiptHandle();
          }
          return batch;
        }
      }
      await this.sleep(this.nextWake(now, windowEnds));
    }
    return [];
  }

  /** Milliseconds until something can change without a send(): a message turning visible or the window closing. */
  private nextWake(now: number, windowEnds: number | undefined): number {
    let next = windowEnds ?? Infinity;
    for (const message of this.messages.values()) if (message.visibleAt > now) next = Math.min(next, message.visibleAt);
    // Capped so a clock that is not Date.now() is still re-read now and then.
    return Math.min(Math.max(next - now, 1), 1000);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  private deleteMessage(messageId: string, handle: string): void {
    const message = this.messages.get(messageId);
    // SQS needs the latest receipt handle: a batch that outlived its visibility timeout and was
    // received again by then cannot delete the newer delivery.
    if (message && message.receiptHandle === handle) this.messages.delete(messageId);
    this.notifyIfEmpty();
  }

  private notifyIfEmpty(): void {
    if (this.messages.size > 0) return;
    const waiters = this.emptyWaiters;
    this.emptyWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/**
 * The message ids Lambda treats as failed. As documented for ReportBatchItemFailures: an empty or
 * missing list means all succeeded; an itemIdentifier that is empty or not in the batch fails the
 * whole batch.
 */
function failedIds(response: SQSBatchResponse | undefined | null, event: SQSEvent): Set<string> {
  const all = new Set(event.Records.map((r) => r.messageId));
  const failures = response?.batchItemFailures ?? [];
  const failed = new Set<string>();
  for (const failure of failures) {
    if (!failure?.itemIdentifier || !all.has(failure.itemIdentifier)) return all;
    failed.add(failure.itemIdentifier);
  }
  return failed;
}

/** The event the fleet rule's SQL makes of a publish (`principal()` = the id of the certificate it came over). */
export function toFleetRuleRecord(publish: RulePublish & { certificateId: string }): GatewayEventRecord {
  return {
    payload: publish.payload.toString('base64'),
    topic: withoutBasicIngestPrefix(publish.topic),
    principal: publish.certificateId,
    receivedAt: publish.receivedAt,
  };
}

/**
 * The fleet rule's Lambda action on the fleet core (lambdas/core/gateway-fleet.ts), one invocation
 * per event with a metrics buffer of its own flushed at the end (as the Lambda's middleware does).
 * Invoked asynchronously, as IoT does: the PUBACK does not wait for it.
 */
export function fleetRuleAction(
  deps: Omit<FleetDeps, 'metrics'> & { metrics(): Metrics; onOutcome?(outcome: GatewayEventOutcome): void },
): (publish: RulePublish & { certificateId: string }) => void {
  return (publish) => {
    const metrics = deps.metrics();
    void handleGatewayEvent(toFleetRuleRecord(publish), { iot: deps.iot, policyName: deps.policyName, log: deps.log, metrics })
      .then(
        (outcome) => deps.onOutcome?.(outcome),
        (error: unknown) => {
          deps.log.error('fleet function failed', { topic: publish.topic, error: String(error) });
          deps.onOutcome?.({ kind: 'refused', reason: `threw: ${String(error)}` });
        },
      )
      .finally(() => metrics.flush());
  };
}
