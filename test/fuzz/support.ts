/**
 * Property-based fuzzing of everything that faces the outside, with one shape for every target:
 * an arbitrary that makes inputs, and a check that runs one input through the code under test
 * and says whether it was accepted or refused, throwing when an invariant breaks.
 *
 * `npm test` runs each target with a fixed seed and FUZZ_RUNS cases (default 2,000) so a failure
 * is reproducible; `npm run fuzz` runs 100,000 cases per target and collects the per-target
 * figures (cases, crashes, hangs, wrongly accepted) into bench/FUZZ.md.
 *
 * A case that does not settle within its deadline is a hang and fails the target: a parser that
 * neither ends nor errors on some input is a bug, not a slow test.
 */
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';

export { fc };

/** What the code under test did with one input. */
export interface Verdict {
  outcome: 'accepted' | 'refused';
  /** Set when the input was accepted although it should have been refused: why it is wrong. */
  wronglyAccepted?: string;
}

export interface FuzzTarget<T> {
  /** Short name, one per target: the row in bench/FUZZ.md. */
  name: string;
  arbitrary: fc.Arbitrary<T>;
  /**
   * Runs one input. Returns the verdict; throws an AssertionError when an invariant breaks
   * (a reading that violates the model, an untyped refusal, a result that depends on chunking).
   * Any other exception is a crash.
   */
  check(input: T): Promise<Verdict> | Verdict;
  /** Per-case deadline in ms. @default 5000 */
  deadlineMs?: number;
  /** Cases for this target, if it is much slower than the others. @default FUZZ_RUNS or 2000 */
  runs?: number;
}

export interface FuzzReport {
  target: string;
  seed: number;
  cases: number;
  accepted: number;
  refused: number;
  crashes: number;
  hangs: number;
  wronglyAccepted: number;
  invariantFailures: number;
  seconds: number;
}

/** Thrown by withDeadline: the work neither resolved nor rejected in time. */
export class HangError extends Error {
  constructor(readonly ms: number) {
    super(`did not settle within ${ms} ms`);
    this.name = 'HangError';
  }
}

/**
 * Resolves like `work`, or rejects with HangError after `ms`. The timer is deliberately not unref'd:
 * work that hangs on nothing (no socket, no timer) must still be caught, not end the process.
 */
export async function withDeadline<T>(work: Promise<T> | T, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HangError(ms)), ms);
  });
  try {
    return await Promise.race([Promise.resolve(work), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 20261130);

function defaultRuns(): number {
  const runs = Number(process.env.FUZZ_RUNS ?? 2000);
  return Number.isInteger(runs) && runs > 0 ? runs : 2000;
}

/**
 * Runs a target and fails (assert) on the first crash, hang, wrong acceptance or broken invariant,
 * with fast-check's shrunk counterexample and seed in the message. Appends the figures to the
 * file named by FUZZ_REPORT (JSON lines), when set.
 */
export async function fuzz<T>(target: FuzzTarget<T>): Promise<FuzzReport> {
  const report: FuzzReport = {
    target: target.name,
    seed: FUZZ_SEED,
    cases: 0,
    accepted: 0,
    refused: 0,
    crashes: 0,
    hangs: 0,
    wronglyAccepted: 0,
    invariantFailures: 0,
    seconds: 0,
  };
  const deadlineMs = target.deadlineMs ?? 5000;
  const started = process.hrtime.bigint();
  // While fast-check shrinks a failure it re-runs smaller inputs: count only the first pass.
  let shrinking = false;
  const property = fc.asyncProperty(target.arbitrary, async (input) => {
    if (!shrinking) report.cases += 1;
    let verdict: Verdict;
    try {
      verdict = await withDeadline(target.check(input), deadlineMs);
    } catch (error) {
      if (!shrinking) {
        if (error instanceof HangError) report.hangs += 1;
        else if (error instanceof assert.AssertionError) report.invariantFailures += 1;
        else report.crashes += 1;
      }
      shrinking = true;
      throw error;
    }
    if (verdict.wronglyAccepted !== undefined) {
      if (!shrinking) report.wronglyAccepted += 1;
      shrinking = true;
      throw new assert.AssertionError({ message: `wrongly accepted: ${verdict.wronglyAccepted}` });
    }
    if (!shrinking) report[verdict.outcome] += 1;
  });
  let failure: unknown;
  try {
    await fc.assert(property, { numRuns: target.runs ?? defaultRuns(), seed: FUZZ_SEED, includeErrorInReport: true });
  } catch (error) {
    failure = error;
  }
  report.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (process.env.FUZZ_REPORT) appendFileSync(process.env.FUZZ_REPORT, `${JSON.stringify(report)}\n`);
  if (failure !== undefined) throw failure;
  return report;
}
