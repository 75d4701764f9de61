/**
 * The meter catalog: which meters exist, their channels (units, interval lengths), the sources
 * that wrote them and the time span of their readings. Kept in the readings table itself and
 * maintained by the store's own writes (ReadingStore.write calls `note`), so no other path has to
 * remember to register a meter.
 *
 * Layout: one item per (meter, channel) under one of CATALOG_SHARDS partitions, so listing meters
 * is a Query per shard, and a meter's channels are one Query (all under the meter's shard):
 *
 *   pk  = "#catalog#<shard>"            sk = "<meterId>#<channel>"
 *   m, c = meter and channel            u  = string set of units      d = number set of interval lengths (s, 0 = register)
 *   src = string set of sources         f, l = first and last identity instant seen (epoch s)   ua = last catalog write
 *
 * Block keys never start with '#' (meter ids start with a letter or digit), so catalog items can
 * never meet a block. Shards spread the catalog writes of a whole-day delivery over 16 partitions
 * instead of one.
 *
 * Cost, the reason for the design. A catalog write is a 1-write-unit UpdateItem; a whole day of
 * 96 readings is one 3-unit block write. Writing the catalog on every new block would add 33 %
 * to the cheapest path. So a catalog write happens only when it says something new: a meter or
 * channel first seen, a new unit, interval length or source, or a time span that widens by at
 * least CATALOG_SPAN_STEP_SECONDS (10 days). Whether that is so is decided against what this
 * process last saw of the entry (a bounded cache), read on a miss with one eventually consistent
 * GetItem (0.5 read units; reads, not writes, and far cheaper), and re-read before any write that
 * looks due, so a process with a stale view pays a read, not a failed (billed) write. Steady state: one catalog write
 * per meter and channel every 10 days. The stored `f`/`l` are therefore within 10 days of the
 * truth; readers that need exact times ask the first and last block (`exactSpan`).
 *
 * Every write is guarded on the entry as it was seen (absent, or `f` and `l` unchanged), so two
 * writers never move a span backwards; a failed guard hands back the entry (ALL_OLD) and the
 * write is recomputed against it. Sets are merged with ADD, which is idempotent.
 */
