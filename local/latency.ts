/**
 * Latency end to end in local mode: from a reading's source event (its poll at the gateway, its
 * file landing on the SMT server, its READY POST) to the block write that stored it, seen on the
 * table's own stream (local/store-sightings.ts). Pure: the sources say when each reading was
 * produced, the store observer says when each reading first appeared in a block, and this module
 * matches the two and computes percentiles per source and phase.
 *
 * A reading is matched to the first sighting of the same identity (meter, channel, instant) with
 * the same value (and the same revision when the source knows it) at or after its source event.
 * A reading never seen is "not stored" (a later revision overtook it before it was written, or it
 * was absorbed as a duplicate): counted, never guessed.
 */
import type { ExpectedReading } from './progress.ts';

/** One reading as its source produced it, with the real time (epoch ms) of its source event. */
export interface LatencyOrigin {
  meterId: string;
  channel: string;
  /** Interval start or register time. */
  instant: number;
  value: number;
  /** Known for SMT and READY (from the parsed reading); the gateway's readings are matched by value. */
  revision?: number;
  /** Epoch ms of the source event. */
  at: number;
}

/** A reading the store wrote: what a block write's stream record changed, and when the observer read it (epoch ms). */
export interface StoreSighting {
  meterId: string;
  channel: string;
  instant: number;
  value: number;
  revision: number;
  at: number;
  /** The block's own last-write stamp (epoch ms of whole seconds, taken before the write was sent): a check on how late `at` is. */
  writtenAt?: number;
}

export type LatencyPhase = 'steady' | 'backlog';

/** A time window of a disturbance (e.g. the broker outage), epoch ms; `to` undefined while it lasts. */
export interface DisturbanceWindow {
  label: string;
  from: number;
  to?: number;
}

export interface MatchedLatency {
  origin: LatencyOrigin;
  storedAt: number;
  latencyMs: number;
}

export interface LatencyFigures {
  source: string;
  phase: LatencyPhase;
  /** Readings matched to their store write. */
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

const identity = (r: { meterId: string; channel: string; instant: number }) => `${r.meterId}\u0000${r.channel}\u0000${r.instant}`;

/** Nearest-rank percentile (p in 0..100) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Each origin against the first sighting of the same reading at or after its source event. */
export function matchLatencies(
  origins: readonly LatencyOrigin[],
  sightings: readonly StoreSighting[],
): { matched: MatchedLatency[]; notStored: LatencyOrigin[] } {
  const byIdentity = new Map<string, StoreSighting[]>();
  for (const sighting of sightings) {
    const key = identity(sighting);
    const list = byIdentity.get(key);
    if (list) list.push(sighting);
    else byIdentity.set(key, [sighting]);
  }
  for (const list of byIdentity.values()) list.sort((a, b) => a.at - b.at);
  const matched: MatchedLatency[] = [];
  const notStored: LatencyOrigin[] = [];
  for (const origin of origins) {
    const hit = byIdentity
      .get(identity(origin))
      ?.find((s) => s.at >= origin.at && s.value === origin.value && (origin.revision === undefined || s.revision === origin.revision));
    if (hit) matched.push({ origin, storedAt: hit.at, latencyMs: hit.at - origin.at });
    else notStored.push(origin);
  }
  return { matched, notStored };
}

/**
 * Backlog = produced during a disturbance, or after it while what it held back was still being
 * stored (until the last reading produced during it was stored); everything else is steady.
 */
export function phaseOf(matched: readonly MatchedLatency[], windows: readonly DisturbanceWindow[]): (m: MatchedLatency) => LatencyPhase {
  const spans = windows.map((w) => {
    const to = w.to ?? Number.POSITIVE_INFINITY;
    const held = matched.filter((m) => m.origin.at >= w.from && m.origin.at < to);
    const clearedAt = held.reduce((latest, m) => Math.max(latest, m.storedAt), to);
    return { from: w.from, until: clearedAt };
  });
  return (m) => (spans.some((s) => m.origin.at >= s.from && m.origin.at < s.until) ? 'backlog' : 'steady');
}

/** p50/p95/p99/max per phase of one source's matched readings (phases with no reading left out). */
export function latencyFigures(source: string, matched: readonly MatchedLatency[], windows: readonly DisturbanceWindow[] = []): LatencyFigures[] {
  const phase = phaseOf(matched, windows);
  const figures: LatencyFigures[] = [];
  for (const wanted of ['steady', 'backlog'] as const) {
    const sorted = matched
      .filter((m) => phase(m) === wanted)
      .map((m) => m.latencyMs)
      .sort((a, b) => a - b);
    if (sorted.length === 0) continue;
    figures.push({
      source,
      phase: wanted,
      count: sorted.length,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      max: sorted.at(-1)!,
    });
  }
  return figures;
}

/**
 * How long after the block's own write stamp the observer read each write (p50, p99, max; ms). The
 * stamp is whole seconds taken before the request was sent, so this is the observer's lag plus the
 * write's own round trip plus up to one second of rounding: an upper bound on how late a sighting is.
 */
export function observerLag(sightings: readonly StoreSighting[]): { count: number; p50: number; p99: number; max: number } {
  const lags = sightings
    .filter((s) => s.writtenAt !== undefined)
    .map((s) => s.at - s.writtenAt!)
    .sort((a, b) => a - b);
  return { count: lags.length, p50: percentile(lags, 50), p99: percentile(lags, 99), max: lags.at(-1) ?? Number.NaN };
}

/** The origin of an expected reading (its identity and value) produced at `at`. */
export function originOf(expected: ExpectedReading, at: number, revision?: number): LatencyOrigin {
  return {
    meterId: expected.meterId,
    channel: expected.channel,
    instant: expected.at.getTime(),
    value: expected.value,
    ...(revision === undefined ? {} : { revision }),
    at,
  };
}

const seconds = (ms: number) => (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);

/** One summary line per source and phase: `iot   steady   n=… p50 … p95 … p99 … max … s`. */
export function formatLatency(figures: LatencyFigures, notStored = 0, what = ''): string {
  return (
    `${figures.source.padEnd(5)} ${figures.phase.padEnd(7)} n=${String(figures.count).padStart(6)}  p50 ${seconds(figures.p50)} s  p95 ${seconds(figures.p95)} s` +
    `  p99 ${seconds(figures.p99)} s  max ${seconds(figures.max)} s${notStored > 0 ? `  (${notStored} not stored: overtaken or absorbed)` : ''}${what ? `  ${what}` : ''}`
  );
}
