/**
 * The query core: what the query API (lambdas/query-api.ts), local mode and the CLI
 * (`meterbridge meters list`, `meterbridge readings query`) all run. Pure of transport: it takes
 * parsed parameters, reads through the store and its catalog, and returns data; formats.ts and
 * espi.ts turn that into JSON, CSV or Green Button.
 *
 * Pagination: cursors are opaque (base64url JSON) positions, not offsets, so a page never repeats
 * or skips an item when earlier items are added meanwhile.
 * - meters: the catalog's shards in order, each in key order; the cursor is (shard, last meter).
 * - readings: ordered by (channel, identity instant); the cursor is (channel, last instant).
 */
import { CATALOG_SHARDS, CATALOG_SPAN_STEP_SECONDS, type CatalogEntry } from '../meter-catalog.ts';
import type { ReadingStore } from '../reading-store.ts';
import { mapWithConcurrency } from '../../../shared/concurrency.ts';
import { identityInstant, SOURCES, type Reading, type Source } from '../../../shared/reading.ts';

const DAY_MS = 86_400_000;

/** The API's limits; the CLI passes its own (it pages through every page itself). */
export interface QueryLimits {
  /** Range when neither `from` nor `to` is given, ending now (rounded up to the next whole hour). */
  defaultRangeMs: number;
  maxRangeMs: number;
  defaultMeterPage: number;
  maxMeterPage: number;
  defaultReadingPage: number;
  maxReadingPage: number;
}

export const API_LIMITS: QueryLimits = {
  defaultRangeMs: DAY_MS,
  maxRangeMs: 31 * DAY_MS,
  defaultMeterPage: 100,
  maxMeterPage: 1000,
  defaultReadingPage: 5000,
  maxReadingPage: 50_000,
};

/** A refused request: `status` is the HTTP status the API answers with, `code` a stable name. */
export class QueryError extends Error {
  constructor(
    readonly status: 400 | 404,
    readonly code: 'bad_request' | 'bad_range' | 'range_too_large' | 'page_too_large' | 'bad_cursor' | 'unknown_meter' | 'bad_format',
    message: string,
  ) {
    super(message);
    this.name = 'QueryError';
  }
}

/** One channel of a meter as the catalog records it, but with `first` and `last` exact (read from the first and last block). */
export type ChannelSummary = Omit<CatalogEntry, 'meterId'>;

export interface MeterSummary {
  meterId: string;
  sources: Source[];
  first: Date;
  last: Date;
  channels: ChannelSummary[];
}

export interface MeterListRequest {
  limit?: number;
  cursor?: string;
  source?: Source;
  /** Only meters with a reading at or after this instant. */
  since?: Date;
}

export interface ReadingsRequest {
  meterId: string;
  channel?: string;
  from?: Date;
  to?: Date;
  limit?: number;
  cursor?: string;
}

export interface ReadingsPage {
  meterId: string;
  /** False when the catalog has no channel of this meter (the API answers 404). */
  known: boolean;
  from: Date;
  to: Date;
  readings: Reading[];
  nextCursor?: string;
}

