/**
 * The readings feed on DynamoDB Local's own stream (DynamoDB Local implements DynamoDB Streams):
 * what Lambda's stream event source mapping does in the cloud, on loopback. Every shard is read
 * from its start in order (a child shard after its parent), records go in batches of up to 100 to
 * the same core the Lambda runs (lambdas/core/feed/feed.ts), and a batch that reports a failure is
 * read again from the failed record after a pause, so nothing is skipped.
 */
import { DescribeTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type _Record as StreamsRecord,
  type Shard,
} from '@aws-sdk/client-dynamodb-streams';
import type { Log } from '../shared/log.ts';
import type { BlockStreamRecord } from '../lambdas/core/feed/block-change.ts';
import { feedBatch, type FeedEventSink, type LakeSink } from '../lambdas/core/feed/feed.ts';
import type { Metrics } from '../lambdas/core/metrics.ts';

export interface LocalFeedOptions {
  endpoint: string;
  dynamodb: DynamoDBClient;
  tableName: string;
  events: FeedEventSink;
  lake?: LakeSink;
  /** A metrics buffer per batch (flushed after it), as the Lambda middleware gives one per invocation. */
  metrics?: () => Metrics;
  log: Log;
  /** Pause between polls when the stream had nothing new. @default 250 */
  idleMs?: number;
  /** Pause before reading a failed batch again. @default 1000 */
  retryMs?: number;
  /** Told of every batch as soon as GetRecords returned it, with the time it was read (epoch ms); local mode's latency observer. */
  onRead?: (records: readonly BlockStreamRecord[], readAt: number) => void;
}

export interface LocalFeedStats {
  records: number;
  events: number;
  rows: number;
  failedBatches: number;
  /** The last delivery or stream error, for a summary that says why the feed is behind. */
  lastError?: string;
}

export interface LocalFeed {
  stats(): LocalFeedStats;
  /** Resolves once every record written before the call has been delivered (or the deadline passed: rejects). */
  caughtUp(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

interface ShardState {
  shard: Shard;
  iterator?: string;
  /** Last sequence number delivered. */
  done?: string;
  closed: boolean;
}

type StreamImage = NonNullable<StreamsRecord['dynamodb']>['NewImage'];
type LambdaImage = NonNullable<BlockStreamRecord['dynamodb']>['NewImage'];

/**
 * An image as Lambda's event source mapping delivers it: binary values (a packed block's `p`) as
 * base64 strings, which is what JSON carries, where the Streams client hands out Uint8Arrays.
 * decodeBlock reads both; converting here makes local mode and the artifact stage see Lambda's form.
 */
export function toLambdaImage(image: StreamImage): LambdaImage {
  if (image === undefined) return undefined;
  const convert = (value: Record<string, unknown>): unknown => {
    if (value.B instanceof Uint8Array) return { B: Buffer.from(value.B).toString('base64') };
    if (Array.isArray(value.BS)) return { BS: value.BS.map((bytes: Uint8Array) => Buffer.from(bytes).toString('base64')) };
    if (Array.isArray(value.L)) return { L: value.L.map((item: Record<string, unknown>) => convert(item)) };
    if (value.M && typeof value.M === 'object')
      return { M: Object.fromEntries(Object.entries(value.M).map(([key, item]) => [key, convert(item as Record<string, unknown>)])) };
    return value;
  };
  // The event's AttributeValue has the same shape as the SDK's but strings where the SDK has bytes.
  return Object.fromEntries(
    Object.entries(image).map(([name, value]) => [name, convert(value as unknown as Record<string, unknown>)]),
  ) as LambdaImage;
}

/** The Lambda event's record shape from a GetRecords record (creation time in epoch seconds, binary as base64). */
export function toLambdaRecord(record: StreamsRecord): BlockStreamRecord {
  const data = record.dynamodb ?? {};
  const created = data.ApproximateCreationDateTime;
  return {
    eventID: record.eventID,
    eventName: record.eventName,
    dynamodb: {
      Keys: toLambdaImage(data.Keys),
      NewImage: toLambdaImage(data.NewImage),
      OldImage: toLambdaImage(data.OldImage),
      SequenceNumber: data.SequenceNumber,
      ...(created ? { ApproximateCreationDateTime: Math.floor(created.getTime() / 1000) } : {}),
    },
  };
}

export async function startLocalFeed(options: LocalFeedOptions): Promise<LocalFeed> {
  const table = await options.dynamodb.send(new DescribeTableCommand({ TableName: options.tableName }));
  const streamArn = table.Table?.LatestStreamArn;
  if (!streamArn) throw new Error(`${options.tableName} has no stream (local/tables.ts enables it)`);
  const streams = new DynamoDBStreamsClient({
    endpoint: options.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 10,
  });
  const shards = new Map<string, ShardState>();
  const stats: LocalFeedStats = { records: 0, events: 0, rows: 0, failedBatches: 0 };
  let stopped = false;
  let passes = 0;
  let quietPasses = 0;

  const refreshShards = async () => {
    let start: string | undefined;
    do {
      const answer = await streams.send(new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId: start }));
      for (const shard of answer.StreamDescription?.Shards ?? []) {
        if (shard.ShardId && !shards.has(shard.ShardId)) shards.set(shard.ShardId, { shard, closed: false });
      }
      start = answer.StreamDescription?.LastEvaluatedShardId;
    } while (start);
  };

