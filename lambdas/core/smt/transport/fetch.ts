/**
 * The fetch step (scheduled): list the SMT folders, and for each file claim it in the ledger,
 * stream it into the raw archive, verify the archived size, and only then delete it from the
 * server (or keep it, by configuration). The S3 object-created event starts the process step.
 *
 * Crash safety, by construction of the order:
 *
 *   claim (smt-fetch, name+size+mtime)   a crash here: the lock expires, the next run re-takes it
 *   archive put + size check             a crash here: nothing deleted; the next run archives again
 *   remote delete                        a crash before it: the next run finds the archive holds
 *                                        the file (same size, same unit) and only deletes
 *   complete                             a crash before it: as above; a completed unit still on the
 *                                        server (delete failed) is deleted by the next run
 *
 * A file is never deleted unless the archive holds it with the size the server listed. New claims
 * stop before the invocation's time runs out; the next run continues where this one stopped.
 */
import { PassThrough } from 'node:stream';
import { ArchiveHeadForbidden, type RawArchive } from '../../raw-archive.ts';
import type { Claim, Ledger } from '../../ledger.ts';
import type { Log } from '../../../../shared/log.ts';
import type { Metrics } from '../../metrics.ts';
import { TransportAuthError, type RemoteFile, type SmtTransport } from './transport.ts';
import type { SmtFetchState } from './fetch-state.ts';
import { ARCHIVE_METADATA } from '../archive-metadata.ts';

export interface SmtFetchDependencies {
  /** Opens a session to the SMT server (called once per run, only when needed). */
  connect: () => Promise<SmtTransport>;
  /** Folders to drain, e.g. ['intervaldata', 'adhocusage']. */
  folders: string[];
  archive: RawArchive;
  ledger: Ledger;
  metrics: Metrics;
  log: Log;
  /** Records when a file last arrived (HoursSinceLastFile). Optional in tests. */
  state?: SmtFetchState;
  /** Delete each file from the server once archived (SMT asks receivers to). @default true */
  deleteAfterArchive?: boolean;
  /** Prefix of archive keys: `<prefix>/<folder>/<name>`. @default 'smt' */
  archivePrefix?: string;
  /** Names the server in unit ids, so two SMT accounts never share one. @default 'smt' */
  serverId?: string;
  /** Milliseconds left in this invocation (Lambda's getRemainingTimeInMillis). @default unlimited */
  remainingTimeMs?: () => number;
  /**
   * Do not claim a new file with less time than this left: the transfer of a large file, the
   * size check and the delete must fit. @default 120000
   */
  reserveMs?: number;
  /** @default () => new Date() */
  clock?: () => Date;
  /**
   * Attempts per file when the transfer itself fails (a data connection refused or cut, as FTPS
   * servers do now and then under TLS 1.3): each retry opens a fresh session first. @default 2
   */
  transferAttempts?: number;
  /** Observes progress; tests use it to die at a chosen point. */
  onStep?: (step: 'archived' | 'deleted' | 'completed', file: RemoteFile, detail: { key: string }) => void | Promise<void>;
}

export type FileOutcome =
  | { status: 'archived'; file: RemoteFile; key: string; deleted: boolean }
  | { status: 'skipped'; file: RemoteFile; why: 'completed' | 'in_progress' | 'failed' }
  | { status: 'left'; file: RemoteFile; why: 'time' }
  | { status: 'error'; file: RemoteFile; reason: string };

export interface FetchReport {
  files: FileOutcome[];
  archived: number;
  bytes: number;
  /** Files still on the server that this run did not archive. */
  left: number;
  /** A whole-run failure (could not connect or list), when there was one. */
  error?: string;
}

export function fetchUnitId(serverId: string, file: RemoteFile): string {
  return `${serverId}:${file.path}#${file.size}#${Math.floor(file.modifiedAt.getTime() / 1000)}`;
}

export function archiveKeyFor(prefix: string, file: RemoteFile): string {
  return `${prefix}/${file.path}`;
}

