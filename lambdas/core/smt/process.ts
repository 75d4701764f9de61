/**
 * The process step: one archived SMT file -> verified clear content -> whole-day deliveries to
 * the reading store -> ledger entry completed with counts.
 *
 *   claim (smt-file, the fetch unit's identity)      completed: skip; in progress: retry later
 *   decrypt to an ephemeral file                      integrity known only at the stream's end:
 *                                                     nothing is parsed before it
 *   pass 1: parse everything, validate every reading  a layout error stores nothing
 *   pass 2: parse again, write day by day             idempotent: a crash and a re-run store
 *                                                     duplicates, never two copies
 *   note each ESIID's newest day delivered            for the missing-days check (smt/esiid-days.ts)
 *   complete with counts
 *
 * A file that can never succeed (wrong key, tampered, corrupt — a decryption that stalls included —,
 * unknown layout, invalid readings) is marked
 * failed with its reason and counted; it stays in the archive for `meterbridge smt replay`.
 * A transient failure (S3, DynamoDB) releases the claim and throws, so the queue retries.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PrivateKey } from 'openpgp';
import { WRITE_STATUSES, type WriteStatus } from '../interval-block.ts';
import type { Claim, Ledger } from '../ledger.ts';
import type { Log } from '../../../shared/log.ts';
import { READING_STATUS_METRIC } from '../metric-catalog.ts';
import type { Metrics } from '../metrics.ts';
import type { RawArchive } from '../raw-archive.ts';
import type { ReadingStore } from '../reading-store.ts';
import { validateReading, type Reading } from '../../../shared/reading.ts';
import { ARCHIVE_METADATA } from './archive-metadata.ts';
import { EsiidDays } from './esiid-days.ts';
import { clearParts } from './parse/clear-content.ts';
import { decryptToFile, SmtDecryptError } from './pgp/decrypt.ts';
import { readingsOf, SMT_TIME_ZONE, SmtLayoutError, type ParseOptions, type SmtDay, type SmtLayout, type SmtRefusal } from './model.ts';
import { parseSmt } from './parse/parse.ts';

export interface SmtProcessDependencies {
  archive: RawArchive;
  ledger: Ledger;
  store: ReadingStore;
  metrics: Metrics;
  log: Log;
  /** Our PGP private keys, unlocked (loaded from Secrets Manager once per container). */
  keys: () => Promise<PrivateKey[]>;
  /** Where the ephemeral clear file goes. @default os.tmpdir() (Lambda: /tmp) */
  tmpDir?: string;
  /** Largest clear content accepted. @default 8 GiB */
  maxClearBytes?: number;
  /** Decryption refused as 'corrupt' after this long without progress (decrypt.ts). @default DECRYPT_STALL_MS */
  decryptStallMs?: number;
  /** Decryption refused as 'corrupt' when it takes longer than this. @default DECRYPT_DEADLINE_MS */
  decryptDeadlineMs?: number;
  /** Largest total a ZIP may inflate to. @default 8 GiB */
  maxUnzippedBytes?: number;
  /** Zone of SMT's local times. @default America/Chicago */
  timeZone?: string;
  /** Refuse the spreadsheet variants of the CSV reports (ParseOptions.strict). @default false */
  strict?: boolean;
  /** Readings per store.write call (whole days are never split). @default 4000 */
  readingsPerWrite?: number;
  /** @default () => new Date() */
  clock?: () => Date;
  /** Observes progress; tests use it to die at a chosen point. */
  onStep?: (step: 'decrypted' | 'validated' | 'stored', key: string) => void | Promise<void>;
}

export interface ProcessOptions {
  /** An operator's replay: re-take a failed unit. @default false */
  replay?: boolean;
}

export type FailureReason =
  'wrong-key' | 'integrity' | 'corrupt' | 'not-pgp' | 'too-large' | 'invalid-reading' | 'incomplete-archive' | 'missing' | SmtRefusal;

