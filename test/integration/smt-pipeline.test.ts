/**
 * The SMT path end to end against real stand-ins: proftpd (FTPS with a required client
 * certificate + user/password, SFTP with a pinned host key) -> fetch step -> s3rver archive ->
 * object-created events -> process step (GnuPG-encrypted files) -> DynamoDB Local store + ledger.
 */
import assert from 'node:assert/strict';
import { createReadStream, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { localDate } from '../../lambdas/core/time.ts';
import { parseSmtAll } from '../../lambdas/core/smt/parse/parse.ts';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import { runSmtFetch } from '../../lambdas/core/smt/transport/fetch.ts';
import { connectFtps } from '../../lambdas/core/smt/transport/ftps.ts';
import { connectSftp } from '../../lambdas/core/smt/transport/sftp.ts';
import type { TableNames } from '../../lambdas/core/tables.ts';
import { shareTree } from '../../local/smt-servers.ts';
import { writeSmtFile, type SmtFile, type SmtFileOptions } from '../../local/smt-files.ts';
import { RawArchive } from '../../lambdas/core/raw-archive.ts';
import { startS3WithoutList } from '../support/s3-without-list.ts';
import {
  ARCHIVE_BUCKET,
  archiveOf,
  fetchDeps,
  ledgerOf,
  metricValue,
  processDeps,
  startSmtHarness,
  storeOf,
  type SmtHarness,
} from '../support/smt-harness.ts';

const ESIID_A = '10443720004766435';
const ESIID_B = '1008901023808105290100';
const FALL_BACK = '2025-11-02';
const SPRING_FORWARD = '2025-03-09';
const ORDINARY = '2025-11-03';

describe('SMT pipeline against proftpd, s3rver and DynamoDB Local', () => {
  let h: SmtHarness;
  before(async () => {
    h = await startSmtHarness({ keyAlgorithm: 'cv25519' });
  });
  after(async () => h.stop());

  async function drop(folder: string, options: Partial<SmtFileOptions> = {}): Promise<SmtFile> {
    const file = await writeSmtFile({
      dir: join(h.root, folder),
      keyring: h.keyring,
      esiids: [ESIID_A],
      days: [ORDINARY],
      revision: '11/04/2025 06:00:00',
      ...options,
    });
    await shareTree(h.root);
    return file;
  }

  async function processCreated(tables: TableNames, from = 0) {
    const outcomes = [];
    for (const event of h.created.slice(from)) outcomes.push(await processArchivedFile(processDeps(h, tables), event.key));
    return outcomes;
  }

  it('FTPS: lists, archives with the size checked, deletes after archiving, and the process step stores every day by position', async () => {
    // GIVEN two files in two folders: DST days, both channels, two ESIID lengths
    const tables = await h.dynamo.freshTables();
    const first = h.created.length;
    const interval = await drop('intervaldata', {
      esiids: [ESIID_A, ESIID_B],
      days: [FALL_BACK, SPRING_FORWARD, ORDINARY],
      channels: ['Consumption', 'Surplus Generation'],
    });
    const adhoc = await drop('adhocusage', { zip: true, compress: false });

    // WHEN the fetch step runs over FTPS
    const deps = fetchDeps(h, tables, 'ftps');
    const report = await runSmtFetch(deps);

    // THEN both are archived byte for byte and gone from the server
    assert.equal(report.error, undefined);
    assert.equal(report.archived, 2);
    assert.equal(existsSync(interval.path), false, 'deleted from the server after archiving');
    assert.equal(existsSync(adhoc.path), false);
    const head = await archiveOf(h).head(`smt/intervaldata/${interval.name}`);
    assert.equal(head?.size, interval.size);
    assert.equal(metricValue(deps.metrics, 'FilesFetched'), 2);
    assert.equal(metricValue(deps.metrics, 'BytesFetched'), interval.size + adhoc.size);
    assert.equal(h.created.length - first, 2, 'one object-created event per file');

    // WHEN the process step handles the events
    const outcomes = await processCreated(tables, first);
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ['processed', 'processed'],
    );

    // THEN the fall-back day is 100 distinct contiguous 15-minute intervals, spring-forward 92
    const store = storeOf(h, tables);
    for (const [date, expected] of [
      [FALL_BACK, 100],
      [SPRING_FORWARD, 92],
      [ORDINARY, 96],
    ] as const) {
      for (const meterId of [ESIID_A, ESIID_B]) {
        for (const channel of ['energy.active.import', 'energy.active.export']) {
          const from = new Date(`${date}T00:00:00-06:00`);
          const readings = await store.query({
            meterId,
            channel,
            from: new Date(from.getTime() - 3_600_000 * 2),
            to: new Date(from.getTime() + 26 * 3_600_000),
          });
          const ofDay = readings.filter(
            (r) => r.kind === 'interval' && r.originId.includes(interval.name) && localDate(r.start, 'America/Chicago') === date,
          );
          assert.equal(ofDay.length, expected, `${meterId} ${channel} ${date}`);
          const starts = new Set(ofDay.map((r) => (r.kind === 'interval' ? r.start.getTime() : 0)));
          assert.equal(starts.size, expected, 'distinct UTC intervals');
          for (let i = 1; i < ofDay.length; i++) {
            const [prev, next] = [ofDay[i - 1]!, ofDay[i]!];
            assert.ok(prev.kind === 'interval' && next.kind === 'interval' && prev.end.getTime() === next.start.getTime(), 'contiguous');
          }
        }
      }
    }

    // AND the stored values are exactly the clear CSV's, parsed independently
    const clear = await parseSmtAll(createReadStream(interval.csvPath), { originId: 'clear' });
    const storedA = await store.query({
      meterId: ESIID_A,
      channel: 'energy.active.import',
      from: new Date('2025-11-01T00:00:00Z'),
      to: new Date('2025-11-05T00:00:00Z'),
    });
    const expectedA = clear
      .filter((d) => d.meterId === ESIID_A && d.channel === 'energy.active.import' && d.date !== SPRING_FORWARD)
      .flatMap((d) => d.readings);
    const fromInterval = storedA.filter((r) => r.originId.includes(interval.name));
    assert.deepEqual(
      fromInterval.map((r) => [r.kind === 'interval' ? r.start.toISOString() : '', r.value, r.quality, r.revision]),
      expectedA.map((r) => [r.start.toISOString(), r.value, r.quality, r.revision]),
    );

    // AND a second run finds nothing, a repeated event is absorbed by the ledger
    const again = await runSmtFetch(fetchDeps(h, tables, 'ftps'));
    assert.equal(again.archived, 0);
    const repeat = await processArchivedFile(processDeps(h, tables), `smt/intervaldata/${interval.name}`);
    assert.equal(repeat.status, 'skipped');
  });

  it('archives a new file when S3 answers the pre-upload HeadObject 403 (a role without s3:ListBucket), and verifies the upload', async () => {
    const tables = await h.dynamo.freshTables();
    const first = h.created.length;
    const file = await drop('intervaldata');
    const noList = await startS3WithoutList(h.s3.endpoint);
    try {
      const archive = new RawArchive({ client: noList.client, bucket: ARCHIVE_BUCKET, partSize: 5 * 1024 * 1024 });
      const run = await runSmtFetch(fetchDeps(h, tables, 'sftp', { archive }));
      assert.deepEqual(
        run.files.map((f) => f.status),
        ['archived'],
      );
      assert.equal(existsSync(file.path), false, 'deleted from the server after archiving');
      assert.equal(noList.forbiddenHeads.length, 1, 'the pre-upload check was answered 403');
      assert.equal(h.created.length - first, 1);
      assert.equal((await archiveOf(h).head(h.created[first]!.key))?.size, file.size);
    } finally {
      await noList.stop();
    }
  });

  it('SFTP with keep: archives once, leaves the file, and a later run skips it through the ledger', async () => {
    const tables = await h.dynamo.freshTables();
    const first = h.created.length;
    const file = await drop('intervaldata');
    const run1 = await runSmtFetch(fetchDeps(h, tables, 'sftp', { deleteAfterArchive: false }));
    assert.equal(run1.archived, 1);
    assert.ok(existsSync(file.path), 'kept on the server');
    const run2 = await runSmtFetch(fetchDeps(h, tables, 'sftp', { deleteAfterArchive: false }));
    assert.equal(run2.archived, 0);
    assert.deepEqual(
      run2.files.map((f) => f.status),
      ['skipped'],
    );
    assert.equal(h.created.length - first, 1, 'archived once');
    const record = await ledgerOf(h, tables).get(
      'smt-fetch',
      `sftp:intervaldata/${file.name}#${file.size}#${Math.floor(run1.files[0]!.file.modifiedAt.getTime() / 1000)}`,
    );
    assert.equal(record?.status, 'completed');
    // A delete-mode run later removes the kept, already archived file without archiving it again.
    const run3 = await runSmtFetch(fetchDeps(h, tables, 'sftp'));
    assert.equal(run3.archived, 0);
    assert.equal(existsSync(file.path), false);
    assert.equal(h.created.length - first, 1);
  });

  it('refuses a wrong password, a foreign client certificate, an unknown SSH key and a wrong host key, with clear errors', async () => {
    const tables = await h.dynamo.freshTables();
    const file = await drop('intervaldata');
    const cases = [
      {
        name: 'wrong password',
        connect: () => connectFtps({ ...h.servers.ftps, password: 'not-the-password', timeoutMs: 10_000 }),
        message: /FTPS login .* refused for user smtuser \(530\)/,
      },
      {
        name: 'foreign client certificate',
        connect: () =>
          connectFtps({ ...h.servers.ftps, clientCert: h.servers.foreign.clientCert, clientKey: h.servers.foreign.clientKey, timeoutMs: 10_000 }),
        message: /ended the TLS session: the client certificate was probably refused/,
      },
      {
        name: 'server not signed by our CA',
        connect: () => connectFtps({ ...h.servers.ftps, ca: h.servers.foreign.clientCert, timeoutMs: 10_000 }),
        message: /is not trusted/,
      },
      {
        name: 'unknown SSH key',
        connect: () => connectSftp({ ...h.servers.sftp, privateKey: h.servers.foreign.sshPrivateKey, timeoutMs: 10_000 }),
        message: /SFTP login .* did not accept the SSH key/,
      },
      {
        name: 'wrong pinned host key',
        connect: () => connectSftp({ ...h.servers.sftp, hostKeySha256: `SHA256:${'x'.repeat(43)}`, timeoutMs: 10_000 }),
        message: /presented host key SHA256:.*not the pinned/,
      },
    ];
    for (const c of cases) {
      const deps = fetchDeps(h, tables, 'ftps', { connect: c.connect });
      const report = await runSmtFetch(deps);
      assert.match(report.error ?? '', c.message, c.name);
      assert.equal(metricValue(deps.metrics, 'FetchErrors', 'auth'), 1, `${c.name}: FetchErrors{Reason=auth}`);
      assert.ok(existsSync(file.path), `${c.name}: the file stays on the server`);
    }
    rmSync(file.path);
  });

  it('a tampered file stores nothing, fails in the ledger with its reason, and stays in the archive', async () => {
    const tables = await h.dynamo.freshTables();
    const first = h.created.length;
    const file = await drop('intervaldata', { compress: false });
    const lines = readFileSync(file.path, 'utf8').split('\n');
    const middle = Math.floor(lines.length / 2);
    const line = lines[middle]!;
    lines[middle] = `${line.slice(0, 10)}${line[10] === 'Q' ? 'R' : 'Q'}${line.slice(11)}`;
    writeFileSync(file.path, lines.join('\n'));
    await shareTree(h.root);

    await runSmtFetch(fetchDeps(h, tables, 'ftps'));
    const deps = processDeps(h, tables);
    const event = h.created.slice(first).find((e) => e.key.endsWith(file.name));
    assert.ok(event, 'the tampered file was archived');
    const outcome = await processArchivedFile(deps, event.key);
    assert.equal(outcome?.status, 'failed');
    assert.equal(outcome?.status === 'failed' ? outcome.reason : '', 'integrity');
    const record = await ledgerOf(h, tables).get('smt-file', outcome!.unitId);
    assert.equal(record?.status, 'failed');
    assert.match(record?.reason ?? '', /^integrity: .*Modification detected/);
    assert.equal(metricValue(deps.metrics, 'FilesFailed', 'integrity'), 1);
    assert.equal(metricValue(deps.metrics, 'DecryptFailures', 'integrity'), 1);
    const stored = await storeOf(h, tables).query({
      meterId: ESIID_A,
      channel: 'energy.active.import',
      from: new Date('2025-11-01T00:00:00Z'),
      to: new Date('2025-11-06T00:00:00Z'),
    });
    assert.equal(stored.length, 0, 'no readings from a file that failed its integrity check');
    assert.ok(await archiveOf(h).head(`smt/intervaldata/${file.name}`), 'the archive still holds it');
    // A replay of a failed file is possible but fails the same way (the bytes are what they are).
    const replay = await processArchivedFile(processDeps(h, tables), outcome!.key, { replay: true });
    assert.equal(replay.status, 'failed');
  });

  it('a file encrypted to another key or with an unknown layout is refused and stores nothing', async () => {
    const tables = await h.dynamo.freshTables();
    const first = h.created.length;
    const { createGpgKeyring } = await import('../../local/smt-files.ts');
    const other = await createGpgKeyring('cv25519');
    try {
      await drop('intervaldata', { keyring: other, name: 'other-key.asc' });
    } finally {
      await other.dispose();
    }
    const badLayout = await writeSmtFile({
      dir: join(h.root, 'intervaldata'),
      keyring: h.keyring,
      esiids: [ESIID_A],
      days: [ORDINARY],
      revision: '11/04/2025 06:00:00',
      name: 'bad-layout.asc',
    });
    // Re-encrypt a CSV whose header drifted (a renamed column).
    const { execFileSync } = await import('node:child_process');
    const csv = readFileSync(badLayout.csvPath, 'utf8').replace('USAGE_KWH', 'USAGE_KW');
    writeFileSync(badLayout.csvPath, csv);
    execFileSync('gpg', [
      '--homedir',
      h.keyring.home,
      '--batch',
      '--yes',
      '--trust-model',
      'always',
      '-r',
      h.keyring.fingerprint,
      '--armor',
      '-o',
      badLayout.path,
      '--encrypt',
      badLayout.csvPath,
    ]);
    await shareTree(h.root);
    await runSmtFetch(fetchDeps(h, tables, 'ftps'));
    const deps = processDeps(h, tables);
    const outcomes = [];
    for (const event of h.created.slice(first)) outcomes.push(await processArchivedFile(deps, event.key));
    const reasons = outcomes.map((o) => (o.status === 'failed' ? `${o.key.split('/').pop()}: ${o.reason}` : o.status)).sort();
    assert.deepEqual(reasons, ['bad-layout.asc: layout', 'other-key.asc: wrong-key']);
    const stored = await storeOf(h, tables).query({
      meterId: ESIID_A,
      channel: 'energy.active.import',
      from: new Date('2025-11-01T00:00:00Z'),
      to: new Date('2025-11-06T00:00:00Z'),
    });
    assert.equal(stored.length, 0);
  });

  it('a re-delivered day with a later REVISION_DATE supersedes the estimates', async () => {
    const tables = await h.dynamo.freshTables();
    let first = h.created.length;
    await drop('intervaldata', { days: [FALL_BACK], flag: 'E', revision: '11/03/2025 06:00:00', value: () => 0.5 });
    await runSmtFetch(fetchDeps(h, tables, 'ftps'));
    const [estimated] = await processCreated(tables, first);
    assert.equal(estimated?.status === 'processed' ? estimated.counts.stored : -1, 100);

    first = h.created.length;
    await drop('intervaldata', { days: [FALL_BACK], flag: 'A', revision: '11/05/2025 07:30:00', value: (_e, _d, row) => row / 1000 });
    await runSmtFetch(fetchDeps(h, tables, 'ftps'));
    const [actual] = await processCreated(tables, first);
    assert.equal(actual?.status === 'processed' ? actual.counts.superseded : -1, 100);

    const stored = await storeOf(h, tables).query({
      meterId: ESIID_A,
      channel: 'energy.active.import',
      from: new Date('2025-11-02T00:00:00Z'),
      to: new Date('2025-11-03T12:00:00Z'),
    });
    assert.equal(stored.length, 100);
    assert.ok(stored.every((r) => r.quality === 'actual'));
    assert.deepEqual(
      stored.map((r) => r.value),
      Array.from({ length: 100 }, (_, row) => row / 1000),
    );
    assert.equal(stored[0]!.revision, Math.floor(Date.parse('2025-11-05T13:30:00Z') / 1000), 'REVISION_DATE (Chicago, CST) in epoch seconds');
  });

  it('stops claiming files when the invocation runs out of time; the next run continues', async () => {
    const tables = await h.dynamo.freshTables();
    const files = [await drop('intervaldata'), await drop('intervaldata'), await drop('intervaldata')];
    let calls = 0;
    const deps = fetchDeps(h, tables, 'ftps', { remainingTimeMs: () => (calls++ === 0 ? 600_000 : 1_000) });
    const report = await runSmtFetch(deps);
    assert.equal(report.archived, 1);
    assert.equal(report.left, 2);
    assert.ok(metricValue(deps.metrics, 'OldestUnfetchedFileAge') >= 0);
    assert.equal(files.filter((f) => existsSync(f.path)).length, 2);
    const nextDeps = fetchDeps(h, tables, 'ftps');
    const next = await runSmtFetch(nextDeps);
    assert.equal(next.archived, 2, JSON.stringify(next.files));
    assert.equal(files.filter((f) => existsSync(f.path)).length, 0);
    const hours = nextDeps.metrics.pending().find((d) => d.MetricName === 'HoursSinceLastFile');
    assert.ok(hours?.Values && hours.Values[0]! < 0.1, 'a file just arrived: HoursSinceLastFile ~ 0');
  });

  /** A real FTPS session whose first `failures` downloads break after some bytes, as a cut data connection does. */
  function flakyFtps(failures: number) {
    const opened: string[] = [];
    let left = failures;
    const connect = async () => {
      const real = await connectFtps({ ...h.servers.ftps, timeoutMs: 10_000 });
      opened.push('session');
      return {
        ...real,
        async download(file: Parameters<typeof real.download>[0], sink: Parameters<typeof real.download>[1]) {
          if (left <= 0) return real.download(file, sink);
          left -= 1;
          sink.write(Buffer.alloc(Math.min(100, file.size - 1), 0x2d));
          throw new Error('426 Connection closed; transfer aborted');
        },
      };
    };
    return { connect, opened };
  }

  it('retries a broken transfer once on a fresh session; the archive holds only the whole file', async () => {
    const tables = await h.dynamo.freshTables();
    const file = await drop('intervaldata');
    const flaky = flakyFtps(1);
    const deps = fetchDeps(h, tables, 'ftps', { connect: flaky.connect });
    const report = await runSmtFetch(deps);
    assert.equal(report.archived, 1, JSON.stringify(report.files));
    assert.equal(flaky.opened.length, 2, 'the retry opened a second session');
    assert.equal(metricValue(deps.metrics, 'FetchErrors'), 0, 'a transfer that succeeded on retry is not a fetch error');
    assert.equal((await archiveOf(h).head(`smt/intervaldata/${file.name}`))?.size, file.size);
    assert.equal(existsSync(file.path), false);
  });

  it('gives up on a file after its attempts, releases the claim and leaves it on the server; the next run takes it', async () => {
    const tables = await h.dynamo.freshTables();
    const file = await drop('intervaldata');
    const flaky = flakyFtps(2);
    const deps = fetchDeps(h, tables, 'ftps', { connect: flaky.connect });
    const report = await runSmtFetch(deps);
    assert.equal(report.files.find((f) => f.file.name === file.name)?.status, 'error');
    assert.equal(metricValue(deps.metrics, 'FetchErrors', 'transfer'), 1);
    assert.equal(await archiveOf(h).head(`smt/intervaldata/${file.name}`), undefined, 'no partial object in the archive');
    assert.ok(existsSync(file.path));
    const next = await runSmtFetch(fetchDeps(h, tables, 'ftps'));
    assert.equal(next.files.find((f) => f.file.name === file.name)?.status, 'archived', JSON.stringify(next.files));
  });
});
