/**
 * The idempotent reading store: interval blocks on DynamoDB (layout in interval-block.ts).
 *
 * Every write is one conditional UpdateItem per block. When the condition fails, DynamoDB hands
 * back the block as it is (ReturnValuesOnConditionCheckFailure: ALL_OLD), which tells duplicates,
 * stale revisions and conflicts apart without a second read; what still needs writing is retried
 * on the block's version, so no decision is ever taken on a read that a racing writer could
 * invalidate. Timeline of two writers of the same reading:
 *
 *   A: UpdateItem(slot absent or older)      -> succeeds: stored
 *   B: UpdateItem(slot absent or older)      -> condition fails, ALL_OLD shows A's slot
 *   B: same revision, same value             -> duplicate (nothing written)
 *
 * Whole-block writes (a new day, a write on the version) store the block packed when its values
 * fit exactly (interval-block.ts packBlock): a 96-interval kWh day is then one write unit instead
 * of three. A small write's per-slot condition also requires the block not to be packed, so a
 * small write into a packed block fails, is classified against the returned image like any
 * other, and rewrites the block on its version: the same rules, one request more.
 */
import { ConditionalCheckFailedException, QueryCommand, UpdateItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { mapWithConcurrency } from '../../shared/concurrency.ts';
import {
  classify,
  decodeBlock,
  durationOf,
  initialGuard,
  locate,
  originOf,
  partitionKey,
  planBlockWrite,
  roundsOfDistinctSlots,
  shapeMismatch,
  slotToReading,
  WRITE_STATUSES,
  type BlockKey,
  type BlockShape,
  type DecodedBlock,
  type Guard,
  type PendingWrite,
  type StoredValue,
  type WriteStatus,
} from './interval-block.ts';
import { itemSizeBytes, writeUnitsFor } from './item-size.ts';
import { MeterCatalog, mergeSighting, type CatalogCost, type CatalogSighting } from './meter-catalog.ts';
import { identityInstant, type Reading } from '../../shared/reading.ts';
import { addDays, assertTimeZone, localDate } from './time.ts';

export interface ReadingStoreOptions {
  client: DynamoDBClient;
  tableName: string;
  /**
   * The IANA zone whose local days cut blocks, so that a utility's day (an SMT file's day) is
   * one item and one write. Fixed for the life of a table: changing it would move identities.
   * @default 'UTC'
   */
  blockTimeZone?: string;
  /** Blocks written in parallel by one `write` call. @default 16 */
  concurrency?: number;
  /** Attempts per block before StoreContentionError (each failed attempt means a racing writer). @default 8 */
  maxAttempts?: number;
  /** Source of "now" for the block's last-write stamp. @default () => new Date() */
  clock?: () => Date;
}

export interface WriteOutcome {
  reading: Reading;
  status: WriteStatus;
  /** What the block held: the value replaced (superseded) or kept (duplicate, stale, conflict). */
  existing?: StoredValue;
  /** Why a conflict is one, naming both values. */
  reason?: string;
}

export interface WriteReport {
  /** One outcome per input reading, in input order. */
  outcomes: WriteOutcome[];
  counts: Record<WriteStatus, number>;
  /** UpdateItem requests sent. */
  requests: number;
  /**
   * Write units consumed by the blocks: as reported by DynamoDB for successful writes, and
   * estimated from the returned item size for failed conditions (billed but not reported).
   */
  writeUnits: number;
  /** What keeping the meter catalog up to date cost on top (meter-catalog.ts); usually nothing. */
  catalog: CatalogCost;
}

export interface ReadingQuery {
  meterId: string;
  channel: string;
  /** Inclusive: readings whose identity instant is at or after this. */
  from: Date;
  /** Exclusive. */
  to: Date;
}

/** A block kept changing under us for maxAttempts tries; the unit of work should be retried. */
export class StoreContentionError extends Error {
  constructor(key: BlockKey, attempts: number) {
    super(`block ${key.pk} ${key.sk} changed under ${attempts} consecutive write attempts; retry the unit of work`);
    this.name = 'StoreContentionError';
  }
}

export class ReadingStore {
  /** The table's client and name: side items kept in the same table (lambdas/core/smt/esiid-days.ts) use them. */
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** The zone whose local days cut blocks (see ReadingStoreOptions.blockTimeZone). */
  readonly blockTimeZone: string;
  private readonly concurrency: number;
  private readonly maxAttempts: number;
  private readonly clock: () => Date;
  /** The meter catalog this store maintains; readers use it to list meters and channels. */
  readonly catalog: MeterCatalog;

  constructor(options: ReadingStoreOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
    this.blockTimeZone = options.blockTimeZone ?? 'UTC';
    assertTimeZone(this.blockTimeZone);
    this.concurrency = options.concurrency ?? 16;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.clock = options.clock ?? (() => new Date());
    this.catalog = new MeterCatalog(this.client, this.tableName, this.clock, this.maxAttempts);
  }

  /** Writes validated readings; one conditional write per block touched (more only on races or repeats). */
  async write(readings: readonly Reading[]): Promise<WriteReport> {
    type Block = { key: BlockKey; blockStart: number; writes: Array<PendingWrite & { index: number }> };
    const blocks = new Map<string, Block>();
    // A block's readings come in runs (a block message's values, a file's day): one lookup per run.
    let run: Block | undefined;
    readings.forEach((reading, index) => {
      const { key, blockStart, slot } = locate(reading, this.blockTimeZone);
      if (run === undefined || run.key.pk !== key.pk || run.key.sk !== key.sk) {
        const id = `${key.pk}\u0000${key.sk}`;
        run = blocks.get(id);
        if (!run) blocks.set(id, (run = { key, blockStart, writes: [] }));
      }
      run.writes.push({ reading, slot, index });
    });

    const outcomes = new Array<WriteOutcome>(readings.length);
    let requests = 0;
    let writeUnits = 0;
    await mapWithConcurrency([...blocks.values()], this.concurrency, async (block) => {
      for (const round of roundsOfDistinctSlots(block.writes)) {
        const result = await this.writeRound(block.key, block.blockStart, round as Array<PendingWrite & { index: number }>);
        requests += result.requests;
        writeUnits += result.writeUnits;
        for (const [index, outcome] of result.outcomes) outcomes[index] = outcome;
      }
    });

    const counts = Object.fromEntries(WRITE_STATUSES.map((status) => [status, 0])) as Record<WriteStatus, number>;
    for (const outcome of outcomes) counts[outcome.status] += 1;

    // After the blocks, so the catalog never names a reading that is not stored. Duplicates and
    // stale readings count as sightings too: a replay after a failed catalog write repairs it.
    const sightings = new Map<string, CatalogSighting>();
    let previous: { reading: Reading; sighting: CatalogSighting } | undefined;
    for (const { reading, status } of outcomes) {
      if (status === 'conflict') continue;
      const instant = identityInstant(reading).getTime() / 1000;
      // Readings of one series come in runs (a block's values): extend the run's sighting in place.
      if (previous && sameSeriesShape(previous.reading, reading)) {
        previous.sighting.first = Math.min(previous.sighting.first, instant);
        previous.sighting.last = Math.max(previous.sighting.last, instant);
        continue;
      }
      const id = `${reading.meterId}#${reading.channel}`;
      const sighting = mergeSighting(sightings.get(id), {
        meterId: reading.meterId,
        channel: reading.channel,
        units: new Set([reading.unit]),
        intervalSeconds: new Set([durationOf(reading)]),
        sources: new Set([reading.source]),
        first: instant,
        last: instant,
      });
      sightings.set(id, sighting);
      previous = { reading, sighting };
    }
    const catalog: CatalogCost = { writes: 0, writeUnits: 0, reads: 0, readUnits: 0 };
    await mapWithConcurrency([...sightings.values()], this.concurrency, async (sighting) => {
      const cost = await this.catalog.note(sighting);
      catalog.writes += cost.writes;
      catalog.writeUnits += cost.writeUnits;
      catalog.reads += cost.reads;
      catalog.readUnits += cost.readUnits;
    });
    return { outcomes, counts, requests, writeUnits, catalog };
  }

  private async writeRound(
    key: BlockKey,
    blockStart: number,
    round: Array<PendingWrite & { index: number }>,
  ): Promise<{ outcomes: Map<number, WriteOutcome>; requests: number; writeUnits: number }> {
    const outcomes = new Map<number, WriteOutcome>();
    let pending = round;
    let guard: Guard = initialGuard(pending);
    const wholeBlock = guard.kind === 'new-block';
    /** The block as the last failed condition returned it: exactly what a version-guarded write replaces. */
    let image: DecodedBlock | undefined;
    let requests = 0;
    let writeUnits = 0;

    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const parts = planBlockWrite(pending, guard, image, { blockStart, now: Math.floor(this.clock().getTime() / 1000), wholeBlock });
      requests += 1;
      try {
        const response = await this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: { pk: { S: key.pk }, sk: { S: key.sk } },
            ...parts,
            ReturnValues: 'UPDATED_OLD',
            ReturnConsumedCapacity: 'TOTAL',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        writeUnits += response.ConsumedCapacity?.CapacityUnits ?? 0;
        // On the version the block was the image classified against; a new block held nothing.
        const before = guard.kind === 'version' && image ? image : decodeBlock(response.Attributes ?? {});
        for (const write of pending) {
          const replaced = before.slots.get(write.slot);
          outcomes.set(
            write.index,
            replaced ? { reading: write.reading, status: 'superseded', existing: replaced } : { reading: write.reading, status: 'stored' },
          );
        }
        return { outcomes, requests, writeUnits };
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        const item: Record<string, AttributeValue> | undefined = error.Item;
        writeUnits += writeUnitsFor(item ? itemSizeBytes(item) : 0);
        if (!item) {
          // The block vanished between attempts (deleted by an operator): write it afresh.
          guard = { kind: 'new-block' };
          image = undefined;
          continue;
        }
        const block = (image = decodeBlock(item));
        const stillToWrite: typeof pending = [];
        for (const write of pending) {
          const existing = block.slots.get(write.slot);
          const status = classify(write.reading, existing, block);
          if (status === 'stored' || status === 'superseded') {
            stillToWrite.push(write);
          } else {
            outcomes.set(write.index, {
              reading: write.reading,
              status,
              existing,
              reason: status === 'conflict' ? conflictReason(write.reading, existing, block) : undefined,
            });
          }
        }
        if (stillToWrite.length === 0) return { outcomes, requests, writeUnits };
        pending = stillToWrite;
        guard = { kind: 'version', version: block.version };
      }
    }
    throw new StoreContentionError(key, this.maxAttempts);
  }

  /** Readings of one meter and channel with identity instant in [from, to), in time order. */
  async query(query: ReadingQuery): Promise<Reading[]> {
    const readings: Reading[] = [];
    let exclusiveStartKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND sk BETWEEN :first AND :last',
          ExpressionAttributeValues: {
            ':pk': { S: partitionKey(query.meterId, query.channel) },
            // A block is listed under its local date; widen by a day each side so a zone change
            // of the caller's mind never hides a block, then filter on exact instants below.
            ':first': { S: addDays(localDate(query.from, this.blockTimeZone), -1) },
            ':last': { S: addDays(localDate(query.to, this.blockTimeZone), 1) },
          },
          ExclusiveStartKey: exclusiveStartKey,
        }),
      );
      for (const item of page.Items ?? []) {
        const block = decodeBlock(item);
        for (const [slot, stored] of block.slots) {
          const reading = slotToReading(query.meterId, query.channel, block, slot, stored);
          const instant = identityInstant(reading).getTime();
          if (instant >= query.from.getTime() && instant < query.to.getTime()) readings.push(reading);
        }
      }
      exclusiveStartKey = page.LastEvaluatedKey;
    } while (exclusiveStartKey);
    return readings.sort((a, b) => identityInstant(a).getTime() - identityInstant(b).getTime());
  }
}

/** Whether a reading adds nothing to the previous one's sighting but its instant (same series, unit, interval length, source). */
function sameSeriesShape(a: Reading, b: Reading): boolean {
  return a.meterId === b.meterId && a.channel === b.channel && a.unit === b.unit && a.source === b.source && durationOf(a) === durationOf(b);
}

function conflictReason(incoming: Reading, existing: StoredValue | undefined, block: BlockShape): string {
  const mismatch = shapeMismatch(incoming, block);
  if (mismatch !== undefined) return mismatch;
  return (
    `revision ${incoming.revision} (${incoming.quality}) already stored with value ${existing!.value} ${block.unit}` +
    ` from ${existing!.origin ?? 'unknown origin'}; incoming value ${incoming.value} ${incoming.unit} from ${originOf(incoming)}`
  );
}