function encodeCursor(value: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decodeCursor(text: string): Record<string, unknown> {
  try {
    const value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as unknown;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // falls through to the refusal
  }
  throw new QueryError(400, 'bad_cursor', 'cursor is not one this API handed out');
}

function pageSize(limit: number | undefined, fallback: number, max: number): number {
  if (limit === undefined) return fallback;
  if (!Number.isInteger(limit) || limit < 1) throw new QueryError(400, 'bad_request', `limit must be a whole number from 1 to ${max} (got ${limit})`);
  if (limit > max) throw new QueryError(400, 'page_too_large', `limit ${limit} exceeds the maximum page of ${max}`);
  return limit;
}

/** Resolves and checks a time range against the limits (defaults as documented in docs/readings-out.md). */
export function resolveRange(from: Date | undefined, to: Date | undefined, limits: QueryLimits, now = new Date()): { from: Date; to: Date } {
  for (const [name, date] of [
    ['from', from],
    ['to', to],
  ] as const) {
    if (date !== undefined && Number.isNaN(date.getTime())) throw new QueryError(400, 'bad_range', `${name} is not a valid instant`);
  }
  const end = to ?? (from ? new Date(from.getTime() + limits.defaultRangeMs) : new Date(Math.ceil(now.getTime() / 3_600_000) * 3_600_000));
  const start = from ?? new Date(end.getTime() - limits.defaultRangeMs);
  if (start.getTime() >= end.getTime())
    throw new QueryError(400, 'bad_range', `from (${start.toISOString()}) must be before to (${end.toISOString()})`);
  if (end.getTime() - start.getTime() > limits.maxRangeMs) {
    throw new QueryError(
      400,
      'range_too_large',
      `range ${start.toISOString()} to ${end.toISOString()} exceeds the maximum of ${limits.maxRangeMs / DAY_MS} days`,
    );
  }
  return { from: start, to: end };
}

export class ReadingsQuery {
  constructor(
    private readonly store: ReadingStore,
    private readonly limits: QueryLimits = API_LIMITS,
  ) {}

  /** One meter's channels with exact spans; undefined when the catalog does not know the meter. */
  async meter(meterId: string): Promise<MeterSummary | undefined> {
    const entries = await this.store.catalog.channels(meterId);
    return entries.length === 0 ? undefined : this.summarize(meterId, entries);
  }

  private async summarize(meterId: string, entries: CatalogEntry[]): Promise<MeterSummary> {
    const channels = await mapWithConcurrency(entries, 8, async (entry): Promise<ChannelSummary> => {
      const exact = await this.store.catalog.exactSpan(meterId, entry.channel);
      return {
        channel: entry.channel,
        units: entry.units,
        intervalSeconds: entry.intervalSeconds,
        sources: entry.sources,
        first: exact?.first ?? entry.first,
        last: exact?.last ?? entry.last,
      };
    });
    const sources = [...new Set(channels.flatMap((c) => c.sources))].sort() as Source[];
    return {
      meterId,
      sources,
      first: new Date(Math.min(...channels.map((c) => c.first.getTime()))),
      last: new Date(Math.max(...channels.map((c) => c.last.getTime()))),
      channels,
    };
  }

  async listMeters(request: MeterListRequest): Promise<{ meters: MeterSummary[]; nextCursor?: string }> {
    const limit = pageSize(request.limit, this.limits.defaultMeterPage, this.limits.maxMeterPage);
    if (request.source !== undefined && !SOURCES.includes(request.source))
      throw new QueryError(400, 'bad_request', `source must be one of ${SOURCES.join(', ')}`);
    if (request.since !== undefined && Number.isNaN(request.since.getTime()))
      throw new QueryError(400, 'bad_request', 'since is not a valid instant');
    let shard = 0;
    let after: string | undefined;
    if (request.cursor !== undefined) {
      const cursor = decodeCursor(request.cursor);
      if (!Number.isInteger(cursor.s) || (cursor.s as number) < 0 || (cursor.s as number) >= CATALOG_SHARDS || typeof cursor.a !== 'string') {
        throw new QueryError(400, 'bad_cursor', 'cursor is not one this API handed out');
      }
      shard = cursor.s as number;
      after = cursor.a as string;
    }

    const meters: MeterSummary[] = [];
    while (shard < CATALOG_SHARDS) {
      // Entries of one meter are adjacent in a shard ("<meterId>#<channel>", '#' sorts below every id character).
      const { entries, more } = await this.store.catalog.entriesPage(shard, after, Math.min(1000, limit * 4 + 16));
      const groups = new Map<string, CatalogEntry[]>();
      for (const entry of entries) (groups.get(entry.meterId) ?? groups.set(entry.meterId, []).get(entry.meterId)!).push(entry);
      const ids = [...groups.keys()];
      // The last meter of a page that has more may continue on the next page: leave it for then.
      const complete = more ? ids.slice(0, -1) : ids;
      if (more && complete.length === 0) {
        // One meter with more channels than a page: read the rest of it before going on.
        const id = ids[0]!;
        const all = await this.store.catalog.channels(id);
        groups.set(id, all);
        complete.push(id);
      }
      for (const id of complete) {
        const summary = await this.filtered(id, groups.get(id)!, request);
        after = `${id}#\uffff`;
        if (summary) meters.push(summary);
        if (meters.length === limit) {
          const exhausted = !more && id === complete[complete.length - 1] && shard === CATALOG_SHARDS - 1;
          return exhausted ? { meters } : { meters, nextCursor: encodeCursor({ s: shard, a: after }) };
        }
      }
      if (!more) {
        shard += 1;
        after = undefined;
      }
    }
    return { meters };
  }

  private async filtered(meterId: string, entries: CatalogEntry[], request: MeterListRequest): Promise<MeterSummary | undefined> {
    if (request.source !== undefined && !entries.some((e) => e.sources.includes(request.source!))) return undefined;
    // The catalog's `last` trails the truth by less than the span step: a cheap first cut.
    if (request.since !== undefined && !entries.some((e) => e.last.getTime() + CATALOG_SPAN_STEP_SECONDS * 1000 > request.since!.getTime()))
      return undefined;
    const summary = await this.summarize(meterId, entries);
    if (request.since !== undefined && summary.last.getTime() < request.since.getTime()) return undefined;
    return summary;
  }

  async readings(request: ReadingsRequest): Promise<ReadingsPage> {
    const limit = pageSize(request.limit, this.limits.defaultReadingPage, this.limits.maxReadingPage);
    const { from, to } = resolveRange(request.from, request.to, this.limits);
    const catalogChannels = (await this.store.catalog.channels(request.meterId)).map((e) => e.channel);
    const known = catalogChannels.length > 0;
    // An explicit channel is asked even when the catalog lacks it (readings stored before the catalog existed).
    const channels = request.channel !== undefined ? [request.channel] : catalogChannels;
    let startChannel = 0;
    let after: number | undefined;
    if (request.cursor !== undefined) {
      const cursor = decodeCursor(request.cursor);
      const index = channels.indexOf(cursor.c as string);
      if (index === -1 || typeof cursor.t !== 'number') throw new QueryError(400, 'bad_cursor', 'cursor does not belong to this meter and channel');
      startChannel = index;
      after = cursor.t;
    }
    const readings: Reading[] = [];
    for (let i = startChannel; i < channels.length && readings.length <= limit; i++) {
      const channelFrom = i === startChannel && after !== undefined ? new Date(Math.max(from.getTime(), (after + 1) * 1000)) : from;
      if (channelFrom.getTime() >= to.getTime()) continue;
      readings.push(...(await this.store.query({ meterId: request.meterId, channel: channels[i]!, from: channelFrom, to })));
    }
    if (readings.length <= limit) return { meterId: request.meterId, known, from, to, readings };
    const page = readings.slice(0, limit);
    const last = page[page.length - 1]!;
    return {
      meterId: request.meterId,
      known,
      from,
      to,
      readings: page,
      nextCursor: encodeCursor({ c: last.channel, t: identityInstant(last).getTime() / 1000 }),
    };
  }
}
