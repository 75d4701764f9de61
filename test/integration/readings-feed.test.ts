/**
 * The readings feed on real parts: the store writes to DynamoDB Local, whose stream the local feed
 * reads (the same core as the Lambda), events go to moto's EventBridge and through a rule to an SQS
 * queue (what a subscriber sees), lake rows become Parquet files in s3rver read back with DuckDB.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { locate } from '../../lambdas/core/interval-block.ts';
import { EventBridgeSink } from '../../lambdas/core/feed/aws-sinks.ts';
import type { FeedEvent, FeedEventSink } from '../../lambdas/core/feed/feed.ts';
import { LAKE_PREFIX } from '../../lambdas/core/feed/lake-schema.ts';
import { Metrics } from '../../lambdas/core/metrics.ts';
import { ReadingStore, type WriteReport } from '../../lambdas/core/reading-store.ts';
import { startLocalCloudWatch } from '../../local/cloudwatch.ts';
import { LocalParquetLake, queryLake } from '../../local/lake.ts';
import { startLocalFeed } from '../../local/readings-feed.ts';
import { startLocalS3, storedObjectFiles, type LocalS3 } from '../../local/s3-server.ts';
import { silentLog } from '../../shared/log.ts';
import type { Reading } from '../../shared/reading.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';
import { observedBus } from '../support/event-bus.ts';
import { startMoto, type Moto } from '../support/moto.ts';
import { day, interval, register } from '../support/readings.ts';

const ZONE = 'America/Chicago';
let dynamo: LocalDynamo;
let moto: Moto;
let s3: LocalS3;
let s3Dir: string;

before(async () => {
  dynamo = await startDynamoDbLocal();
  moto = await startMoto();
  s3Dir = await mkdtemp(join(tmpdir(), 'mb-feed-s3-'));
  s3 = await startLocalS3({ buckets: [], directory: s3Dir });
});
after(async () => {
  await Promise.allSettled([dynamo?.stop(), moto?.stop(), s3?.stop()]);
  if (s3Dir) await rm(s3Dir, { recursive: true, force: true });
});

/** Block writes that changed data, counted from the store's own outcomes: blocks of one write call with a stored or superseded reading. */
function changingBlockWrites(report: WriteReport): number {
  const blocks = new Set<string>();
  for (const { reading, status } of report.outcomes) {
    if (status !== 'stored' && status !== 'superseded') continue;
    const { key } = locate(reading, ZONE);
    blocks.add(`${key.pk}/${key.sk}`);
  }
  return blocks.size;
}

/** Deliveries as sources make them: whole days, small messages, revisions, late stale values, register reads. */
function deliveries(): Reading[][] {
  const m1 = { meterId: 'feed-m1', source: 'smt' as const };
  return [
    day('2026-03-10T05:00:00Z', 96, { ...m1, originId: 'file-1' }),
    [0, 1, 2, 3].map((i) =>
      interval({ meterId: 'feed-m2', source: 'iot', originId: 'msg-1', start: new Date(Date.parse('2026-03-10T12:00:00Z') + i * 900_000), value: i }),
    ),
    // A revised day: 10 intervals superseded by revision 2.
    day('2026-03-10T05:00:00Z', 10, { ...m1, originId: 'file-2', revision: 2 }, (i) => 10 + i),
    // The old revision arriving late: stale, no event.
    day('2026-03-10T05:00:00Z', 10, { ...m1, originId: 'file-1' }),
    // Two blocks in one write: another day of m1 and more of m2.
    [
      ...day('2026-03-11T05:00:00Z', 4, { ...m1, originId: 'file-3' }),
      interval({ meterId: 'feed-m2', source: 'iot', originId: 'msg-2', start: '2026-03-10T13:00:00Z', value: 7 }),
    ],
    // An estimate, then the actual value replacing it (same revision).
    [interval({ meterId: 'feed-m3', source: 'ready', originId: 'd-1', quality: 'estimated', value: 1.5 })],
    [interval({ meterId: 'feed-m3', source: 'ready', originId: 'd-2', value: 1.75 })],
    [register({ meterId: 'feed-m4', originId: 'd-3' })],
  ];
}

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('readings feed over DynamoDB Local streams', () => {
  it(
    'publishes one event per block write that changed data when everything is delivered twice, and lands every changed reading in the lake',
    { timeout: 180_000 },
    async () => {
      const tables = await dynamo.freshTables();
      const store = new ReadingStore({ client: dynamo.client, tableName: tables.readings, blockTimeZone: ZONE });
      const bus = await observedBus(moto);
      const bucket = `lake-${tables.readings.toLowerCase()}`;
      await s3.client.send(new (await import('@aws-sdk/client-s3')).CreateBucketCommand({ Bucket: bucket }));
      const lake = new LocalParquetLake(s3.client, bucket);
      const feed = await startLocalFeed({
        endpoint: dynamo.endpoint,
        dynamodb: dynamo.client,
        tableName: tables.readings,
        events: new EventBridgeSink(bus.events, bus.busName),
        lake,
        log: silentLog,
      });
      try {
        // GIVEN every delivery written twice, in order (a replay of everything)
        let expectedEvents = 0;
        let changedReadings = 0;
        let duplicatesOrStale = 0;
        for (const delivery of deliveries()) {
          for (let time = 0; time < 2; time++) {
            const report = await store.write(delivery);
            expectedEvents += changingBlockWrites(report);
            changedReadings += report.counts.stored + report.counts.superseded;
            duplicatesOrStale += report.counts.duplicate + report.counts.stale;
          }
        }
        assert.equal(expectedEvents, 8, 'the scenario changes data in 8 block writes');
        assert.ok(duplicatesOrStale > 100, 'the second deliveries and the late revision were absorbed');

        // WHEN the feed has read the stream
        await feed.caughtUp(90_000);
        const events = await waitFor(
          () => bus.drain(),
          (seen) => seen.length >= expectedEvents,
        );
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const after = await bus.drain();

        // THEN one event per changing block write, none for duplicates or stale readings
        assert.equal(after.length, expectedEvents, JSON.stringify(after.map((e) => e.detail.dedupeKey)));
        assert.equal(new Set(events.map((e) => e.detail.dedupeKey)).size, expectedEvents, 'dedupe keys are distinct per write');
        assert.ok(events.every((e) => e.detailType === 'Readings changed' && e.source === 'meterbridge.readings'));
        const revised = events.find((e) => e.detail.origins.includes('smt:file-2'))!;
        assert.deepEqual(
          {
            meterId: revised.detail.meterId,
            day: revised.detail.day,
            changed: revised.detail.intervalsChanged,
            superseded: revised.detail.supersededIntervals,
            revision: revised.detail.revision,
          },
          { meterId: 'feed-m1', day: '2026-03-10', changed: 10, superseded: 10, revision: 2 },
        );
        const actual = events.find((e) => e.detail.origins.includes('ready:d-2'))!;
        assert.equal(actual.detail.supersededIntervals, 1, 'an actual replacing an estimate is a change');
        assert.equal(
          events.reduce((sum, e) => sum + e.detail.intervalsChanged, 0),
          changedReadings,
        );

        // AND the lake holds one row per changed reading, the latest revision per interval equal to the store
        const files = storedObjectFiles(s3Dir, bucket, LAKE_PREFIX);
        const total = await queryLake(files, 'SELECT count(*) AS n FROM readings');
        assert.equal(Number(total.rows[0]![0]), changedReadings);
        const latest = await queryLake(
          files,
          "SELECT value FROM readings_latest WHERE meter_id = 'feed-m1' AND interval_start = TIMESTAMP '2026-03-10 05:00:00'",
        );
        assert.deepEqual(latest.rows, [[10]]);
        const estimate = await queryLake(files, "SELECT quality, value FROM readings WHERE meter_id = 'feed-m3' ORDER BY block_version");
        assert.deepEqual(
          estimate.rows,
          [
            ['estimated', 1.5],
            ['actual', 1.75],
          ],
          'superseded readings stay in the lake',
        );
      } finally {
        await feed.stop();
        bus.destroy();
      }
    },
  );
});

