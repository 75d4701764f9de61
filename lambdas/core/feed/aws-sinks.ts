/**
 * The feed's sinks on AWS: EventBridge PutEvents (10 entries a call) and Firehose PutRecordBatch
 * (500 records or 4 MiB a call). Both calls can accept part of a request: the refused entries are
 * sent again a few times with backoff, and what is still refused then makes the sink throw, so the
 * stream batch is retried (feed.ts) and nothing is dropped.
 */
import { PutEventsCommand, type EventBridgeClient, type PutEventsRequestEntry } from '@aws-sdk/client-eventbridge';
import { PutRecordBatchCommand, type FirehoseClient } from '@aws-sdk/client-firehose';
import { FEED_DETAIL_TYPE, FEED_EVENT_SOURCE, type FeedEvent, type FeedEventSink, type LakeSink } from './feed.ts';
import type { LakeRow } from './lake-schema.ts';

const ATTEMPTS = 4;
const MAX_FIREHOSE_RECORDS = 500;
/** Under PutRecordBatch's 4 MiB per call. */
const MAX_FIREHOSE_BYTES = 3_500_000;

const pause = (attempt: number) => new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));

/** Sends `items` and re-sends the ones `send` reports refused (by index), up to ATTEMPTS times. */
async function sendAll<T>(items: T[], send: (items: T[]) => Promise<{ refused: number[]; reason?: string }>, what: string): Promise<void> {
  let pending = items;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (attempt > 0) await pause(attempt);
    const { refused, reason } = await send(pending);
    if (refused.length === 0) return;
    pending = refused.map((index) => pending[index]!);
    if (attempt === ATTEMPTS - 1) throw new Error(`${what}: ${pending.length} refused after ${ATTEMPTS} attempts (${reason ?? 'no reason given'})`);
  }
}

export class EventBridgeSink implements FeedEventSink {
  constructor(
    private readonly client: EventBridgeClient,
    private readonly eventBusName: string,
  ) {}

  async publish(events: readonly FeedEvent[]): Promise<void> {
    const entries: PutEventsRequestEntry[] = events.map((event) => ({
      EventBusName: this.eventBusName,
      Source: FEED_EVENT_SOURCE,
      DetailType: FEED_DETAIL_TYPE,
      Time: event.time,
      Detail: JSON.stringify(event.detail),
    }));
    for (let offset = 0; offset < entries.length; offset += 10) {
      await sendAll(
        entries.slice(offset, offset + 10),
        async (batch) => {
          const answer = await this.client.send(new PutEventsCommand({ Entries: batch }));
          const results = answer.Entries ?? [];
          const refused = batch.flatMap((_, index) => (results[index]?.ErrorCode ? [index] : []));
          return { refused, reason: results.find((r) => r.ErrorCode)?.ErrorMessage };
        },
        `PutEvents to ${this.eventBusName}`,
      );
    }
  }
}

export class FirehoseSink implements LakeSink {
  constructor(
    private readonly client: FirehoseClient,
    private readonly deliveryStreamName: string,
  ) {}

  async put(rows: readonly LakeRow[]): Promise<void> {
    // One JSON object per line: Firehose's JSON deserializer reads records, dynamic partitioning reads day and source.
    const records = rows.map((row) => Buffer.from(`${JSON.stringify(row)}\n`));
    let batch: Buffer[] = [];
    let bytes = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      await sendAll(
        batch,
        async (pending) => {
          const answer = await this.client.send(
            new PutRecordBatchCommand({ DeliveryStreamName: this.deliveryStreamName, Records: pending.map((Data) => ({ Data })) }),
          );
          const results = answer.RequestResponses ?? [];
          const refused = pending.flatMap((_, index) => (results[index]?.ErrorCode ? [index] : []));
          return { refused, reason: results.find((r) => r.ErrorCode)?.ErrorMessage };
        },
        `PutRecordBatch to ${this.deliveryStreamName}`,
      );
      batch = [];
      bytes = 0;
    };
    for (const record of records) {
      if (batch.length >= MAX_FIREHOSE_RECORDS || bytes + record.length > MAX_FIREHOSE_BYTES) await flush();
      batch.push(record);
      bytes += record.length;
    }
    await flush();
  }
}
