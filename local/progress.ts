/**
 * Local mode's live progress and final check, computed from what the handlers actually published
 * to the metrics sink (so the numbers on screen are the numbers CloudWatch would get), plus what
 * the simulators say they produced and what the store holds.
 */
import { ScanCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { decodeBlock, slotToReading } from '../lambdas/core/interval-block.ts';
import type { MetricSource } from '../lambdas/core/metric-catalog.ts';
import type { Reading } from '../shared/reading.ts';
import type { ReadingStore } from '../lambdas/core/reading-store.ts';
import type { MetricTotal } from './cloudwatch.ts';

export const PROGRESS_SOURCES: readonly MetricSource[] = ['iot', 'smt', 'ready'];

export interface SourceTally {
  stored: number;
  superseded: number;
  duplicate: number;
  stale: number;
  conflict: number;
  /** Messages, deliveries or files refused (their own metric per source). */
  rejected: number;
  /** Whole units of work sent again and absorbed by the ledger (MQTT re-sends, READY retries). */
  resent: number;
}

const TALLIED: Record<string, keyof SourceTally> = {
  ReadingsStored: 'stored',
  ReadingsSuperseded: 'superseded',
  ReadingsDuplicate: 'duplicate',
  ReadingsStale: 'stale',
  ReadingsConflict: 'conflict',
};

/** Metrics that count refused input, per source (each path names its own). */
const REJECTED = new Set(['MessagesRejected', 'DeliveriesRejected', 'FilesFailed']);
const RESENT = new Set(['MessagesDuplicate', 'DeliveriesDuplicate']);

/** The metrics tallyMetrics reads: local mode reads back only these. */
export const PROGRESS_METRICS: readonly string[] = [...Object.keys(TALLIED), ...REJECTED, ...RESENT];

const emptyTally = (): SourceTally => ({ stored: 0, superseded: 0, duplicate: 0, stale: 0, conflict: 0, rejected: 0, resent: 0 });

/** Sums the counters CloudWatch stored (read back per metric), per Source dimension. */
export function tallyMetrics(totals: readonly MetricTotal[]): Record<MetricSource, SourceTally> {
  const tallies = { iot: emptyTally(), smt: emptyTally(), ready: emptyTally() };
  for (const total of totals) {
    const source = total.dimensions.Source as MetricSource | undefined;
    if (!source || !(source in tallies)) continue;
    const field = TALLIED[total.name];
    if (field) tallies[source][field] += total.sum;
    else if (REJECTED.has(total.name)) tallies[source].rejected += total.sum;
    else if (RESENT.has(total.name)) tallies[source].resent += total.sum;
  }
  return tallies;
}

export interface RateWindow {
  at: number;
  stored: Record<MetricSource, number>;
}

/** One line per source: readings/s since the previous window, stored, duplicates, rejected, backlog. */
export function formatProgress(
  tallies: Record<MetricSource, SourceTally>,
  previous: RateWindow | undefined,
  now: number,
  backlog: Partial<Record<MetricSource, number>>,
): { lines: string[]; window: RateWindow } {
  const seconds = previous ? Math.max((now - previous.at) / 1000, 0.001) : 0;
  const lines = PROGRESS_SOURCES.map((source) => {
    const tally = tallies[source];
    const rate = previous ? (tally.stored + tally.superseded - previous.stored[source]) / seconds : 0;
    return (
      `${source.padEnd(5)} ${rate.toFixed(0).padStart(6)} readings/s  stored ${String(tally.stored).padStart(7)}` +
      `  superseded ${String(tally.superseded).padStart(5)}  duplicate ${String(tally.duplicate).padStart(6)}  re-sent ${String(tally.resent).padStart(4)}` +
      `  rejected ${String(tally.rejected).padStart(4)}  backlog ${String(backlog[source] ?? 0).padStart(6)}`
    );
  });
  const stored = { iot: 0, smt: 0, ready: 0 };
  for (const source of PROGRESS_SOURCES) stored[source] = tallies[source].stored + tallies[source].superseded;
  return { lines, window: { at: now, stored } };
}

/** A reading a simulator produced and expects to find stored (its value is the latest revision's). */
export interface ExpectedReading {
  meterId: string;
  channel: string;
  /** Interval start or register time. */
  at: Date;
  value: number;
}

export function readingToExpected(reading: Reading): ExpectedReading {
  return { meterId: reading.meterId, channel: reading.channel, at: reading.kind === 'interval' ? reading.start : reading.at, value: reading.value };
}

export interface VerifyReport {
  expected: number;
  found: number;
  /** Expected but not in the store, or stored with another value. */
  lost: ExpectedReading[];
  /** First-time stores beyond the distinct readings expected and the outside readings: a reading written twice. */
  doubled: number;
  /**
   * Readings of this source stored from outside the simulators (e.g. the printed mosquitto_pub or
   * curl line): listed apart, never counted as doubled.
   */
  outside: Reading[];
}

const identityKey = (meterId: string, channel: string, at: Date) => `${meterId}|${channel}|${at.getTime()}`;

/** Every reading in the readings table (a Scan; local mode's table is small). */
export async function scanStoredReadings(client: DynamoDBClient, tableName: string): Promise<Reading[]> {
  const readings: Reading[] = [];
  let exclusiveStartKey: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(new ScanCommand({ TableName: tableName, ExclusiveStartKey: exclusiveStartKey }));
    for (const item of page.Items ?? []) {
      const block = decodeBlock(item);
      // pk = "<meterId>#<channel>"; channels have no '#'.
      const split = block.pk.lastIndexOf('#');
      for (const [slot, stored] of block.slots)
        readings.push(slotToReading(block.pk.slice(0, split), block.pk.slice(split + 1), block, slot, stored));
    }
    exclusiveStartKey = page.LastEvaluatedKey;
  } while (exclusiveStartKey);
  return readings;
}

