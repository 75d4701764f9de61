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
import { loadPrivateKey } from '../../lambdas/core/smt/decrypt.ts';
import { SmtFetchState } from '../../lambdas/core/smt/fetch-state.ts';
import { runSmtFetch } from '../../lambdas/core/smt/fetch.ts';
import { connectFtps } from '../../lambdas/core/smt/ftps.ts';
import { parseSmtAll } from '../../lambdas/core/smt/parse.ts';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import { archiveKeysOf } from '../../lambdas/core/smt/s3-event.ts';
import { connectSftp } from '../../lambdas/core/smt/sftp.ts';
import { addDays, localDate } from '../../lambdas/core/time.ts';
import { withInvocationMetrics } from '../../lambdas/core/wiring.ts';
import { LOCAL_BLOCK_TIME_ZONE } from '../defaults.ts';
import { LocalQueue, type Poller } from '../iot-bridge.ts';
import type { LocalSource } from '../local-mode.ts';
import { LOCAL_BUCKETS, type LocalPlatform } from '../platform.ts';
import { readingToExpected, type ExpectedReading } from '../progress.ts';
import { toS3NotificationBody } from '../s3-server.ts';
import { createGpgKeyring, defaultKwh, disposeSmtFile, writeSmtFile, type SmtFile, type SmtFileOptions } from '../smt-files.ts';
import { shareTree, startLocalSmtServers } from '../smt-servers.ts';

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

