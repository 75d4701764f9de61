/**
 * Every SMT file type, recognised by its header (issue 18): spreadsheet re-saves of the interval
 * CSV, daily register reads, monthly billing (refused unsupported-type), unknown headers
 * (unknown-type), ZIP bundles with mixed members (per-member outcomes) and LSE with both DST flags,
 * through `meterbridge smt parse` as a user runs it and through the process step (GnuPG-encrypted
 * files in the S3 archive, DynamoDB Local, the ledger).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../../bin/meterbridge.ts';
import type { CliIo } from '../../bin/commands/cli.ts';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import { smtCsv, smtLseLines, writeSmtFile, type SmtFileOptions } from '../../local/smt-files.ts';
import { archiveOf, ledgerOf, metricValue, processDeps, startSmtHarness, storeOf, type SmtHarness } from '../support/smt-harness.ts';

const ESIID = '10443720004766435';
const SPEC = { esiids: [ESIID], days: ['2025-11-03'], revision: '11/04/2025 06:00:00' };

/** The interval CSV as a spreadsheet re-saves it: M/D/YYYY dates, H:MM times, revisions without seconds. */
const SPREADSHEET = smtCsv(SPEC)
  .replace(/11\/04\/2025 06:00:00/g, '11/4/2025 6:00')
  .replace(/11\/03\/2025/g, '11/3/2025')
  .replace(/,\s?0(\d):(\d\d)/g, ',$1:$2');

const DAILY = [
  'ESIID,USAGE_DATE,REVISION_DATE,START_READING,END_READING,USAGE_KWH',
  `'${ESIID},11/02/2025,11/03/2025 06:00:00,1000.000,1012.500,12.500`,
  `'${ESIID},11/03/2025,11/04/2025 06:00:00,1012.500,1024.000,11.500`,
].join('\r\n');
const BILLING = ['ESIID,START_DATE,END_DATE,ACTUAL_KWH,METERED_KW,BILLED_KW', `'${ESIID},10/01/2025,10/31/2025,812,4.2,4.2`].join('\n');
const UNKNOWN = ['METER,WHEN,HOW_MUCH', `${ESIID},2025-11-03,1`].join('\n');

function bufferIo(env: NodeJS.ProcessEnv = {}): CliIo & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', env, out: (t: string) => void (io.stdout += t), err: (t: string) => void (io.stderr += t) };
  return io;
}

