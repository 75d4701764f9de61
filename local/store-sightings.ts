/**
 * Local mode's latency observer: a second reader of the readings table's stream (DynamoDB Local's
 * real stream, walked by the local feed's reader with nothing to deliver), which notes every
 * reading a block write changed and when the write was read off the stream.
 *
 * Why the read time: the store's own stamps are too coarse to time a write — the block's `ua` is
 * epoch seconds of the last write, and DynamoDB Local's ApproximateCreationDateTime is cut to the
 * minute. The read time is an upper bound on the write's time, late by at most one pass of this
 * reader (its idle pause, `idleMs`, plus a GetRecords round trip): it has nothing to deliver, so
 * unlike the feed (EventBridge, Parquet) it never lags behind the stream by more than that.
 */
import { blockChange } from '../lambdas/core/feed/block-change.ts';
import { identityInstant } from '../shared/reading.ts';
import { silentLog } from '../shared/log.ts';
import type { StoreSighting } from './latency.ts';
import type { LocalPlatform } from './platform.ts';
import { startLocalFeed } from './readings-feed.ts';

export interface StoreSightings {
  sightings(): readonly StoreSighting[];
  /** Resolves once every write made before the call was read (rejects after the deadline). */
  caughtUp(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startStoreSightings(
  platform: Pick<LocalPlatform, 'dynamo' | 'tables'>,
  options: { idleMs?: number } = {},
): Promise<StoreSightings> {
  const sightings: StoreSighting[] = [];
  const feed = await startLocalFeed({
    endpoint: platform.dynamo.endpoint,
    dynamodb: platform.dynamo.client,
    tableName: platform.tables.readings,
    events: { publish: async () => undefined },
    log: silentLog,
    idleMs: options.idleMs ?? 100,
    onRead(records, readAt) {
      for (const record of records) {
        const change = blockChange(record);
        for (const { reading } of change?.changed ?? []) {
          sightings.push({
            meterId: reading.meterId,
            channel: reading.channel,
            instant: identityInstant(reading).getTime(),
            value: reading.value,
            revision: reading.revision,
            at: readAt,
            ...(change?.writtenAt === undefined ? {} : { writtenAt: change.writtenAt }),
          });
        }
      }
    },
  });
  return {
    sightings: () => sightings,
    caughtUp: (timeoutMs) => feed.caughtUp(timeoutMs),
    stop: () => feed.stop(),
  };
}