/** What became of one part of a file: the file itself, or one member of a ZIP bundle. */
export interface PartOutcome {
  /** The ZIP entry's name; absent for a plain file. */
  entry?: string;
  layout?: SmtLayout;
  /** Set when the part is refused (nothing of it is stored). */
  reason?: FailureReason;
  message?: string;
  days: number;
  readings: number;
  missing: number;
}

export type ProcessOutcome =
  | { status: 'processed'; key: string; unitId: string; counts: ProcessCounts; parts: PartOutcome[] }
  | { status: 'skipped'; key: string; unitId: string; why: 'completed' | 'failed' }
  | { status: 'failed'; key: string; unitId: string; reason: FailureReason; message: string };

export interface ProcessCounts extends Record<WriteStatus, number> {
  days: number;
  readings: number;
  missing: number;
  bytes: number;
  clearBytes: number;
  /** DynamoDB write requests and write units the store spent (cost per file). */
  writeRequests: number;
  writeUnits: number;
}

/** The file is being processed elsewhere (or a crashed run's lock has not expired): retry later. */
export class SmtFileBusyError extends Error {
  constructor(key: string) {
    super(`${key} is being processed by another worker (or a crashed run's lock has not expired yet); retry later`);
    this.name = 'SmtFileBusyError';
  }
}

/** A file that can never succeed as it is: failed in the ledger with its reason, kept in the archive. */
export class PermanentFailure extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
  ) {
    super(message);
  }
}