describe('readings feed delivery', () => {
  it(
    'delivers again with the same dedupe keys when the stream is read twice (at least once), and loses nothing when EventBridge refuses for a while',
    { timeout: 180_000 },
    async () => {
      const tables = await dynamo.freshTables();
      const store = new ReadingStore({ client: dynamo.client, tableName: tables.readings, blockTimeZone: ZONE });
      const bus = await observedBus(moto);
      let refusals = 3;
      const real = new EventBridgeSink(bus.events, bus.busName);
      const flaky: FeedEventSink = {
        async publish(events: readonly FeedEvent[]) {
          if (refusals-- > 0) throw new Error('EventBridge unavailable (injected)');
          await real.publish(events);
        },
      };
      const cloudwatch = await startLocalCloudWatch({ moto });
      let expected = 0;
      for (const delivery of deliveries()) expected += changingBlockWrites(await store.write(delivery));

      // WHEN a feed meets refusals first, and a second consumer reads the whole stream again
      const first = await startLocalFeed({
        endpoint: dynamo.endpoint,
        dynamodb: dynamo.client,
        tableName: tables.readings,
        events: flaky,
        log: silentLog,
        retryMs: 200,
        metrics: () => new Metrics({ client: cloudwatch.client(), defaultDimensions: { Stage: 'feed-test' }, log: silentLog }),
      });
      await first.caughtUp(90_000);
      const stats = first.stats();
      await first.stop();
      const once = await waitFor(
        () => bus.drain(),
        (seen) => seen.length >= expected,
      );
      const keys = new Set(once.map((e) => e.detail.dedupeKey));
      const second = await startLocalFeed({
        endpoint: dynamo.endpoint,
        dynamodb: dynamo.client,
        tableName: tables.readings,
        events: real,
        log: silentLog,
      });
      await second.caughtUp(90_000);
      await second.stop();
      const twice = await waitFor(
        () => bus.drain(),
        (seen) => seen.length >= 2 * expected,
      );
      bus.destroy();

      // THEN the refused batches were retried (nothing skipped), and the replay repeats exactly the same keys
      assert.ok(stats.failedBatches >= 1, `failed batches ${stats.failedBatches}`);
      // The alarmed FeedFailures counted the refused chunks (read back from CloudWatch), and every event went out once.
      assert.ok((await cloudwatch.sum('FeedFailures', { name: 'Step', value: 'events' })) >= 3, 'FeedFailures read back');
      assert.equal(await cloudwatch.sum('FeedEventsPublished'), expected);
      assert.equal(once.length, expected);
      assert.equal(keys.size, expected);
      assert.equal(twice.length, 2 * expected);
      assert.deepEqual(new Set(twice.map((e) => e.detail.dedupeKey)), keys, 'a consumer deduplicating on dedupeKey sees each write once');
      await cloudwatch.stop();
    },
  );
});
