/**
 * Smart Meter Texas in local mode: proftpd serving FTPS (client certificate + password) and SFTP
 * (pinned host key) on their fixed ports, files generated fresh each run in SMT's real layout and
 * encrypted by GnuPG to a key made for the run, the fetch step on a short schedule (alternating
 * FTPS and SFTP), and the archive's object-created events through a queue into the process step.
 *
 * The files: at once, a file with the last fall-back and spring-forward days (100 and 92
 * intervals) and yesterday with a few estimates; then a re-delivery of yesterday with a later
 * REVISION_DATE and actual values (it supersedes the estimates); then, every so often, a zipped
 * file of an earlier day in `adhocusage`.
 */
import { createReadStream } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLog } from '../../shared/log.ts';
import { RawArchive } from '../../lambdas/core/raw-archive.ts';
import { loadPrivateKey } from '../../lambdas/core/smt/pgp/decrypt.ts';
import { SmtFetchState } from '../../lambdas/core/smt/transport/fetch-state.ts';
import { runSmtFetch } from '../../lambdas/core/smt/transport/fetch.ts';
import { connectFtps } from '../../lambdas/core/smt/transport/ftps.ts';
import { parseSmtAll } from '../../lambdas/core/smt/parse/parse.ts';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import { archiveKeysOf } from '../../lambdas/core/smt/s3-event.ts';
import { connectSftp } from '../../lambdas/core/smt/transport/sftp.ts';
import { addDays, localDate } from '../../lambdas/core/time.ts';
import { withInvocationMetrics } from '../../lambdas/core/wiring.ts';
import { LOCAL_BLOCK_TIME_ZONE } from '../defaults.ts';
import { LocalQueue, type Poller } from '../iot-bridge.ts';
import type { LocalSource } from '../local-mode.ts';
import { originOf, type LatencyOrigin } from '../latency.ts';
import { LOCAL_BUCKETS, type LocalPlatform } from '../platform.ts';
import { readingToExpected, type ExpectedReading } from '../progress.ts';
import { toS3NotificationBody } from '../s3-server.ts';
import { createGpgKeyring, defaultKwh, disposeSmtFile, writeSmtFile, type SmtFile, type SmtFileOptions } from '../smt-files.ts';
import { shareTree, startLocalSmtServers, type LocalSmtServers } from '../smt-servers.ts';

export interface SmtSourceOptions {
  stateDir: string;
  ftpsPort: number;
  sftpPort: number;
  /** Real milliseconds between fetch runs. @default 5000 */
  fetchEveryMs?: number;
  /** Real milliseconds between new files after the first two. @default 20000 */
  newFileEveryMs?: number;
}

const ESIIDS = ['10443720004766435', '1008901023808105290100', '10443720009876543'];

/** The latest US fall-back and spring-forward Sundays on or before `today` (America/Chicago rules). */
export function latestDstDays(today: string): { fallBack: string; springForward: string } {
  const sunday = (year: number, month: number, nth: number) => {
    const first = new Date(Date.UTC(year, month - 1, 1));
    const day = 1 + ((7 - first.getUTCDay()) % 7) + (nth - 1) * 7;
    return `${year}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`;
  };
  const year = Number(today.slice(0, 4));
  const fall = sunday(year, 11, 1) < today ? sunday(year, 11, 1) : sunday(year - 1, 11, 1);
  const spring = sunday(year, 3, 2) < today ? sunday(year, 3, 2) : sunday(year - 1, 3, 2);
  return { fallBack: fall, springForward: spring };
}

/** SMT's REVISION_DATE format, `MM/DD/YYYY HH:MM:SS`, of a local date and hour. */
// Revisions late yesterday (local): never in the future whatever the hour of the run (the parser
// refuses those, values.ts), never before a usage day they revise, and later file by file.
const revisionOf = (date: string, hour: number) =>
  `${date.slice(5, 7)}/${date.slice(8, 10)}/${date.slice(0, 4)} ${String(hour).padStart(2, '0')}:00:00`;

interface SmtRun {
  platform: LocalPlatform;
  work: string;
  archive: RawArchive;
  privateKey: ReturnType<typeof loadPrivateKey>;
  /** Counts a file the process step refused or a fetch run that failed. */
  onFailure: () => void;
}