describe('SMT file types by header', () => {
  let h: SmtHarness;
  before(async () => {
    h = await startSmtHarness({ servers: false, keyAlgorithm: 'cv25519' });
  });
  after(async () => h.stop());

  /** `meterbridge smt parse` on a clear file of `content`; the exit code, the readings and stderr. */
  async function cliParse(name: string, content: string, ...flags: string[]) {
    const path = join(h.work, name);
    writeFileSync(path, content);
    const io = bufferIo();
    const code = await main(['smt', 'parse', path, ...flags], io);
    const readings = io.stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    return { code, readings, stderr: io.stderr };
  }

  /** A GnuPG-encrypted file in the archive, through the process step. */
  async function processFile(options: Omit<SmtFileOptions, 'dir' | 'keyring' | 'esiids' | 'days' | 'revision'> & Partial<SmtFileOptions>) {
    const tables = await h.dynamo.freshTables();
    const file = await writeSmtFile({ dir: h.work, keyring: h.keyring, ...SPEC, ...options });
    const key = `smt/intervaldata/${file.name}`;
    await archiveOf(h).put(key, readFileSync(file.path));
    const deps = processDeps(h, tables);
    const outcome = await processArchivedFile(deps, key);
    const stored = (channel: string) =>
      storeOf(h, tables).query({ meterId: ESIID, channel, from: new Date('2025-10-01T00:00:00Z'), to: new Date('2025-11-10T00:00:00Z') });
    return { outcome, deps, tables, key, stored };
  }

  it('parse takes a spreadsheet re-save (M/D/YYYY, H:MM, no seconds) unless --strict, which names line and field', async () => {
    assert.match(SPREADSHEET.split('\r\n')[1]!, /^'\d{17},11\/3\/2025,11\/4\/2025 6:00,0:00,0:15,/);
    const lenient = await cliParse('spreadsheet.csv', SPREADSHEET);
    assert.equal(lenient.code, 0, lenient.stderr);
    assert.equal(lenient.readings.length, 96);
    assert.equal(lenient.readings[0]!.start, '2025-11-03T06:00:00.000Z');
    assert.equal(lenient.readings[0]!.revision, Date.parse('2025-11-04T12:00:00Z') / 1000);
    const strict = await cliParse('spreadsheet.csv', SPREADSHEET, '--strict');
    assert.equal(strict.code, 1);
    assert.equal(strict.readings.length, 0);
    assert.match(strict.stderr, /refused \(layout\): line 2: REVISION_DATE "11\/4\/2025 6:00" is not MM\/DD\/YYYY HH:MM:SS/);
    // Ambiguous stays refused even when lenient: a two-digit year.
    const twoDigit = await cliParse('two-digit.csv', SPREADSHEET.replace(/11\/3\/2025/g, '11/3/25'));
    assert.equal(twoDigit.code, 1);
    assert.match(twoDigit.stderr, /line 2: USAGE_DATE "11\/3\/25" is not MM\/DD\/YYYY/);
  });

  it('parse reads daily register reads as register readings on their own channel, at the next local midnight', async () => {
    const { code, readings, stderr } = await cliParse('DailyMeterUsage.csv', DAILY);
    assert.equal(code, 0, stderr);
    assert.deepEqual(
      readings.map((r) => [r.kind, r.channel, r.at, r.value]),
      [
        ['register', 'energy.active.import.register', '2025-11-03T06:00:00.000Z', 1012.5],
        ['register', 'energy.active.import.register', '2025-11-04T06:00:00.000Z', 1024],
      ],
    );
  });

  it('parse refuses monthly billing as unsupported-type and an unknown header as unknown-type', async () => {
    const billing = await cliParse('MonthlyBilling.csv', BILLING);
    assert.equal(billing.code, 1);
    assert.match(billing.stderr, /refused \(unsupported-type\): line 1: monthly billing summary/);
    const unknown = await cliParse('Other.csv', UNKNOWN);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /refused \(unknown-type\): line 1: unknown layout/);
  });

  it('parse reads LSE with DST flag Y (fall-back day, 100 intervals) and N (standard time all year), time fields honoured', async () => {
    const fallBack = [...smtLseLines({ esiids: [ESIID], days: ['2025-11-02'], revision: '11/03/2025 06:00:00' })].join('\n');
    const y = await cliParse('fall-back.lse', fallBack);
    assert.equal(y.code, 0, y.stderr);
    assert.equal(y.readings.length, 100);
    assert.equal(y.readings[0]!.start, '2025-11-02T05:00:00.000Z');
    assert.equal(y.readings[99]!.end, '2025-11-03T06:00:00.000Z');
    // Flag N: a summer day's 00:00 standard time is 06:00Z (CDT would be 05:00Z); scaled by the multipliers.
    const n = [
      `00000001,${ESIID},4,20250701000000,20250701005959,N,N`,
      '00000002,,,2,0,1,0,900,KWH,,,,',
      '00000004,20250702060000,SMT',
      '10000001,0.100,A,20250701000000,0.200,E,,0.300,A,,0.400,,20250701004500',
    ].join('\n');
    const standard = await cliParse('standard.lse', n);
    assert.equal(standard.code, 0, standard.stderr);
    assert.deepEqual(
      standard.readings.map((r) => [r.start, r.value, r.quality]),
      [
        ['2025-07-01T06:00:00.000Z', 0.2, 'actual'],
        ['2025-07-01T06:15:00.000Z', 0.4, 'estimated'],
        ['2025-07-01T06:30:00.000Z', 0.6, 'actual'],
        ['2025-07-01T06:45:00.000Z', 0.8, 'actual'],
      ],
    );
    // A time field that disagrees with the interval's position is a shifted file: refused with its line.
    const shifted = await cliParse('shifted.lse', n.replace('20250701004500', '20250701010000'));
    assert.equal(shifted.code, 1);
    assert.match(shifted.stderr, /refused \(layout\): line 4: interval 4 .* time field 20250701010000 is not its start 20250701004500/);
  });

  it('parse takes a bundle member by member: good members printed, the others named with their reasons', async () => {
    const bundle = await writeSmtFile({
      dir: h.work,
      ...SPEC,
      members: [
        { name: 'IntervalMeterUsage.csv', content: smtCsv(SPEC) },
        { name: 'DailyMeterUsage.csv', content: DAILY },
        { name: 'MonthlyBilling.csv', content: BILLING },
        { name: 'Other.csv', content: UNKNOWN },
      ],
    });
    const io = bufferIo();
    const code = await main(['smt', 'parse', bundle.path], io);
    assert.equal(code, 0, io.stderr);
    const readings = io.stdout.trim().split('\n');
    assert.equal(readings.length, 96 + 2);
    assert.match(io.stderr, /#MonthlyBilling\.csv: refused \(unsupported-type\)/);
    assert.match(io.stderr, /#Other\.csv: refused \(unknown-type\)/);
    assert.match(io.stderr, /2 of 4 part\(s\) taken, 2 refused/);
  });

  it('the process step stores a mixed bundle member by member, counts each refusal and keeps the original', async () => {
    const { outcome, deps, tables, key, stored } = await processFile({
      members: [
        { name: 'IntervalMeterUsage.csv', content: SPREADSHEET },
        { name: 'DailyMeterUsage.csv', content: DAILY },
        { name: 'MonthlyBilling.csv', content: BILLING },
        { name: 'Other.csv', content: UNKNOWN },
      ],
    });
    assert.equal(outcome.status, 'processed', JSON.stringify(outcome));
    if (outcome.status !== 'processed') return;
    assert.deepEqual(
      outcome.parts.map((part) => [part.entry, part.layout ?? null, part.reason ?? 'stored', part.readings]),
      [
        ['IntervalMeterUsage.csv', 'interval-csv', 'stored', 96],
        ['DailyMeterUsage.csv', 'daily-reads', 'stored', 2],
        ['MonthlyBilling.csv', null, 'unsupported-type', 0],
        ['Other.csv', null, 'unknown-type', 0],
      ],
    );
    assert.equal(outcome.counts.stored, 98);
    assert.equal((await stored('energy.active.import')).length, 96);
    const registers = await stored('energy.active.import.register');
    assert.deepEqual(
      registers.map((r) => [r.kind, r.value]),
      [
        ['register', 1012.5],
        ['register', 1024],
      ],
    );
    assert.equal(metricValue(deps.metrics, 'FilesFailed', 'unknown-type'), 1);
    assert.equal(metricValue(deps.metrics, 'FilesUnsupported'), 1);
    assert.match(String((await ledgerOf(h, tables).get('smt-file', outcome.unitId))?.detail?.refusedParts ?? ''), /Other\.csv: unknown-type/);
    assert.ok(await archiveOf(h).head(key), 'the bundle stays in the archive');
  });

  it('a replay takes the refused members of a bundle again and writes the members taken before as duplicates, never twice', async () => {
    // The pipeline runs strict: the spreadsheet member is refused (layout), the daily reads are stored.
    const tables = await h.dynamo.freshTables();
    const strictFile = await writeSmtFile({
      dir: h.work,
      keyring: h.keyring,
      ...SPEC,
      members: [
        { name: 'IntervalMeterUsage.csv', content: SPREADSHEET },
        { name: 'DailyMeterUsage.csv', content: DAILY },
      ],
    });
    const strictKey = `smt/intervaldata/${strictFile.name}`;
    await archiveOf(h).put(strictKey, readFileSync(strictFile.path));
    const strictDeps = processDeps(h, tables, { strict: true });
    const first = await processArchivedFile(strictDeps, strictKey);
    assert.equal(first.status, 'processed', JSON.stringify(first));
    if (first.status !== 'processed') return;
    assert.deepEqual(
      first.parts.map((part) => part.reason ?? 'stored'),
      ['layout', 'stored'],
    );
    const ledger = ledgerOf(h, tables);
    assert.equal((await ledger.get('smt-file', first.unitId))?.partial, true);
    const intervals = () =>
      storeOf(h, tables).query({
        meterId: ESIID,
        channel: 'energy.active.import',
        from: new Date('2025-11-03T00:00:00Z'),
        to: new Date('2025-11-05T00:00:00Z'),
      });
    assert.equal((await intervals()).length, 0);

    // A re-delivery (not a replay) still skips it: completed is completed.
    assert.deepEqual(await processArchivedFile(strictDeps, strictKey).then((o) => o.status), 'skipped');
    // The operator relaxes the setting and replays: the refused member is stored, the daily reads are duplicates.
    const replayDeps = processDeps(h, tables);
    const replayed = await processArchivedFile(replayDeps, strictKey, { replay: true });
    assert.equal(replayed.status, 'processed', JSON.stringify(replayed));
    if (replayed.status !== 'processed') return;
    assert.deepEqual(
      replayed.parts.map((part) => part.reason ?? 'stored'),
      ['stored', 'stored'],
    );
    assert.equal(replayed.counts.stored, 96);
    assert.equal(replayed.counts.duplicate, 2, 'the daily reads stored the first time are duplicates, not written again');
    assert.equal((await intervals()).length, 96);
    const record = await ledger.get('smt-file', replayed.unitId);
    assert.equal(record?.status, 'completed');
    assert.equal(record?.partial, undefined, 'whole now: a further replay skips it');
    assert.equal(record?.detail?.refusedParts, undefined);
    assert.equal((await processArchivedFile(replayDeps, strictKey, { replay: true })).status, 'skipped');
  });

  it('the process step refuses a billing file as unsupported-type and an unknown one as unknown-type, stores nothing, keeps both', async () => {
    for (const [content, reason, metric] of [
      [BILLING, 'unsupported-type', 'FilesUnsupported'],
      [UNKNOWN, 'unknown-type', 'FilesFailed'],
    ] as const) {
      const { outcome, deps, key, stored } = await processFile({ content });
      assert.equal(outcome.status === 'failed' ? outcome.reason : outcome.status, reason);
      assert.equal(metricValue(deps.metrics, metric, metric === 'FilesFailed' ? reason : undefined), 1);
      assert.equal((await stored('energy.active.import')).length, 0);
      assert.ok(await archiveOf(h).head(key));
    }
  });

  it('the process step refuses a bundle with more members than the cap as a whole (reason bundle), parsing none of them', async () => {
    const members = Array.from({ length: 1001 }, (_, i) => ({ name: `part${i}.csv`, content: i === 0 ? smtCsv(SPEC) : 'x' }));
    const { outcome, deps, key, stored } = await processFile({ members });
    assert.equal(outcome.status === 'failed' ? outcome.reason : outcome.status, 'bundle');
    assert.match(outcome.status === 'failed' ? outcome.message : '', /more than 1000 files/);
    assert.equal(metricValue(deps.metrics, 'FilesFailed', 'bundle'), 1);
    assert.equal((await stored('energy.active.import')).length, 0);
    assert.ok(await archiveOf(h).head(key));
  });

  it('the process step stores an LSE file from the generator exactly as its CSV twin', async () => {
    const spec = {
      esiids: [ESIID],
      days: ['2025-11-02', '2025-11-03'],
      revision: '11/04/2025 06:00:00',
      channels: ['Consumption', 'Surplus Generation'] as const,
    };
    const lse = await processFile({ ...spec, channels: [...spec.channels], format: 'lse' });
    assert.equal(lse.outcome.status, 'processed', JSON.stringify(lse.outcome));
    const csv = await processFile({ ...spec, channels: [...spec.channels] });
    for (const channel of ['energy.active.import', 'energy.active.export']) {
      const fromLse = (await lse.stored(channel)).map((r) => (r.kind === 'interval' ? [r.start.toISOString(), r.value, r.quality, r.revision] : []));
      const fromCsv = (await csv.stored(channel)).map((r) => (r.kind === 'interval' ? [r.start.toISOString(), r.value, r.quality, r.revision] : []));
      assert.equal(fromLse.length, 196);
      assert.deepEqual(fromLse, fromCsv);
    }
  });
});
