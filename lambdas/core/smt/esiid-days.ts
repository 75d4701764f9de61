/**
 * Missing days per ESIID: which ESIIDs SMT stopped delivering while it still delivers others.
 *
 * Why an item of its own rather than the meter catalog: the catalog's `l` (last instant) is only
 * rewritten when it moves by 10 days (lambdas/core/meter-catalog.ts, to keep catalog writes rare),
 * so it cannot tell yesterday from last week. Instead the process step keeps one small item per
 * ESIID with the newest SMT day it delivered, in the readings table next to the catalog:
 *
 *   pk = "#smt-days#<shard>"   sk = "<ESIID>"   e = ESIID   ld = newest day delivered (YYYY-MM-DD, SMT's local date)   ua = epoch s of the write
 *
 * Shards are the catalog's (catalogShard, 16), so a whole-day delivery spreads its writes over 16
 * partitions and the daily check reads everything with 16 paged Queries. '#' keys never meet a
 * block, and the readings feed ignores them (lambdas/core/feed/block-change.ts).
 *
 * Cost. Writing: after each processed file, one conditional UpdateItem per ESIID whose newest
 * day in the file is newer than what this process last saw (`SET ld = :d` only if absent or
 * older): 1 write unit per ESIID per daily file, beside at least 3 units per ESIID-day of block
 * writes; revisions of older days and re-deliveries cost nothing (the cache, then the guard).
 * Reading: the check reads ~60 bytes per ESIID, eventually consistent: 10,000 ESIIDs are
 * ~600 KB, about 75 read units a day.
 *
 * "Reported a day" means the file carried at least one reading of that day for the ESIID (any
 * channel, intervals or register reads); a day SMT sent entirely blank does not count.
 */
import { ConditionalCheckFailedException, QueryCommand, UpdateItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { mapWithConcurrency } from '../../../shared/concurrency.ts';
import type { Log } from '../../../shared/log.ts';
import { catalogShard, CATALOG_SHARDS } from '../meter-catalog.ts';
import type { Metrics } from '../metrics.ts';
import type { ReadingStore } from '../reading-store.ts';
import { addDays } from '../time.ts';

const PREFIX = '#smt-days#';
/** Entries this process remembers; beyond it the cache starts afresh (a miss costs one guarded write). */
const CACHE_LIMIT = 100_000;
/** ESIIDs named per log line, so a long list stays far below CloudWatch Logs' 256 KB per event. */
const LOG_CHUNK = 500;
/** Default of `smt.missingDaysWindow`: an ESIID silent for longer is taken as gone (moved out, disconnected), not missing. */
export const DEFAULT_MISSING_WINDOW_DAYS = 7;

export interface EsiidLastDay {
  esiid: string;
  /** Newest SMT local date (YYYY-MM-DD) the ESIID was delivered for. */
  lastDay: string;
}

export function esiidDaysKey(esiid: string): { pk: string; sk: string } {
  return { pk: `${PREFIX}${catalogShard(esiid).toString(16)}`, sk: esiid };
}

export class EsiidDays {
  private readonly known = new Map<string, string>();

  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  /** The ESIID days kept in the same table as a store's readings (one instance per store, so its cache is shared). */
  static of(store: ReadingStore): EsiidDays {
    let days = OF_STORE.get(store);
    if (!days) OF_STORE.set(store, (days = new EsiidDays(store.client, store.tableName)));
    return days;
  }

  /**
   * Records the newest day each ESIID was delivered for (ESIID -> YYYY-MM-DD); an older day than
   * the stored one changes nothing. Resolves to the write requests sent.
   */
  async note(newest: ReadonlyMap<string, string>): Promise<{ writes: number }> {
    const due = [...newest].filter(([esiid, day]) => (this.known.get(esiid) ?? '') < day);
    const now = String(Math.floor(Date.now() / 1000));
    await mapWithConcurrency(due, 8, async ([esiid, day]) => {
      const key = esiidDaysKey(esiid);
      try {
        await this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: { pk: { S: key.pk }, sk: { S: key.sk } },
            UpdateExpression: 'SET e = :e, ld = :d, ua = :ua',
            ConditionExpression: 'attribute_not_exists(ld) OR ld < :d',
            ExpressionAttributeValues: { ':e': { S: esiid }, ':d': { S: day }, ':ua': { N: now } },
          }),
        );
        this.remember(esiid, day);
      } catch (error) {
        // The stored day is as new or newer (another file, a replay): nothing to record.
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        this.remember(esiid, day);
      }
    });
    return { writes: due.length };
  }

  /** Every ESIID with its newest delivered day (16 paged Queries, eventually consistent). */
  async all(): Promise<EsiidLastDay[]> {
    const shards = Array.from({ length: CATALOG_SHARDS }, (_, shard) => shard);
    const pages = await mapWithConcurrency(shards, 4, async (shard) => {
      const entries: EsiidLastDay[] = [];
      let start: Record<string, AttributeValue> | undefined;
      do {
        const page = await this.client.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: 'pk = :pk',
            ExpressionAttributeValues: { ':pk': { S: `${PREFIX}${shard.toString(16)}` } },
            ProjectionExpression: 'e, ld',
            ExclusiveStartKey: start,
          }),
        );
        for (const item of page.Items ?? []) if (item.e?.S && item.ld?.S) entries.push({ esiid: item.e.S, lastDay: item.ld.S });
        start = page.LastEvaluatedKey;
      } while (start);
      return entries;
    });
    return pages.flat();
  }

  private remember(esiid: string, day: string): void {
    if ((this.known.get(esiid) ?? '') >= day) return;
    if (this.known.size >= CACHE_LIMIT) this.known.clear();
    this.known.set(esiid, day);
  }
}