/** The process Lambda's queue: object-created notifications of the archive bucket, polled into the process step. */
function startProcessStep(run: SmtRun): { queue: LocalQueue; poller: Poller } {
  const { platform, archive, privateKey } = run;
  const queue = new LocalQueue({ queueArn: 'arn:aws:sqs:us-east-1:000000000000:meterbridge-local-smt-files' });
  platform.s3.onObjectCreated((event) => {
    if (event.bucket === LOCAL_BUCKETS.smtArchive) queue.send(toS3NotificationBody(event));
  });
  const wiring = platform.wiringFor('smt');
  const poller = queue.startPolling(
    (event) =>
      withInvocationMetrics(wiring, async (metrics) => {
        const batchItemFailures: { itemIdentifier: string }[] = [];
        for (const record of event.Records) {
          try {
            for (const key of archiveKeysOf(record.body)) {
              const outcome = await processArchivedFile(
                {
                  archive,
                  ledger: wiring.ledger,
                  store: wiring.store(),
                  metrics,
                  log: silentLog,
                  keys: async () => [await privateKey],
                  tmpDir: run.work,
                  timeZone: 'America/Chicago',
                },
                key,
              );
              if (outcome.status === 'failed') run.onFailure();
            }
          } catch {
            batchItemFailures.push({ itemIdentifier: record.messageId });
          }
        }
        return { batchItemFailures };
      }),
    { batchSize: 1, visibilityTimeoutMs: 5000, maxReceiveCount: 3 },
  );
  return { queue, poller };
}

/** One fetch run per call, alternating FTPS and SFTP; resolves to how many files it archived. */
function fetchStep(run: SmtRun, servers: LocalSmtServers): () => Promise<number> {
  const wiring = run.platform.wiringFor('smt');
  const state = new SmtFetchState({ client: run.platform.dynamo.client, tableName: run.platform.tables.ledger });
  let runs = 0;
  return async () => {
    const protocol = runs % 2 === 0 ? 'ftps' : 'sftp';
    runs += 1;
    const report = await withInvocationMetrics(wiring, (metrics) =>
      runSmtFetch({
        connect: () =>
          protocol === 'ftps' ? connectFtps({ ...servers.ftps, timeoutMs: 10_000 }) : connectSftp({ ...servers.sftp, timeoutMs: 10_000 }),
        folders: ['intervaldata', 'adhocusage'],
        archive: run.archive,
        ledger: wiring.ledger,
        metrics,
        log: silentLog,
        state,
        serverId: 'smt-local',
      }),
    );
    if (report.error) run.onFailure();
    return report.archived;
  };
}

/** What must end up stored, from the clear files through the parser: the latest revision per interval. */
class ExpectedSmtReadings {
  private readonly latest = new Map<string, { expected: ExpectedReading; revision: number }>();
  /** Readings of the LSE files (their own days), named in the summary. */
  private readonly lse = new Map<string, ExpectedReading>();
  private lseFiles = 0;
  /** Every reading of every file with the time the file landed on the server (re-deliveries included). */
  readonly origins: LatencyOrigin[] = [];

  async add(file: SmtFile, format: 'csv' | 'lse', landedAt: number): Promise<void> {
    if (format === 'lse') this.lseFiles += 1;
    for (const day of await parseSmtAll(createReadStream(file.csvPath), { originId: file.name })) {
      for (const reading of day.readings) {
        this.origins.push(originOf(readingToExpected(reading), landedAt, reading.revision));
        const key = `${reading.meterId}|${reading.channel}|${reading.start.getTime()}`;
        const previous = this.latest.get(key);
        if (!previous || previous.revision <= reading.revision)
          this.latest.set(key, { expected: readingToExpected(reading), revision: reading.revision });
        if (format === 'lse') this.lse.set(key, readingToExpected(reading));
      }
    }
  }

  all(): ExpectedReading[] {
    return [...this.latest.values()].map((entry) => entry.expected);
  }

  parts(): Array<{ label: string; files: number; expected: ExpectedReading[] }> {
    return this.lseFiles === 0 ? [] : [{ label: 'LSE files', files: this.lseFiles, expected: [...this.lse.values()] }];
  }
}

type DropSpec = Omit<SmtFileOptions, 'dir' | 'keyring'>;

/**
 * The delivery schedule: at once the DST days and yesterday with estimates; after the first fetch
 * the re-delivery of yesterday; then every `newFileEveryMs` a zipped earlier day in adhocusage.
 */
function deliverySchedule(today: string): {
  first: [string, DropSpec];
  lse: [string, DropSpec];
  second: [string, DropSpec];
  later: (dayBack: number) => [string, DropSpec];
} {
  const yesterday = addDays(today, -1);
  const dst = latestDstDays(today);
  return {
    first: [
      'intervaldata',
      {
        esiids: ESIIDS,
        days: [dst.fallBack, dst.springForward, yesterday],
        channels: ['Consumption', 'Surplus Generation'],
        revision: revisionOf(yesterday, 21),
        // Four estimated hours yesterday evening, replaced by the re-delivery below.
        flag: (_esiid, date, row) => (date === yesterday && row >= 72 && row < 88 ? 'E' : 'A'),
      },
    ],
    // The day before yesterday in LSE (LodeStar Enhanced, both channels), as TDSPs also deliver it.
    lse: [
      'intervaldata',
      {
        esiids: ESIIDS,
        days: [addDays(today, -2)],
        channels: ['Consumption', 'Surplus Generation'],
        revision: revisionOf(yesterday, 20),
        format: 'lse',
        name: `LSE_${today.replace(/-/g, '')}_${process.pid}.lse.asc`,
      },
    ],
    // SMT re-delivers yesterday: later REVISION_DATE, actual values where there were estimates.
    second: [
      'intervaldata',
      {
        esiids: ESIIDS,
        days: [yesterday],
        channels: ['Consumption', 'Surplus Generation'],
        revision: revisionOf(yesterday, 22),
        value: (esiid, date, row, channel) => (row >= 72 && row < 88 ? 0.5 + row / 1000 : defaultKwh(esiid, date, row, channel)),
      },
    ],
    // Earlier days: zipped CSVs in adhocusage and LSE files in intervaldata, in turn.
    later: (dayBack) =>
      dayBack % 2 === 1
        ? ['adhocusage', { esiids: ESIIDS, days: [addDays(today, -dayBack)], revision: revisionOf(yesterday, 23), zip: true }]
        : ['intervaldata', { esiids: ESIIDS, days: [addDays(today, -dayBack)], revision: revisionOf(yesterday, 23), format: 'lse' }],
  };
}