export async function processArchivedFile(deps: SmtProcessDependencies, key: string, options: ProcessOptions = {}): Promise<ProcessOutcome> {
  const { metrics, log } = deps;
  const head = await deps.archive.head(key);
  if (!head) {
    // An event for an object deleted since (or a mistyped replay key): nothing to do, nothing lost.
    log.warn('archived SMT file not found', { key });
    return { status: 'failed', key, unitId: key, reason: 'missing', message: `no object ${key} in ${deps.archive.bucket}` };
  }
  const unitId = head.metadata[ARCHIVE_METADATA.unit] ?? `${key}#${head.size}`;
  const claimed = await deps.ledger.claim('smt-file', unitId, { detail: { key, size: head.size }, retakeFailed: options.replay === true });
  if (claimed.status === 'completed' || claimed.status === 'failed') {
    metrics.count('FilesDuplicate');
    log.info('archived SMT file already handled', { key, unitId, status: claimed.status });
    return { status: 'skipped', key, unitId, why: claimed.status };
  }
  if (claimed.status === 'in_progress') throw new SmtFileBusyError(key);
  const claim: Claim = claimed.claim;

  const work = await mkdtemp(join(deps.tmpDir ?? tmpdir(), 'mb-smt-'));
  try {
    const { counts, parts } = await decryptParseStore(deps, key, head, unitId, join(work, 'clear'));
    const refused = parts.filter((part) => part.reason !== undefined);
    await deps.ledger.complete(
      claim,
      { ...counts },
      { key, ...(refused.length > 0 ? { refusedParts: refused.map(partSummary).join(' | ').slice(0, 2000) } : {}) },
      { partial: refused.length > 0 },
    );
    metrics.count('FilesProcessed');
    for (const status of WRITE_STATUSES) metrics.count(READING_STATUS_METRIC[status], counts[status]);
    metrics.count('IntervalsMissing', counts.missing);
    for (const part of refused) {
      countRefusal(metrics, part.reason!);
      log.error('SMT bundle member refused; the bundle stays in the archive', {
        key,
        unitId,
        entry: part.entry,
        reason: part.reason,
        error: part.message,
      });
    }
    log.info('SMT file processed', { key, unitId, ...counts, parts: parts.length, partsRefused: refused.length });
    return { status: 'processed', key, unitId, counts, parts };
  } catch (error) {
    if (error instanceof PermanentFailure) {
      await deps.ledger.fail(claim, `${error.reason}: ${error.message}`);
      countRefusal(metrics, error.reason);
      log.error('SMT file failed; it stays in the archive for replay', { key, unitId, reason: error.reason, error: error.message });
      return { status: 'failed', key, unitId, reason: error.reason, message: error.message };
    }
    await deps.ledger.release(claim).catch(() => undefined);
    throw error;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function decryptParseStore(
  deps: SmtProcessDependencies,
  key: string,
  head: { size: number; metadata: Record<string, string>; versionId?: string },
  unitId: string,
  clearPath: string,
): Promise<{ counts: ProcessCounts; parts: PartOutcome[] }> {
  const remoteSize = head.metadata[ARCHIVE_METADATA.remoteSize];
  if (remoteSize !== undefined && Number(remoteSize) !== head.size) {
    throw new PermanentFailure('incomplete-archive', `the archive holds ${head.size} bytes but the server listed ${remoteSize}`);
  }
  const keys = await deps.keys();
  let clearBytes: number;
  try {
    const report = await decryptToFile(await deps.archive.get(key, head.versionId), clearPath, {
      keys,
      maxClearBytes: deps.maxClearBytes ?? 8 * 2 ** 30,
      stallMs: deps.decryptStallMs,
      deadlineMs: deps.decryptDeadlineMs,
    });
    clearBytes = report.bytesOut;
  } catch (error) {
    if (error instanceof SmtDecryptError) {
      deps.metrics.count('DecryptFailures', 1, { Reason: error.reason });
      throw new PermanentFailure(error.reason, error.message);
    }
    throw error;
  }
  await deps.onStep?.('decrypted', key);

  const now = deps.clock?.() ?? new Date();
  const parseOptions = {
    originId: key,
    timeZone: deps.timeZone ?? SMT_TIME_ZONE,
    strict: deps.strict === true,
    fallbackRevision: revisionFallback(head.metadata[ARCHIVE_METADATA.remoteModified]),
    now,
  };
  const maxUnzippedBytes = deps.maxUnzippedBytes ?? 8 * 2 ** 30;

  // Pass 1: every part must parse and every reading must be valid before anything of it is stored.
  const parts = await checkParts(clearPath, parseOptions, maxUnzippedBytes, now);
  const accepted = parts.filter((part) => part.reason === undefined);
  if (accepted.length === 0) {
    // A plain file, or a bundle of which nothing can be taken: the file fails with the (first) part's reason.
    const first = parts[0]!;
    const where = first.entry === undefined ? '' : `ZIP entry ${first.entry}: `;
    const more = parts.length > 1 ? ` (and ${parts.length - 1} more refused member(s): ${parts.slice(1).map(partSummary).join('; ')})` : '';
    throw new PermanentFailure(first.reason!, `${where}${first.message}${more}`);
  }
  const sum = (field: 'days' | 'readings' | 'missing') => accepted.reduce((total, part) => total + part[field], 0);
  const days = sum('days');
  const readings = sum('readings');
  const missing = sum('missing');
  await deps.onStep?.('validated', key);

  // Pass 2: whole days, several per write call (the store writes one item per day block).
  const counts: ProcessCounts = {
    days,
    readings,
    missing,
    bytes: head.size,
    clearBytes,
    writeRequests: 0,
    writeUnits: 0,
    stored: 0,
    superseded: 0,
    duplicate: 0,
    stale: 0,
    conflict: 0,
  };
  const perWrite = deps.readingsPerWrite ?? 4000;
  let pending: Reading[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const report = await deps.store.write(pending);
    for (const status of WRITE_STATUSES) counts[status] += report.counts[status];
    counts.writeRequests += report.requests;
    counts.writeUnits += report.writeUnits;
    for (const outcome of report.outcomes) {
      if (outcome.status === 'conflict') deps.log.warn('reading conflict', { key, unitId, meterId: outcome.reading.meterId, reason: outcome.reason });
    }
    pending = [];
  };
  const take = new Set(accepted.map((part) => part.entry));
  // ESIID -> newest day this file delivered readings for (a blank day is not a delivery).
  const newestDays = new Map<string, string>();
  for await (const batch of daysOf(clearPath, parseOptions, maxUnzippedBytes, (entry) => take.has(entry))) {
    for (const day of batch) {
      const all = readingsOf(day);
      if (all.length > 0 && (newestDays.get(day.meterId) ?? '') < day.date) newestDays.set(day.meterId, day.date);
      if (pending.length + all.length > perWrite) await flush();
      for (const reading of all) pending.push(reading);
    }
  }
  await flush();
  // After the readings, so a day is never noted as delivered before it is stored.
  await EsiidDays.of(deps.store).note(newestDays);
  await deps.onStep?.('stored', key);
  return { counts, parts };
}

/** `unsupported-type` is a refusal by decision (informational); every other reason is a failure (alarmed). */
function countRefusal(metrics: Metrics, reason: FailureReason): void {
  if (reason === 'unsupported-type') metrics.count('FilesUnsupported');
  else metrics.count('FilesFailed', 1, { Reason: reason });
}

function partSummary(part: PartOutcome): string {
  return `${part.entry ?? '(file)'}: ${part.reason}: ${part.message}`;
}

class InvalidReading extends Error {}

/**
 * Pass 1 over every part of the clear file (the file, or each ZIP member): parses and validates
 * it. A part that fails is refused on its own, with its reason; a bundle beyond its limits or a
 * broken ZIP fails the whole file (thrown).
 */
export async function checkParts(clearPath: string, options: ParseOptions, maxUnzippedBytes: number, now: Date): Promise<PartOutcome[]> {
  const outcomes: PartOutcome[] = [];
  try {
    for await (const part of clearParts(clearPath, { maxUnzippedBytes })) {
      const outcome: PartOutcome = { ...(part.entry === undefined ? {} : { entry: part.entry }), days: 0, readings: 0, missing: 0 };
      try {
        for await (const batch of parseSmt(part.stream, partOptions(options, part.entry))) {
          for (const day of batch) {
            outcome.layout = day.layout;
            outcome.days += 1;
            outcome.missing += day.missing;
            for (const reading of readingsOf(day)) {
              outcome.readings += 1;
              const result = validateReading(reading, { now });
              if (!result.ok)
                throw new InvalidReading(`${day.meterId} ${day.channel} ${day.date} ${readingTime(reading)}: ${result.reasons.join('; ')}`);
            }
          }
        }
      } catch (error) {
        part.stream.destroy();
        if (error instanceof InvalidReading) Object.assign(outcome, { reason: 'invalid-reading', message: error.message });
        else if (error instanceof SmtLayoutError && error.reason !== 'bundle')
          Object.assign(outcome, { reason: error.reason, message: error.message });
        else throw error;
      }
      outcomes.push(outcome);
    }
  } catch (error) {
    if (error instanceof SmtLayoutError) throw new PermanentFailure(error.reason, error.message);
    throw error;
  }
  return outcomes;
}

function readingTime(reading: Reading): string {
  return (reading.kind === 'interval' ? reading.start : reading.at).toISOString();
}

function partOptions(options: ParseOptions, entry: string | undefined): ParseOptions {
  return { ...options, originId: entry ? `${options.originId}#${entry}` : options.originId };
}

/** Days of every text part of the clear file (a ZIP's entries in order, or the file itself), or of the parts `take` accepts. */
export async function* daysOf(
  clearPath: string,
  options: ParseOptions,
  maxUnzippedBytes: number,
  take: (entry: string | undefined) => boolean = () => true,
): AsyncGenerator<SmtDay[]> {
  for await (const part of clearParts(clearPath, { maxUnzippedBytes })) {
    if (!take(part.entry)) {
      part.stream.destroy();
      continue;
    }
    yield* parseSmt(part.stream, partOptions(options, part.entry));
  }
}

function revisionFallback(modified: string | undefined): number | undefined {
  if (!modified) return undefined;
  const ms = Date.parse(modified);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}