const OF_STORE = new WeakMap<ReadingStore, EsiidDays>();

export interface MissingDaysReport {
  /** The newest day SMT delivered for any ESIID; undefined when nothing was ever delivered. */
  newestDay?: string;
  windowDays: number;
  /** ESIIDs delivered for the newest day. */
  reporting: number;
  /** ESIIDs delivered within the window but not for the newest day, oldest last day first. */
  missing: EsiidLastDay[];
  /** ESIIDs silent for longer than the window (taken as gone, not listed). */
  silentLonger: number;
}

/**
 * Pure: which ESIIDs reported within `windowDays` before the newest day delivered for anyone
 * (newest - windowDays <= lastDay < newest) but not for the newest day itself.
 */
export function findMissingDays(entries: readonly EsiidLastDay[], windowDays: number): MissingDaysReport {
  if (!Number.isInteger(windowDays) || windowDays < 1) throw new Error(`window of ${windowDays} days must be a whole number from 1`);
  const newestDay = entries.reduce<string | undefined>(
    (newest, entry) => (newest === undefined || entry.lastDay > newest ? entry.lastDay : newest),
    undefined,
  );
  if (newestDay === undefined) return { windowDays, reporting: 0, missing: [], silentLonger: 0 };
  const oldest = addDays(newestDay, -windowDays);
  const missing = entries
    .filter((entry) => entry.lastDay < newestDay && entry.lastDay >= oldest)
    .sort((a, b) => a.lastDay.localeCompare(b.lastDay) || a.esiid.localeCompare(b.esiid));
  return {
    newestDay,
    windowDays,
    reporting: entries.filter((entry) => entry.lastDay === newestDay).length,
    missing,
    silentLonger: entries.filter((entry) => entry.lastDay < oldest).length,
  };
}

export interface MissingDaysCheckDependencies {
  days: Pick<EsiidDays, 'all'>;
  windowDays: number;
  /** Receives SmtMissingEsiidDays (flushed by the caller). */
  metrics?: Metrics;
  log?: Log;
}

/**
 * The daily check (the scheduled Lambda and `meterbridge smt missing` both run it): reads every
 * ESIID's newest day, publishes the number missing the newest day as SmtMissingEsiidDays (also
 * when 0, so the alarm clears) and logs them with their last day, for a request to SMT.
 */
export async function checkMissingDays(deps: MissingDaysCheckDependencies): Promise<MissingDaysReport> {
  const report = findMissingDays(await deps.days.all(), deps.windowDays);
  deps.metrics?.count('SmtMissingEsiidDays', report.missing.length);
  const summary = {
    newestDay: report.newestDay ?? null,
    windowDays: report.windowDays,
    reporting: report.reporting,
    missing: report.missing.length,
    silentLonger: report.silentLonger,
  };
  if (report.missing.length === 0) {
    deps.log?.info('SMT missing days: every ESIID of the window delivered the newest day', summary);
    return report;
  }
  for (let i = 0; i < report.missing.length; i += LOG_CHUNK) {
    deps.log?.warn('SMT ESIIDs missing the newest day: request them from SMT', {
      ...summary,
      part: i / LOG_CHUNK + 1,
      esiids: report.missing.slice(i, i + LOG_CHUNK).map((entry) => `${entry.esiid} last ${entry.lastDay}`),
    });
  }
  return report;
}