export async function smtSource(platform: LocalPlatform, options: SmtSourceOptions): Promise<LocalSource> {
  const work = await mkdtemp(join(tmpdir(), 'mb-local-smt-'));
  // proftpd serves the tree as an unprivileged user, who must be able to pass through here.
  await chmod(work, 0o711);
  const root = join(work, 'served');
  const keyring = await createGpgKeyring('rsa');
  const servers = await startLocalSmtServers({ root, ftpsPort: options.ftpsPort, sftpPort: options.sftpPort, stateDir: join(work, 'servers') });

  const archive = new RawArchive({ client: platform.s3.client, bucket: LOCAL_BUCKETS.smtArchive });
  const privateKey = loadPrivateKey({ armoredKey: keyring.armoredPrivateKey, passphrase: keyring.passphrase });
  const latest = new Map<string, { expected: ExpectedReading; revision: number }>();
  const written: SmtFile[] = [];
  let onServer = 0;
  let fetchRuns = 0;
  let failures = 0;

  const drop = async (folder: string, spec: Omit<SmtFileOptions, 'dir' | 'keyring'>) => {
    const file = await writeSmtFile({ dir: join(root, folder), keyring, ...spec });
    await shareTree(root);
    // What must end up stored: the clear CSV through the parser, latest revision per interval.
    for (const day of await parseSmtAll(createReadStream(file.csvPath), { originId: file.name })) {
      for (const reading of day.readings) {
        const key = `${reading.meterId}|${reading.channel}|${reading.start.getTime()}`;
        const previous = latest.get(key);
        if (!previous || previous.revision <= reading.revision) latest.set(key, { expected: readingToExpected(reading), revision: reading.revision });
      }
    }
    written.push(file);
    onServer += 1;
  };

  // The process Lambda's queue: object-created notifications of the archive bucket.
  const processQueue = new LocalQueue({ queueArn: 'arn:aws:sqs:us-east-1:000000000000:meterbridge-local-smt-files' });
  platform.s3.onObjectCreated((event) => {
    if (event.bucket === LOCAL_BUCKETS.smtArchive) processQueue.send(toS3NotificationBody(event));
  });
  const wiring = platform.wiringFor('smt');
  const { ledger } = wiring;
  const poller: Poller = processQueue.startPolling(
    (event) =>
      withInvocationMetrics(wiring, async (metrics) => {
        const batchItemFailures: { itemIdentifier: string }[] = [];
        for (const record of event.Records) {
          try {
            for (const key of archiveKeysOf(record.body)) {
              const outcome = await processArchivedFile(
                {
                  archive,
                  ledger,
                  store: wiring.store(),
                  metrics,
                  log: silentLog,
                  keys: async () => [await privateKey],
                  tmpDir: work,
                  timeZone: 'America/Chicago',
                },
                key,
              );
              if (outcome.status === 'failed') failures += 1;
            }
          } catch {
            batchItemFailures.push({ itemIdentifier: record.messageId });
          }
        }
        return { batchItemFailures };
      }),
    { batchSize: 1, visibilityTimeoutMs: 5000, maxReceiveCount: 3 },
  );

  const state = new SmtFetchState({ client: platform.dynamo.client, tableName: platform.tables.ledger });
  const fetchOnce = async () => {
    const protocol = fetchRuns % 2 === 0 ? 'ftps' : 'sftp';
    fetchRuns += 1;
    const report = await withInvocationMetrics(wiring, (metrics) =>
      runSmtFetch({
        connect: () =>
          protocol === 'ftps' ? connectFtps({ ...servers.ftps, timeoutMs: 10_000 }) : connectSftp({ ...servers.sftp, timeoutMs: 10_000 }),
        folders: ['intervaldata', 'adhocusage'],
        archive,
        ledger,
        metrics,
        log: silentLog,
        state,
        serverId: 'smt-local',
      }),
    );
    onServer = Math.max(0, onServer - report.archived);
    if (report.error) failures += 1;
  };

  const today = localDate(new Date(), LOCAL_BLOCK_TIME_ZONE);
  const yesterday = addDays(today, -1);
  const dst = latestDstDays(today);
  await drop('intervaldata', {
    esiids: ESIIDS,
    days: [dst.fallBack, dst.springForward, yesterday],
    channels: ['Consumption', 'Surplus Generation'],
    revision: revisionOf(yesterday, 21),
    // Four estimated hours yesterday evening, replaced by the re-delivery below.
    flag: (_esiid, date, row) => (date === yesterday && row >= 72 && row < 88 ? 'E' : 'A'),
  });

  let running = true;
  let dayBack = 2;
  let step = 0;
  const loop = (async () => {
    let sinceNewFile = 0;
    while (running) {
      await fetchOnce().catch(() => void (failures += 1));
      await new Promise((resolve) => setTimeout(resolve, options.fetchEveryMs ?? 5000));
      sinceNewFile += options.fetchEveryMs ?? 5000;
      if (!running) break;
      if (step === 0) {
        step = 1;
        // SMT re-delivers yesterday: later REVISION_DATE, actual values where there were estimates.
        await drop('intervaldata', {
          esiids: ESIIDS,
          days: [yesterday],
          channels: ['Consumption', 'Surplus Generation'],
          revision: revisionOf(yesterday, 22),
          value: (esiid, date, row, channel) => (row >= 72 && row < 88 ? 0.5 + row / 1000 : defaultKwh(esiid, date, row, channel)),
        });
      } else if (sinceNewFile >= (options.newFileEveryMs ?? 20_000)) {
        sinceNewFile = 0;
        dayBack += 1;
        await drop('adhocusage', { esiids: ESIIDS, days: [addDays(today, -dayBack)], revision: revisionOf(yesterday, 23), zip: true });
      }
    }
  })();

  return {
    source: 'smt',
    expected: () => [...latest.values()].map((entry) => entry.expected),
    backlog: () => onServer + processQueue.size,
    async quiesce() {
      running = false;
      await loop;
      // One last pull of whatever was dropped after the previous run.
      await fetchOnce().catch(() => void (failures += 1));
    },
    async drained() {
      if (onServer > 0) await fetchOnce().catch(() => void (failures += 1));
      return onServer === 0 && processQueue.size === 0;
    },
    joinHints: () => [
      `  SMT servers: FTPS 127.0.0.1:${servers.ftps.port} (client certificate + user ${servers.ftps.user}), SFTP 127.0.0.1:${servers.sftp.port} (host key ${servers.sftp.hostKeySha256});`,
      `    files are generated into ${root} and pulled every ${Math.round((options.fetchEveryMs ?? 5000) / 1000)} s; decrypt one with:`,
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
