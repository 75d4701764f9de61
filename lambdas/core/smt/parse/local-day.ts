/**
 * Placing SMT's local prevailing times on the UTC time line (with lambdas/core/time.ts).
 *
 * SMT labels intervals in local prevailing time, and on the fall-back day the labels repeat (one
 * real file labels a row `02:00,01:15`), so a day's rows are placed by POSITION: the local day
 * [midnight, next midnight) is cut into its real 15-minute intervals (92, 96 or 100 of them) and
 * the n-th row is the n-th interval. The spring-forward day comes as 96 rows whose 02:00-03:00
 * hour does not exist; those four rows must be blank and are skipped.
 */
import { addDays, startOfLocalDay, utcOffsetMs } from '../../time.ts';

export interface LocalDayGrid {
  date: string;
  /** UTC epoch ms of local midnight. */
  startMs: number;
  intervalSeconds: number;
  /** Real intervals in the day: 96, or 92 / 100 on DST change days (at 15 minutes). */
  intervals: number;
  /**
   * Rows a file carries for the day: equal to `intervals`, except on the spring-forward day where
   * SMT keeps the non-existent hour as blank rows.
   */
  rows: number;
  /** Positions (row numbers) that stand for no real interval (the skipped hour), else empty. */
  phantomRows: ReadonlySet<number>;
  /** Row position -> interval index (-1 for a phantom row). */
  intervalOfRow(row: number): number;
}

const grids = new Map<string, LocalDayGrid>();

/** The day's grid of intervals (cached: a file holds many meters on the same few days). */
export function localDayGrid(date: string, timeZone: string, intervalSeconds = 900): LocalDayGrid {
  const cacheKey = `${date}|${timeZone}|${intervalSeconds}`;
  const cached = grids.get(cacheKey);
  if (cached) return cached;
  const startMs = startOfLocalDay(date, timeZone).getTime();
  const endMs = startOfLocalDay(addDays(date, 1), timeZone).getTime();
  const intervals = Math.round((endMs - startMs) / 1000 / intervalSeconds);
  const nominal = Math.round(86_400 / intervalSeconds);
  const phantom = new Set<number>();
  if (intervals < nominal) {
    // The skipped local hour: find where the offset jumps and mark the rows whose labels fall in it.
    const gap = nominal - intervals;
    let firstPhantom = 0;
    const startOffset = utcOffsetMs(startMs, timeZone);
    while (firstPhantom < intervals && utcOffsetMs(startMs + (firstPhantom + 1) * intervalSeconds * 1000, timeZone) === startOffset) firstPhantom++;
    for (let row = firstPhantom + 1; row <= firstPhantom + gap; row++) phantom.add(row);
  }
  const rows = intervals < nominal ? nominal : intervals;
  const grid: LocalDayGrid = {
    date,
    startMs,
    intervalSeconds,
    intervals,
    rows,
    phantomRows: phantom,
    intervalOfRow(row: number): number {
      if (phantom.size === 0) return row;
      if (phantom.has(row)) return -1;
      let before = 0;
      for (const p of phantom) if (p < row) before++;
      return row - before;
    },
  };
  if (grids.size > 10_000) grids.clear();
  grids.set(cacheKey, grid);
  return grid;
}

/** Epoch ms of a local wall-clock time in `timeZone` (the earlier instant when the time repeats). */
export function localWallTimeToUtc(year: number, month: number, day: number, hour: number, minute: number, second: number, timeZone: string): number {
  const asUtc = Date.UTC(year, month - 1, day, hour, minute, second);
  const firstGuess = asUtc - utcOffsetMs(asUtc, timeZone);
  // Offsets either side of the guess: prefer the earlier valid reading of an ambiguous time.
  const candidates = [
    asUtc - utcOffsetMs(firstGuess - 3_600_000, timeZone),
    asUtc - utcOffsetMs(firstGuess, timeZone),
    asUtc - utcOffsetMs(firstGuess + 3_600_000, timeZone),
  ];
  const valid = candidates.filter((ms) => ms + utcOffsetMs(ms, timeZone) === asUtc).sort((a, b) => a - b);
  return valid[0] ?? firstGuess;
}
