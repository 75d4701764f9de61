/**
 * The SMT path's alarmed metrics as CloudWatch stores them (moto's server), not as a Metrics buffer
 * holds them: each one provoked through the real fetch and process steps (proftpd, s3rver, DynamoDB
 * Local, GnuPG files), flushed by the Metrics client the Lambdas use, and read back with the
 * dimension its alarm filters on.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Metrics } from '../../lambdas/core/metrics.ts';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import { runSmtFetch } from '../../lambdas/core/smt/transport/fetch.ts';
import { connectFtps } from '../../lambdas/core/smt/transport/ftps.ts';
import { silentLog } from '../../shared/log.ts';
import { createGpgKeyring, writeSmtFile } from '../../local/smt-files.ts';
import { shareTree } from '../../local/smt-servers.ts';
import { startLocalCloudWatch, type LocalCloudWatch } from '../support/cloudwatch.ts';
import { archiveOf, fetchDeps, processDeps, startSmtHarness, type SmtHarness } from '../support/smt-harness.ts';

const ESIID = '10443720004766435';
const SPEC = { esiids: [ESIID], days: ['2025-11-03'], revision: '11/04/2025 06:00:00' };
const reason = (value: string) => ({ name: 'Reason', value });

describe('SMT alarmed metrics read back from CloudWatch', () => {
  let h: SmtHarness;
  let cloudwatch: LocalCloudWatch;
  before(async () => {
    [h, cloudwatch] = await Promise.all([startSmtHarness({ keyAlgorithm: 'cv25519' }), startLocalCloudWatch()]);
  });
  after(async () => {
    await Promise.all([h?.stop(), cloudwatch?.stop()]);
  });

  /** The Metrics client the SMT Lambdas build, sending to moto. */
  const cloudMetrics = () => new Metrics({ client: cloudwatch.client(), defaultDimensions: { Stage: 'test', Source: 'smt' }, log: silentLog });

  it('a refused login is FetchErrors{Reason=auth}; a run that archives a file records OldestUnfetchedFileAge and HoursSinceLastFile', async () => {
    const tables = await h.dynamo.freshTables();
    await writeSmtFile({ dir: join(h.root, 'intervaldata'), keyring: h.keyring, ...SPEC });
    await shareTree(h.root);

    const refused = fetchDeps(h, tables, 'ftps', {
      connect: () => connectFtps({ ...h.servers.ftps, password: 'not-the-password', timeoutMs: 10_000 }),
      metrics: cloudMetrics(),
    });
    const failedRun = await runSmtFetch(refused);
    assert.match(failedRun.error ?? '', /refused/);
    await refused.metrics.flush();
    assert.equal(await cloudwatch.sum('FetchErrors', reason('auth')), 1);

    const good = fetchDeps(h, tables, 'ftps', { metrics: cloudMetrics() });
    const run = await runSmtFetch(good);
    assert.equal(run.archived, 1, JSON.stringify(run));
    await good.metrics.flush();
    const totals = await cloudwatch.totals(undefined, ['OldestUnfetchedFileAge', 'HoursSinceLastFile']);
    const samples = (name: string) => totals.filter((t) => t.name === name).reduce((n, t) => n + t.sampleCount, 0);
    assert.ok(samples('OldestUnfetchedFileAge') >= 1, JSON.stringify(totals));
    assert.ok(samples('HoursSinceLastFile') >= 1, JSON.stringify(totals));
    assert.ok((await cloudwatch.sum('HoursSinceLastFile')) < 0.1, 'a file just arrived: HoursSinceLastFile ~ 0');
    assert.ok((await cloudwatch.sum('OldestUnfetchedFileAge')) >= 0);
  });

  it('a file encrypted to another key is DecryptFailures and FilesFailed{Reason=wrong-key}; an unknown header is FilesFailed{Reason=unknown-type}', async () => {
    const tables = await h.dynamo.freshTables();
    const other = await createGpgKeyring('cv25519');
    let foreign;
    try {
      foreign = await writeSmtFile({ dir: h.work, keyring: other, ...SPEC, name: 'foreign-key.asc' });
    } finally {
      await other.dispose();
    }
    const unknown = await writeSmtFile({
      dir: h.work,
      keyring: h.keyring,
      ...SPEC,
      name: 'unknown.asc',
      content: 'METER,WHEN,HOW_MUCH\n1,2025-11-03,1\n',
    });
    const metrics = cloudMetrics();
    const deps = processDeps(h, tables, { metrics });
    for (const file of [foreign, unknown]) {
      const key = `smt/intervaldata/${file.name}`;
      await archiveOf(h).put(key, readFileSync(file.path));
      const outcome = await processArchivedFile(deps, key);
      assert.equal(outcome.status, 'failed', JSON.stringify(outcome));
    }
    await metrics.flush();
    assert.equal(await cloudwatch.sum('DecryptFailures', reason('wrong-key')), 1);
    assert.equal(await cloudwatch.sum('FilesFailed', reason('wrong-key')), 1);
    assert.equal(await cloudwatch.sum('FilesFailed', reason('unknown-type')), 1);
  });
});