export async function runSmtFetch(deps: SmtFetchDependencies): Promise<FetchReport> {
  const { metrics, log } = deps;
  const clock = deps.clock ?? (() => new Date());
  const remaining = deps.remainingTimeMs ?? (() => Number.POSITIVE_INFINITY);
  const reserveMs = deps.reserveMs ?? 120_000;
  const deleteAfter = deps.deleteAfterArchive ?? true;
  const prefix = deps.archivePrefix ?? 'smt';
  const serverId = deps.serverId ?? 'smt';
  const report: FetchReport = { files: [], archived: 0, bytes: 0, left: 0 };

  const session = new Session(deps.connect);
  let transport: SmtTransport;
  try {
    try {
      transport = await session.open();
    } catch (error) {
      const reason = error instanceof TransportAuthError ? 'auth' : 'connect';
      metrics.count('FetchErrors', 1, { Reason: reason });
      log.error('could not open the SMT session', { reason, error: messageOf(error) });
      report.error = messageOf(error);
      return report;
    }

    const listed: RemoteFile[] = [];
    for (const folder of deps.folders) {
      try {
        listed.push(...(await transport.list(folder)));
      } catch (error) {
        metrics.count('FetchErrors', 1, { Reason: 'list' });
        log.error('could not list an SMT folder', { folder, error: messageOf(error) });
        report.error = messageOf(error);
      }
    }
    // Oldest first: they are closest to SMT's 10-day deletion.
    listed.sort((a, b) => a.modifiedAt.getTime() - b.modifiedAt.getTime());

    for (const file of listed) {
      if (remaining() < reserveMs) {
        report.files.push({ status: 'left', file, why: 'time' });
        continue;
      }
      const outcome = await fetchOne(file, session, { deps, prefix, serverId, deleteAfter, attempts: Math.max(1, deps.transferAttempts ?? 2) });
      report.files.push(outcome);
      if (outcome.status === 'archived') {
        report.archived += 1;
        report.bytes += file.size;
      }
    }
  } finally {
    await session.close();
  }

  const now = clock().getTime();
  const leftOnServer = report.files.filter(
    (o) =>
      o.status === 'left' ||
      o.status === 'error' ||
      (o.status === 'archived' && !o.deleted && deleteAfter) ||
      (o.status === 'skipped' && o.why !== 'completed'),
  );
  report.left = leftOnServer.length;
  const oldest = leftOnServer.reduce((max, o) => Math.max(max, now - o.file.modifiedAt.getTime()), 0);
  metrics.count('FilesFetched', report.archived);
  metrics.record('BytesFetched', report.bytes, 'Bytes');
  metrics.record('OldestUnfetchedFileAge', Math.max(0, Math.round(oldest / 1000)), 'Seconds');
  if (deps.state) {
    try {
      if (report.archived > 0) await deps.state.recordFileArrived(new Date(now));
      const last = await deps.state.lastFileAt();
      if (last) metrics.record('HoursSinceLastFile', Math.round(((now - last.getTime()) / 3_600_000) * 100) / 100, 'None');
    } catch (error) {
      log.warn('could not update the last-file time', { error: messageOf(error) });
    }
  }
  log.info('SMT fetch run finished', { archived: report.archived, bytes: report.bytes, left: report.left, listed: report.files.length });
  return report;
}

interface FetchContext {
  deps: SmtFetchDependencies;
  prefix: string;
  serverId: string;
  deleteAfter: boolean;
  attempts: number;
}

/** The run's connection to the server, re-opened after a failed transfer left it unusable. */
class Session {
  private current: SmtTransport | undefined;
  constructor(private readonly connect: () => Promise<SmtTransport>) {}

  async open(): Promise<SmtTransport> {
    this.current ??= await this.connect();
    return this.current;
  }

  async reopen(): Promise<SmtTransport> {
    await this.close();
    return this.open();
  }

  async close(): Promise<void> {
    const closing = this.current;
    this.current = undefined;
    await closing?.close().catch(() => undefined);
  }
}