  const iteratorFor = async (state: ShardState): Promise<string | undefined> => {
    const answer = await streams.send(
      new GetShardIteratorCommand({
        StreamArn: streamArn,
        ShardId: state.shard.ShardId!,
        ...(state.done ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: state.done } : { ShardIteratorType: 'TRIM_HORIZON' }),
      }),
    );
    return answer.ShardIterator;
  };

  /** Reads one batch of a shard; true when it delivered records. */
  const pollShard = async (state: ShardState): Promise<boolean> => {
    state.iterator ??= await iteratorFor(state);
    if (!state.iterator) {
      state.closed = true;
      return false;
    }
    const answer = await streams.send(new GetRecordsCommand({ ShardIterator: state.iterator, Limit: 100 }));
    const records = (answer.Records ?? []).map(toLambdaRecord);
    if (records.length > 0) options.onRead?.(records, Date.now());
    if (records.length > 0 && !(await deliverBatch(records, state, options, stats))) {
      // Like Lambda: read again from the failed record, after a pause.
      state.iterator = undefined;
      await sleep(options.retryMs ?? 1000);
      return true;
    }
    state.iterator = answer.NextShardIterator;
    if (!state.iterator) state.closed = true;
    return records.length > 0;
  };

  const loop = (async () => {
    while (!stopped) {
      let busy = false;
      try {
        await refreshShards();
        for (const state of shards.values()) {
          const parent = state.shard.ParentShardId ? shards.get(state.shard.ParentShardId) : undefined;
          if (state.closed || (parent && !parent.closed)) continue;
          if (await pollShard(state)) busy = true;
        }
      } catch (error) {
        // An expired or trimmed iterator must not fail forever: start again after the last record delivered.
        options.log.warn('local feed: reading the stream failed; trying again', { error: String(error) });
        stats.lastError = String(error);
        for (const state of shards.values()) state.iterator = undefined;
        busy = true;
        await sleep(options.retryMs ?? 1000);
      }
      passes += 1;
      quietPasses = busy ? 0 : quietPasses + 1;
      if (!busy) await sleep(options.idleMs ?? 250);
    }
  })();

  return {
    stats: () => ({ ...stats }),
    async caughtUp(timeoutMs = 60_000) {
      const start = passes;
      const deadline = Date.now() + timeoutMs;
      // Two quiet passes that both began after the call: everything written before it was read.
      while (!(passes >= start + 3 && quietPasses >= 2)) {
        if (Date.now() > deadline) throw new Error(`the local feed did not catch up with the stream within ${timeoutMs / 1000} s`);
        await sleep(100);
      }
    },
    async stop() {
      stopped = true;
      await loop;
      streams.destroy();
    },
  };
}

/** Hands one batch to the feed core; false when it must be read again from the failed record. */
async function deliverBatch(records: BlockStreamRecord[], state: ShardState, options: LocalFeedOptions, stats: LocalFeedStats): Promise<boolean> {
  const metrics = options.metrics?.();
  const log = {
    ...options.log,
    error: (message: string, extra?: Record<string, unknown>) => {
      stats.lastError = `${message} ${JSON.stringify(extra ?? {}).slice(0, 400)}`;
      options.log.error(message, extra);
    },
  };
  const result = await feedBatch(records, { events: options.events, lake: options.lake, metrics, log });
  await metrics?.flush();
  const failed = result.batchItemFailures[0]?.itemIdentifier;
  const delivered =
    failed === undefined
      ? records
      : records.slice(
          0,
          records.findIndex((r) => r.dynamodb?.SequenceNumber === failed),
        );
  stats.records += delivered.length;
  stats.events += result.events;
  stats.rows += result.rows;
  if (delivered.length > 0) state.done = delivered[delivered.length - 1]!.dynamodb?.SequenceNumber;
  if (failed === undefined) return true;
  stats.failedBatches += 1;
  stats.lastError ??= `batch from ${failed} not delivered (see FeedFailures)`;
  return false;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
