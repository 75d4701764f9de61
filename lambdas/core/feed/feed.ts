/**
 * The readings feed: DynamoDB Streams records of the readings table in, for every block write that
 * changed data one event on the EventBridge bus (downstream systems subscribe with a rule) and one
 * lake row per changed reading to Firehose (Parquet in S3, queried with Athena). Pure over its
 * sinks: the Lambda entry (lambdas/readings-feed.ts) passes AWS clients, local mode its stand-ins.
 *
 * Delivery is at least once and in order per block: records are handled in stream order in chunks;
 * when a chunk cannot be delivered, the batch answers with that chunk's first sequence number
 * (ReportBatchItemFailures), so Lambda retries from there and everything before it is done. A
 * retried chunk may publish some events again: they carry the same dedupe key. See docs/readings-feed.md.
 */
import type { Log } from '../../../shared/log.ts';
import type { Metrics } from '../metrics.ts';
import { blockChange, originsOf, type BlockChange, type BlockStreamRecord } from './block-change.ts';
import { lakeRow, type LakeRow } from './lake-schema.ts';

export const FEED_EVENT_SOURCE = 'meterbridge.readings';
export const FEED_DETAIL_TYPE = 'Readings changed';
/** PutEvents takes at most 10 entries; a chunk is that many block writes. */
export const FEED_CHUNK = 10;
/** EventBridge refuses entries over 256 KB: above this the interval list is left out (the count stays). */
const MAX_DETAIL_BYTES = 200_000;

/** The event's detail: what changed in one block write. */
export interface FeedEventDetail {
  dedupeKey: string;
  meterId: string;
  channel: string;
  /** The block's local day (stage block time zone). */
  day: string;
  /** Source of the write (the first one if readings of several changed). */
  source: string;
  sources: string[];
  /** `<source>:<originId>` of every unit of work whose readings changed. */
  origins: string[];
  /** Highest revision among the changed readings. */
  revision: number;
  blockVersion: number;
  intervalsChanged: number;
  newIntervals: number;
  supersededIntervals: number;
  unit: string;
  /** Identity instants (interval starts, register read times) of the changed readings, ISO-8601 UTC; omitted when too many. */
  intervals?: string[];
  writtenAt: string;
}

export interface FeedEvent {
  time: Date;
  detail: FeedEventDetail;
}

/** Publishes events; resolves only when every one was accepted, otherwise throws. */
export interface FeedEventSink {
  publish(events: readonly FeedEvent[]): Promise<void>;
}

/** Sends lake rows; resolves only when every one was accepted, otherwise throws. */
export interface LakeSink {
  put(rows: readonly LakeRow[]): Promise<void>;
}

export interface FeedDependencies {
  events: FeedEventSink;
  lake?: LakeSink;
  metrics?: Metrics;
  log: Log;
}

export interface FeedBatchResult {
  /** Empty, or the sequence number of the first record not delivered (Lambda retries from it). */
  batchItemFailures: { itemIdentifier: string }[];
  changes: BlockChange[];
  events: number;
  rows: number;
}

export function feedEvent(change: BlockChange): FeedEvent {
  const { sources, origins } = originsOf(change);
  const readings = change.changed.map((c) => c.reading);
  const detail: FeedEventDetail = {
    dedupeKey: change.dedupeKey,
    meterId: change.meterId,
    channel: change.channel,
    day: change.day,
    source: sources[0]!,
    sources,
    origins,
    revision: Math.max(...readings.map((r) => r.revision)),
    blockVersion: change.version,
    intervalsChanged: change.changed.length,
    newIntervals: change.changed.filter((c) => c.previous === undefined).length,
    supersededIntervals: change.changed.filter((c) => c.previous !== undefined).length,
    unit: readings[0]!.unit,
    intervals: readings.map((r) => (r.kind === 'interval' ? r.start : r.at).toISOString()),
    writtenAt: new Date(change.writtenAt).toISOString(),
  };
  if (JSON.stringify(detail).length > MAX_DETAIL_BYTES) delete detail.intervals;
  return { time: new Date(change.writtenAt), detail };
}

export function lakeRows(change: BlockChange): LakeRow[] {
  return change.changed.map(({ reading }) => lakeRow(reading, { day: change.day, version: change.version, ingestedAt: change.writtenAt }));
}

/** Handles one batch of stream records in order; see the header for what a failure answers. */
export async function feedBatch(records: readonly BlockStreamRecord[], deps: FeedDependencies): Promise<FeedBatchResult> {
  const result: FeedBatchResult = { batchItemFailures: [], changes: [], events: 0, rows: 0 };
  let chunk: Array<{ record: BlockStreamRecord; change: BlockChange }> = [];
  const deliver = async (): Promise<boolean> => {
    if (chunk.length === 0) return true;
    const changes = chunk.map((entry) => entry.change);
    let step: 'events' | 'lake' = 'events';
    try {
      await deps.events.publish(changes.map(feedEvent));
      step = 'lake';
      const rows = changes.flatMap(lakeRows);
      if (deps.lake) await deps.lake.put(rows);
      for (const change of changes) {
        const source = originsOf(change).sources[0]!;
        deps.metrics?.count('FeedEventsPublished', 1, { Source: source });
        if (deps.lake) deps.metrics?.count('FeedRowsDelivered', change.changed.length, { Source: source });
      }
      result.events += changes.length;
      result.rows += deps.lake ? rows.length : 0;
      result.changes.push(...changes);
      chunk = [];
      return true;
    } catch (error) {
      for (const change of changes) deps.metrics?.count('FeedFailures', 1, { Source: originsOf(change).sources[0]!, Step: step });
      const first = chunk[0]!.record.dynamodb?.SequenceNumber ?? '';
      deps.log.error('feed: could not deliver block changes; the batch is retried from the first of them', {
        step,
        firstSequenceNumber: first,
        blocks: changes.map((c) => c.dedupeKey),
        error: error instanceof Error ? error.message : String(error),
      });
      result.batchItemFailures.push({ itemIdentifier: first });
      return false;
    }
  };
  for (const record of records) {
    const change = blockChange(record);
    if (change === undefined) continue;
    chunk.push({ record, change });
    if (chunk.length >= FEED_CHUNK && !(await deliver())) return result;
  }
  await deliver();
  return result;
}