async function fetchOne(file: RemoteFile, session: Session, ctx: FetchContext): Promise<FileOutcome> {
  const { deps } = ctx;
  const { metrics, log } = deps;
  let transport: SmtTransport;
  try {
    transport = await session.open();
  } catch (error) {
    // An earlier file's retry could not reconnect: this file waits for the next run, unclaimed.
    metrics.count('FetchErrors', 1, { Reason: 'connect' });
    log.error('could not reopen the SMT session', { error: messageOf(error) });
    return { status: 'error', file, reason: messageOf(error) };
  }
  const unitId = fetchUnitId(ctx.serverId, file);
  const key = archiveKeyFor(ctx.prefix, file);
  const claimed = await deps.ledger.claim('smt-fetch', unitId, { detail: { key, size: file.size }, retakeFailed: true });

  if (claimed.status === 'completed') {
    // Archived earlier, but still listed: kept by configuration, or the delete failed last time.
    if (ctx.deleteAfter && (await archivedCopyMatches(deps, key, unitId, file))) {
      try {
        await transport.remove(file);
        log.info('deleted a file archived by an earlier run', { unitId, key });
      } catch (error) {
        metrics.count('FetchErrors', 1, { Reason: 'delete' });
        log.warn('could not delete an archived file; next run retries', { unitId, error: messageOf(error) });
      }
    }
    return { status: 'skipped', file, why: 'completed' };
  }
  if (claimed.status === 'in_progress') return { status: 'skipped', file, why: 'in_progress' };
  if (claimed.status === 'failed') return { status: 'skipped', file, why: 'failed' };
  const claim: Claim = claimed.claim;

  for (let attempt = 1; ; attempt += 1) {
    try {
      if (!(await archivedCopyMatches(deps, key, unitId, file))) {
        await archiveFrom(transport, file, deps.archive, key, unitId);
      } else {
        log.info('archive already holds this file (an earlier run stopped before deleting it)', { unitId, key });
      }
      break;
    } catch (caught) {
      let error = caught;
      let reason = error instanceof TransportAuthError ? 'auth' : /archive|S3|size/i.test(messageOf(error)) ? 'archive' : 'transfer';
      if (reason === 'transfer' && attempt < ctx.attempts) {
        log.warn('SMT transfer failed; retrying on a fresh session', { unitId, attempt, error: messageOf(error) });
        try {
          transport = await session.reopen();
          continue;
        } catch (reconnectError) {
          error = reconnectError;
          reason = 'connect';
        }
      }
      await deps.ledger.release(claim).catch(() => undefined);
      metrics.count('FetchErrors', 1, { Reason: reason });
      log.error('could not archive an SMT file; it stays on the server', { unitId, key, attempts: attempt, error: messageOf(error) });
      return { status: 'error', file, reason: messageOf(error) };
    }
  }
  await deps.onStep?.('archived', file, { key });

  let deleted = false;
  if (ctx.deleteAfter) {
    try {
      await transport.remove(file);
      deleted = true;
      await deps.onStep?.('deleted', file, { key });
    } catch (error) {
      // The archive holds it: complete anyway, and the next run (seeing a completed unit) deletes it.
      metrics.count('FetchErrors', 1, { Reason: 'delete' });
      log.warn('archived, but the delete on the server failed; the next run retries it', { unitId, error: messageOf(error) });
    }
  }
  await deps.ledger.complete(claim, { bytes: file.size }, { key, deleted: deleted ? 'yes' : 'no' });
  await deps.onStep?.('completed', file, { key });
  log.info('SMT file archived', { unitId, key, bytes: file.size, deleted });
  return { status: 'archived', file, key, deleted };
}

/**
 * True when the archive holds this very unit (same identity metadata and size). A 403 counts as "not
 * held": S3 answers 403 for a missing key when the role may not list the bucket (the stack grants
 * s3:ListBucket on the smt/ prefix so it should answer 404, but a 403 must not fail every new file).
 * Uploading is then safe: the upload is verified with a HeadObject of the key it just wrote, which
 * fails loudly if the role truly cannot read it, and a re-upload of a held file only adds a version.
 */
async function archivedCopyMatches(deps: SmtFetchDependencies, key: string, unitId: string, file: RemoteFile): Promise<boolean> {
  let head;
  try {
    head = await deps.archive.head(key);
  } catch (error) {
    if (error instanceof ArchiveHeadForbidden) return false;
    throw error;
  }
  return head !== undefined && head.size === file.size && head.metadata[ARCHIVE_METADATA.unit] === unitId;
}

async function archiveFrom(transport: SmtTransport, file: RemoteFile, archive: RawArchive, key: string, unitId: string): Promise<void> {
  const body = new PassThrough({ highWaterMark: 1024 * 1024 });
  const stored = archive.put(key, body, {
    contentType: 'application/pgp-encrypted',
    expectedSize: file.size,
    metadata: {
      [ARCHIVE_METADATA.unit]: unitId,
      [ARCHIVE_METADATA.remotePath]: file.path,
      [ARCHIVE_METADATA.remoteSize]: String(file.size),
      [ARCHIVE_METADATA.remoteModified]: file.modifiedAt.toISOString(),
      [ARCHIVE_METADATA.protocol]: transport.protocol,
    },
  });
  // If the upload fails first, stop feeding it; if the download fails, the upload must fail too.
  stored.catch((error: unknown) => body.destroy(error instanceof Error ? error : new Error(String(error))));
  try {
    await transport.download(file, body);
  } catch (error) {
    body.destroy(error instanceof Error ? error : new Error(String(error)));
    await stored.catch(() => undefined);
    throw error;
  }
  body.end();
  await stored;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
