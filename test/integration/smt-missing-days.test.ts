/**
 * Missing days per ESIID (issue 18, item 4): several ESIIDs deliver daily files D-3..D through the
 * real process step (GnuPG-encrypted files in the S3 archive, DynamoDB Local store and ledger), one
 * stops after D-2. The daily check's core raises SmtMissingEsiidDays, read back from moto's
 * CloudWatch, and names the ESIID with its last day, in its log and through `meterbridge smt missing`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { main } from '../../bin/meterbridge.ts';
import { Metrics } from '../../lambdas/core/metrics.ts';
import { checkMissingDays, EsiidDays, type MissingDaysReport } from '../../lambdas/core/smt/esiid-days.ts';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import type { TableNames } from '../../lambdas/core/tables.ts';
import type { Log } from '../../shared/log.ts';
import { silentLog } from '../../shared/log.ts';
import { writeSmtFile } from '../../local/smt-files.ts';
import { startLocalCloudWatch, type LocalCloudWatch } from '../support/cloudwatch.ts';
import { archiveOf, processDeps, startSmtHarness, storeOf, type SmtHarness } from '../support/smt-harness.ts';

const KEEPS = ['10443720000000001', '10443720000000002', '10443720000000003'];
const STOPS = '10443720000000004';
/** D-3 .. D: the stopping ESIID delivers D-3 and D-2 only. */
const DAYS = ['2026-11-23', '2026-11-24', '2026-11-25', '2026-11-26'];