/**
 * Checks every expected reading is in the store with its value, and that the source's
 * ReadingsStored total equals the number of distinct readings (more would mean one was
 * stored twice as new). When there are more, the stored readings of this source that no
 * simulator produced are outside readings (someone followed a join hint): they are listed in
 * `outside` and only what is left beyond them counts as doubled.
 */
export async function verifySource(
  store: ReadingStore,
  expected: readonly ExpectedReading[],
  tally: SourceTally,
  outsideOf?: { source: MetricSource; storedReadings(): Promise<Reading[]> },
): Promise<VerifyReport> {
  const distinct = new Map<string, ExpectedReading>();
  for (const reading of expected) distinct.set(identityKey(reading.meterId, reading.channel, reading.at), reading);
  const groups = new Map<string, ExpectedReading[]>();
  for (const reading of distinct.values()) {
    const key = `${reading.meterId}|${reading.channel}`;
    const group = groups.get(key) ?? [];
    group.push(reading);
    groups.set(key, group);
  }
  const lost: ExpectedReading[] = [];
  let found = 0;
  for (const group of groups.values()) {
    const first = group[0]!;
    const times = group.map((r) => r.at.getTime());
    const stored = await store.query({
      meterId: first.meterId,
      channel: first.channel,
      from: new Date(Math.min(...times)),
      to: new Date(Math.max(...times) + 1),
    });
    const byTime = new Map<number, Reading>(stored.map((r) => [r.kind === 'interval' ? r.start.getTime() : r.at.getTime(), r]));
    for (const reading of group) {
      const hit = byTime.get(reading.at.getTime());
      if (hit && Math.abs(hit.value - reading.value) < 1e-9) found++;
      else lost.push(reading);
    }
  }
  const excess = tally.stored - distinct.size;
  let outside: Reading[] = [];
  if (excess > 0 && outsideOf) {
    outside = (await outsideOf.storedReadings()).filter((reading) => {
      const at = reading.kind === 'interval' ? reading.start : reading.at;
      return reading.source === outsideOf.source && !distinct.has(identityKey(reading.meterId, reading.channel, at));
    });
  }
  return { expected: distinct.size, found, lost, doubled: Math.max(0, excess - outside.length), outside };
}