import { createHash } from 'node:crypto';
import {
  ConditionalCheckFailedException,
  GetItemCommand,
  QueryCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { decodeBlock, partitionKey } from './interval-block.ts';
import type { Source, Unit } from '../../shared/reading.ts';

export const CATALOG_SHARDS = 16;
const CATALOG_PREFIX = '#catalog#';
/** The catalog's span is rewritten only when it widens by at least this much (see the header). */
export const CATALOG_SPAN_STEP_SECONDS = 10 * 86_400;
/** Entries this process remembers; beyond it the cache starts afresh (a miss costs one read). */
const CACHE_LIMIT = 100_000;

export function catalogShard(meterId: string): number {
  return createHash('sha256').update(meterId).digest()[0]! % CATALOG_SHARDS;
}

export function catalogKey(meterId: string, channel: string): { pk: string; sk: string } {
  return { pk: `${CATALOG_PREFIX}${catalogShard(meterId).toString(16)}`, sk: `${meterId}#${channel}` };
}

export function shardPartition(shard: number): string {
  return `${CATALOG_PREFIX}${shard.toString(16)}`;
}

/** One (meter, channel) as the catalog records it. */
export interface CatalogEntry {
  meterId: string;
  channel: string;
  units: Unit[];
  /** Interval lengths in seconds; 0 stands for register reads. */
  intervalSeconds: number[];
  sources: Source[];
  /** First and last identity instant recorded (within CATALOG_SPAN_STEP_SECONDS of the truth; see exactSpan). */
  first: Date;
  last: Date;
}

/** What one store write saw of a (meter, channel): every reading it stored, superseded or found already there. */
export interface CatalogSighting {
  meterId: string;
  channel: string;
  units: Set<Unit>;
  intervalSeconds: Set<number>;
  sources: Set<Source>;
  /** Epoch seconds of the earliest and latest identity instant. */
  first: number;
  last: number;
}

interface KnownEntry {
  units: Set<string>;
  intervalSeconds: Set<number>;
  sources: Set<string>;
  first: number;
  last: number;
}

export interface CatalogCost {
  /** UpdateItem requests sent to the catalog. */
  writes: number;
  writeUnits: number;
  /** GetItem requests (cache misses). */
  reads: number;
  readUnits: number;
}

export function decodeCatalogItem(item: Record<string, AttributeValue>): CatalogEntry {
  return {
    meterId: item.m?.S ?? '',
    channel: item.c?.S ?? '',
    units: [...(item.u?.SS ?? [])].sort() as Unit[],
    intervalSeconds: (item.d?.NS ?? []).map(Number).sort((a, b) => a - b),
    sources: [...(item.src?.SS ?? [])].sort() as Source[],
    first: new Date(Number(item.f?.N ?? 0) * 1000),
    last: new Date(Number(item.l?.N ?? 0) * 1000),
  };
}

function known(item: Record<string, AttributeValue> | undefined): KnownEntry | undefined {
  if (!item || item.f?.N === undefined) return undefined;
  return {
    units: new Set(item.u?.SS ?? []),
    intervalSeconds: new Set((item.d?.NS ?? []).map(Number)),
    sources: new Set(item.src?.SS ?? []),
    first: Number(item.f.N),
    last: Number(item.l?.N ?? item.f.N),
  };
}

/** Whether the sighting tells the catalog something it does not hold yet (see the header for the span rule). */
export function catalogWriteDue(entry: KnownEntry | undefined, sighting: CatalogSighting): boolean {
  if (!entry) return true;
  for (const unit of sighting.units) if (!entry.units.has(unit)) return true;
  for (const seconds of sighting.intervalSeconds) if (!entry.intervalSeconds.has(seconds)) return true;
  for (const source of sighting.sources) if (!entry.sources.has(source)) return true;
  return sighting.first <= entry.first - CATALOG_SPAN_STEP_SECONDS || sighting.last >= entry.last + CATALOG_SPAN_STEP_SECONDS;
}

/** The UpdateItem that merges a sighting into the entry as last seen (guarded on it). */
export function buildCatalogUpdate(sighting: CatalogSighting, entry: KnownEntry | undefined, now: number) {
  const first = entry ? Math.min(entry.first, sighting.first) : sighting.first;
  const last = entry ? Math.max(entry.last, sighting.last) : sighting.last;
  const values: Record<string, AttributeValue> = {
    ':m': { S: sighting.meterId },
    ':c': { S: sighting.channel },
    ':u': { SS: [...sighting.units] },
    ':d': { NS: [...sighting.intervalSeconds].map(String) },
    ':src': { SS: [...sighting.sources] },
    ':f': { N: String(first) },
    ':l': { N: String(last) },
    ':ua': { N: String(now) },
  };
  let condition = 'attribute_not_exists(f)';
  if (entry) {
    condition = 'f = :knownF AND l = :knownL';
    values[':knownF'] = { N: String(entry.first) };
    values[':knownL'] = { N: String(entry.last) };
  }
  return {
    UpdateExpression: 'SET m = :m, c = :c, f = :f, l = :l, ua = :ua ADD u :u, d :d, src :src',
    ConditionExpression: condition,
    ExpressionAttributeValues: values,
  };
}

/** Merges sightings of the same (meter, channel) from one write. */
export function mergeSighting(into: CatalogSighting | undefined, next: CatalogSighting): CatalogSighting {
  if (!into) return next;
  for (const unit of next.units) into.units.add(unit);
  for (const seconds of next.intervalSeconds) into.intervalSeconds.add(seconds);
  for (const source of next.sources) into.sources.add(source);
  into.first = Math.min(into.first, next.first);
  into.last = Math.max(into.last, next.last);
  return into;
}

export class MeterCatalog {
  private readonly cache = new Map<string, KnownEntry>();

  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    private readonly clock: () => Date = () => new Date(),
    private readonly maxAttempts = 8,
  ) {}

  /** Records what a store write saw; writes only what is new (see the header). Resolves to what it cost. */
  async note(sighting: CatalogSighting): Promise<CatalogCost> {
    const cost: CatalogCost = { writes: 0, writeUnits: 0, reads: 0, readUnits: 0 };
    const key = catalogKey(sighting.meterId, sighting.channel);
    const cacheKey = key.sk;
    let entry = this.cache.get(cacheKey);
    if (entry && !catalogWriteDue(entry, sighting)) return cost;
    // A miss, or a write looks due against what this process saw: other processes may have
    // written the entry since, and a guarded write on a stale view would fail and still be
    // billed a write unit. Reading it first costs half a read unit instead.
    const response = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: { pk: { S: key.pk }, sk: { S: key.sk } }, ReturnConsumedCapacity: 'TOTAL' }),
    );
    cost.reads += 1;
    cost.readUnits += response.ConsumedCapacity?.CapacityUnits ?? 0.5;
    entry = known(response.Item);
    if (entry) this.remember(cacheKey, entry);
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      if (!catalogWriteDue(entry, sighting)) return cost;
      const update = buildCatalogUpdate(sighting, entry, Math.floor(this.clock().getTime() / 1000));
      cost.writes += 1;
      try {
        const response = await this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: { pk: { S: key.pk }, sk: { S: key.sk } },
            ...update,
            ReturnValues: 'ALL_NEW',
            ReturnConsumedCapacity: 'TOTAL',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        cost.writeUnits += response.ConsumedCapacity?.CapacityUnits ?? 1;
        this.remember(cacheKey, known(response.Attributes)!);
        return cost;
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        // Billed like a write of the returned item (1 unit for an entry this small).
        cost.writeUnits += 1;
        entry = known(error.Item);
      }
    }
    // Another writer kept changing the entry: it is being maintained, and the next sighting retries.
    return cost;
  }

  private remember(cacheKey: string, entry: KnownEntry): void {
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(cacheKey, entry);
  }

  /** Every channel of one meter, in channel order; empty for an unknown meter. */
  async channels(meterId: string): Promise<CatalogEntry[]> {
    const key = catalogKey(meterId, '');
    const entries: CatalogEntry[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: { ':pk': { S: key.pk }, ':prefix': { S: key.sk } },
          ExclusiveStartKey: start,
        }),
      );
      for (const item of page.Items ?? []) entries.push(decodeCatalogItem(item));
      start = page.LastEvaluatedKey;
    } while (start);
    return entries;
  }

  /**
   * One page of catalog entries of one shard, after `afterSk` (exclusive) in key order. The
   * caller (the query core) turns shards and positions into an opaque cursor.
   */
  async entriesPage(shard: number, afterSk: string | undefined, limit: number): Promise<{ entries: CatalogEntry[]; more: boolean }> {
    const page = await this.client.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: shardPartition(shard) } },
        Limit: limit,
        ...(afterSk !== undefined ? { ExclusiveStartKey: { pk: { S: shardPartition(shard) }, sk: { S: afterSk } } } : {}),
      }),
    );
    return { entries: (page.Items ?? []).map(decodeCatalogItem), more: page.LastEvaluatedKey !== undefined };
  }

  /**
   * The exact first and last identity instant of a (meter, channel): the earliest slot of its
   * first block and the latest slot of its last block (two single-item Queries).
   */
  async exactSpan(meterId: string, channel: string): Promise<{ first: Date; last: Date } | undefined> {
    const edge = async (forward: boolean): Promise<number | undefined> => {
      // The newest "block" in key order could only be a block: block sort keys are dates.
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: partitionKey(meterId, channel) } },
          ScanIndexForward: forward,
          Limit: 1,
        }),
      );
      const item = page.Items?.[0];
      if (!item) return undefined;
      const block = decodeBlock(item);
      const offsets = [...block.slots.keys()].map((slot) => Number(slot.slice(1)));
      if (offsets.length === 0) return undefined;
      return block.blockStart + (forward ? Math.min(...offsets) : Math.max(...offsets));
    };
    const [first, last] = await Promise.all([edge(true), edge(false)]);
    return first === undefined || last === undefined ? undefined : { first: new Date(first * 1000), last: new Date(last * 1000) };
  }
}