/** A Log that keeps what it is told. */
function recordingLog(): Log & { lines: Array<{ level: string; message: string; extra?: Record<string, unknown> }> } {
  const lines: Array<{ level: string; message: string; extra?: Record<string, unknown> }> = [];
  const at = (level: string) => (message: string, extra?: Record<string, unknown>) => void lines.push({ level, message, extra });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

describe('SMT missing days per ESIID', () => {
  let h: SmtHarness;
  let cloudwatch: LocalCloudWatch;
  let tables: TableNames;

  before(async () => {
    [h, cloudwatch] = await Promise.all([startSmtHarness({ servers: false, keyAlgorithm: 'cv25519' }), startLocalCloudWatch()]);
    tables = await h.dynamo.freshTables();
    // One daily file per day, as SMT delivers them, each through the process step.
    for (const [index, day] of DAYS.entries()) {
      const esiids = index <= 1 ? [...KEEPS, STOPS] : KEEPS;
      const [y, m, d] = day.split('-');
      const file = await writeSmtFile({ dir: h.work, keyring: h.keyring, esiids, days: [day], revision: `${m}/${Number(d) + 1}/${y} 06:00:00` });
      const key = `smt/intervaldata/${file.name}`;
      await archiveOf(h).put(key, readFileSync(file.path));
      const outcome = await processArchivedFile(processDeps(h, tables), key);
      assert.equal(outcome.status, 'processed', JSON.stringify(outcome));
    }
  });
  after(async () => Promise.all([h?.stop(), cloudwatch?.stop()]));

  it('the stopped ESIID raises SmtMissingEsiidDays (read back from CloudWatch) and is named with its last day', async () => {
    const metrics = new Metrics({ client: cloudwatch.client(), defaultDimensions: { Stage: 'test', Source: 'smt' }, log: silentLog });
    const log = recordingLog();

    const report = await checkMissingDays({ days: new EsiidDays(h.dynamo.client, tables.readings), windowDays: 7, metrics, log });
    await metrics.flush();

    assert.deepEqual(report, {
      newestDay: '2026-11-26',
      windowDays: 7,
      reporting: 3,
      missing: [{ esiid: STOPS, lastDay: '2026-11-24' }],
      silentLonger: 0,
    } satisfies MissingDaysReport);
    assert.equal(await cloudwatch.sum('SmtMissingEsiidDays', { name: 'Source', value: 'smt' }), 1);
    const warned = log.lines.filter((line) => line.level === 'warn');
    assert.equal(warned.length, 1);
    assert.deepEqual(warned[0]!.extra?.esiids, [`${STOPS} last 2026-11-24`]);
  });

  it('meterbridge smt missing lists the same ESIID from the store; a window shorter than its silence leaves it out', async () => {
    const cli = async (...args: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await main(['smt', 'missing', ...args, '--table', tables.readings, '--endpoint', h.dynamo.endpoint], {
        out: (t) => (stdout += t),
        err: (t) => (stderr += t),
        env: {},
      });
      return { code, lines: stdout.split('\n').filter(Boolean), stderr };
    };

    const week = await cli();
    assert.equal(week.code, 0, week.stderr);
    assert.deepEqual(
      week.lines.map((line) => JSON.parse(line) as unknown),
      [{ esiid: STOPS, lastDay: '2026-11-24', newestDay: '2026-11-26' }],
    );
    assert.match(week.stderr, /1 ESIID\(s\) missing 2026-11-26 .* 3 delivered it; 0 silent for longer/);

    const oneDay = await cli('--days', '1');
    assert.equal(oneDay.code, 0, oneDay.stderr);
    assert.deepEqual(oneDay.lines, []);
    assert.match(oneDay.stderr, /0 ESIID\(s\) missing 2026-11-26 .* 1 silent for longer/);

    const bad = await cli('--days', 'seven');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--days "seven" must be a whole number/);
  });

  it('an older day (a revision, a replay) never moves an ESIID back; a newer one moves it forward', async () => {
    const fresh = await h.dynamo.freshTables();
    // A fresh instance each time: no process cache, so the stored guard alone decides.
    await new EsiidDays(h.dynamo.client, fresh.readings).note(new Map([[STOPS, '2026-11-24']]));
    await new EsiidDays(h.dynamo.client, fresh.readings).note(new Map([[STOPS, '2026-11-20']]));
    assert.deepEqual(await new EsiidDays(h.dynamo.client, fresh.readings).all(), [{ esiid: STOPS, lastDay: '2026-11-24' }]);
    await new EsiidDays(h.dynamo.client, fresh.readings).note(new Map([[STOPS, '2026-11-26']]));
    assert.deepEqual(await new EsiidDays(h.dynamo.client, fresh.readings).all(), [{ esiid: STOPS, lastDay: '2026-11-26' }]);
    // The readings themselves are untouched by these side items.
    assert.deepEqual(
      await storeOf(h, fresh).query({
        meterId: STOPS,
        channel: 'energy.active.import',
        from: new Date('2026-11-20T00:00:00Z'),
        to: new Date('2026-11-28T00:00:00Z'),
      }),
      [],
    );
  });

  it('a day SMT sent entirely blank is not a delivery', async () => {
    const fresh = await h.dynamo.freshTables();
    for (const day of ['2026-11-25', '2026-11-26']) {
      const [y, m, d] = day.split('-');
      const file = await writeSmtFile({
        dir: h.work,
        keyring: h.keyring,
        esiids: [KEEPS[0]!, STOPS],
        days: [day],
        revision: `${m}/${Number(d) + 1}/${y} 06:00:00`,
        // The stopping ESIID's rows are there on the second day, every value blank.
        value: (esiid, date, row) => (esiid === STOPS && date === '2026-11-26' ? undefined : 0.25 + row / 1000),
      });
      const key = `smt/intervaldata/${file.name}`;
      await archiveOf(h).put(key, readFileSync(file.path));
      assert.equal((await processArchivedFile(processDeps(h, fresh), key)).status, 'processed');
    }
    const report = await checkMissingDays({ days: new EsiidDays(h.dynamo.client, fresh.readings), windowDays: 7 });
    assert.deepEqual(report.missing, [{ esiid: STOPS, lastDay: '2026-11-25' }]);
  });
});