export async function smtSource(platform: LocalPlatform, options: SmtSourceOptions): Promise<LocalSource> {
  const work = await mkdtemp(join(tmpdir(), 'mb-local-smt-'));
  // proftpd serves the tree as an unprivileged user, who must be able to pass through here.
  await chmod(work, 0o711);
  const root = join(work, 'served');
  const keyring = await createGpgKeyring('rsa');
  const servers = await startLocalSmtServers({ root, ftpsPort: options.ftpsPort, sftpPort: options.sftpPort, stateDir: join(work, 'servers') });
  let failures = 0;
  const run: SmtRun = {
    platform,
    work,
    archive: new RawArchive({ client: platform.s3.client, bucket: LOCAL_BUCKETS.smtArchive }),
    privateKey: loadPrivateKey({ armoredKey: keyring.armoredPrivateKey, passphrase: keyring.passphrase }),
    onFailure: () => void (failures += 1),
  };
  const expected = new ExpectedSmtReadings();
  const written: SmtFile[] = [];
  let onServer = 0;

  const drop = async ([folder, spec]: [string, DropSpec]) => {
    const file = await writeSmtFile({ dir: join(root, folder), keyring, ...spec });
    await shareTree(root);
    // Landed: whole and readable by the servers (the next fetch run can take it).
    const landedAt = Date.now();
    await expected.add(file, spec.format ?? 'csv', landedAt);
    written.push(file);
    onServer += 1;
  };
  const { queue: processQueue, poller } = startProcessStep(run);
  const fetchRun = fetchStep(run, servers);
  const fetchOnce = async () => {
    onServer = Math.max(0, onServer - (await fetchRun()));
  };

  const schedule = deliverySchedule(localDate(new Date(), LOCAL_BLOCK_TIME_ZONE));
  await drop(schedule.first);
  await drop(schedule.lse);

  let running = true;
  const fetchEveryMs = options.fetchEveryMs ?? 5000;
  const loop = (async () => {
    let sinceNewFile = 0;
    let dayBack = 2;
    let step = 0;
    while (running) {
      await fetchOnce().catch(run.onFailure);
      await new Promise((resolve) => setTimeout(resolve, fetchEveryMs));
      sinceNewFile += fetchEveryMs;
      if (!running) break;
      if (step === 0) {
        step = 1;
        await drop(schedule.second);
      } else if (sinceNewFile >= (options.newFileEveryMs ?? 20_000)) {
        sinceNewFile = 0;
        dayBack += 1;
        await drop(schedule.later(dayBack));
      }
    }
  })();

  return {
    source: 'smt',
    expected: () => expected.all(),
    origins: () => expected.origins,
    parts: () => expected.parts(),
    backlog: () => onServer + processQueue.size,
    async quiesce() {
      running = false;
      await loop;
      // One last pull of whatever was dropped after the previous run.
      await fetchOnce().catch(run.onFailure);
    },
    async drained() {
      if (onServer > 0) await fetchOnce().catch(run.onFailure);
      return onServer === 0 && processQueue.size === 0;
    },
    joinHints: () => [
      `  SMT servers: FTPS 127.0.0.1:${servers.ftps.port} (client certificate + user ${servers.ftps.user}), SFTP 127.0.0.1:${servers.sftp.port} (host key ${servers.sftp.hostKeySha256});`,
      `    files are generated into ${root} and pulled every ${Math.round(fetchEveryMs / 1000)} s; decrypt one with:`,
      `    npx tsx bin/meterbridge.ts smt parse <file> --private-key <armored key> --passphrase-env <VAR>`,
    ],
    async stop() {
      running = false;
      await loop.catch(() => undefined);
      await poller.stop();
      await servers.stop();
      for (const file of written) await disposeSmtFile(file);
      await keyring.dispose();
      await rm(work, { recursive: true, force: true });
    },
  };
}
