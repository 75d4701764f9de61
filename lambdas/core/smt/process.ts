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
import { clearParts } from './parse/clear-content.ts';
import { decryptToFile, SmtDecryptError } from './pgp/decrypt.ts';
import { SMT_TIME_ZONE, SmtLayoutError, type ParseOptions, type SmtDay } from './model.ts';
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
  'wrong-key' | 'integrity' | 'corrupt' | 'not-pgp' | 'too-large' | 'layout' | 'invalid-reading' | 'incomplete-archive' | 'missing';

export type ProcessOutcome =
  | { status: 'processed'; key: string; unitId: string; counts: ProcessCounts }
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

class PermanentFailure extends Error {
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
    const counts = await decryptParseStore(deps, key, head, unitId, join(work, 'clear'));
    await deps.ledger.complete(claim, { ...counts }, { key });
    metrics.count('FilesProcessed');
    for (const status of WRITE_STATUSES) metrics.count(READING_STATUS_METRIC[status], counts[status]);
    metrics.count('IntervalsMissing', counts.missing);
    log.info('SMT file processed', { key, unitId, ...counts });
    return { status: 'processed', key, unitId, counts };
  } catch (error) {
    if (error instanceof PermanentFailure) {
      await deps.ledger.fail(claim, `${error.reason}: ${error.message}`);
      metrics.count('FilesFailed', 1, { Reason: error.reason });
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
): Promise<ProcessCounts> {
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
    fallbackRevision: revisionFallback(head.metadata[ARCHIVE_METADATA.remoteModified]),
    now,
  };
  const maxUnzippedBytes = deps.maxUnzippedBytes ?? 8 * 2 ** 30;

  // Pass 1: the whole file must parse and every reading must be valid before anything is stored.
  let days = 0;
  let readings = 0;
  let missing = 0;
  try {
    for await (const batch of daysOf(clearPath, parseOptions, maxUnzippedBytes)) {
      for (const day of batch) {
        days += 1;
        missing += day.missing;
        for (const reading of day.readings) {
          readings += 1;
          const result = validateReading(reading, { now });
          if (!result.ok) {
            throw new PermanentFailure(
              'invalid-reading',
              `${day.meterId} ${day.channel} ${day.date} ${reading.start.toISOString()}: ${result.reasons.join('; ')}`,
            );
          }
        }
      }
    }
  } catch (error) {
    if (error instanceof SmtLayoutError) throw new PermanentFailure('layout', error.message);
    throw error;
  }
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
  for await (const batch of daysOf(clearPath, parseOptions, maxUnzippedBytes)) {
    for (const day of batch) {
      if (pending.length + day.readings.length > perWrite) await flush();
      for (const reading of day.readings) pending.push(reading);
    }
  }
  await flush();
  await deps.onStep?.('stored', key);
  return counts;
}

/** Days of every text part of the clear file (a ZIP's entries in order, or the file itself). */
export async function* daysOf(clearPath: string, options: ParseOptions, maxUnzippedBytes: number): AsyncGenerator<SmtDay[]> {
  for await (const part of clearParts(clearPath, { maxUnzippedBytes })) {
    yield* parseSmt(part.stream, { ...options, originId: part.entry ? `${options.originId}#${part.entry}` : options.originId });
  }
}

function revisionFallback(modified: string | undefined): number | undefined {
  if (!modified) return undefined;
  const ms = Date.parse(modified);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}
