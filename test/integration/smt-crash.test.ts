/**
 * Crash tests: a worker process is SIGKILLed at a chosen point of the fetch or process step
 * (test/support/smt-crash-worker.ts); the next run, once the dead worker's claim has expired,
 * must lose nothing and store nothing twice.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import { ARCHIVE_METADATA } from '../../lambdas/core/smt/archive-metadata.ts';
import { runSmtFetch } from '../../lambdas/core/smt/transport/fetch.ts';
import type { TableNames } from '../../lambdas/core/tables.ts';
import { shareTree } from '../../local/smt-servers.ts';
import { writeSmtFile } from '../../local/smt-files.ts';
import { ARCHIVE_BUCKET, archiveOf, fetchDeps, ledgerOf, processDeps, startSmtHarness, storeOf, type SmtHarness } from '../support/smt-harness.ts';

const WORKER = fileURLToPath(new URL('../support/smt-crash-worker.ts', import.meta.url));
const ESIID = '10443720004766435';
/** The next run happens after the dead worker's lock (600 s) has expired. */
const later = () => new Date(Date.now() + 3_600_000);

describe('SMT crash safety (worker killed with SIGKILL)', () => {
  let h: SmtHarness;
  before(async () => {
    h = await startSmtHarness({ keyAlgorithm: 'cv25519' });
  });
  after(async () => h.stop());

  async function crash(
    step: 'fetch' | 'process',
    dieAt: string,
    tables: TableNames,
    key?: string,
  ): Promise<{ signal: NodeJS.Signals | null; output: string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER], {
      env: {
        ...process.env,
        MB_SMT_CRASH: JSON.stringify({
          step,
          dieAt,
          key,
          tables,
          dynamoEndpoint: h.dynamo.endpoint,
          s3Endpoint: h.s3.endpoint,
          bucket: ARCHIVE_BUCKET,
          ftps: { ...h.servers.ftps, timeoutMs: 10_000 },
          armoredKey: h.keyring.armoredPrivateKey,
          passphrase: h.keyring.passphrase,
          tmpDir: h.work,
        }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)));
    return { signal, output };
  }

  async function dropFile(days: string[]) {
    const file = await writeSmtFile({
      dir: join(h.root, 'intervaldata'),
      keyring: h.keyring,
      esiids: [ESIID],
      days,
      revision: '11/05/2025 06:00:00',
    });
    await shareTree(h.root);
    return file;
  }

  it('dying after the archive and before the delete: the next run deletes without archiving again; stored once', async () => {
    const tables = await h.dynamo.freshTables();
    const first = h.created.length;
    const file = await dropFile(['2025-11-02', '2025-11-03']);

    const dead = await crash('fetch', 'archived', tables);
    assert.equal(dead.signal, 'SIGKILL', dead.output);
    assert.ok(existsSync(file.path), 'not deleted: the worker died first');
    assert.equal(h.created.length - first, 1, 'archived once');

    // The next scheduled run, after the lock expired.
    const report = await runSmtFetch(fetchDeps(h, tables, 'ftps', { ledger: ledgerOf(h, tables, { clock: later }) }));
    assert.equal(report.archived, 1);
    assert.equal(existsSync(file.path), false, 'deleted now');
    assert.equal(h.created.length - first, 1, 'the archive already held it: no second upload, no second event');

    const outcome = await processArchivedFile(processDeps(h, tables), h.created[first]!.key);
    assert.equal(outcome.status === 'processed' ? outcome.counts.stored : -1, 196);
    const stored = await storeOf(h, tables).query({
      meterId: ESIID,
      channel: 'energy.active.import',
      from: new Date('2025-11-01T00:00:00Z'),
      to: new Date('2025-11-05T00:00:00Z'),
    });
    assert.equal(stored.length, 196);
  });

  for (const dieAt of ['decrypted', 'stored'] as const) {
    it(`dying after ${dieAt === 'decrypted' ? 'decryption' : 'storing'} and before completing: the re-run stores each reading once`, async () => {
      const tables = await h.dynamo.freshTables();
      const first = h.created.length;
      await dropFile(['2025-11-02']);
      await runSmtFetch(fetchDeps(h, tables, 'ftps'));
      const key = h.created[first]!.key;

      const dead = await crash('process', dieAt, tables, key);
      assert.equal(dead.signal, 'SIGKILL', dead.output);
      const unitId = (await archiveOf(h).head(key))?.metadata[ARCHIVE_METADATA.unit] ?? '';
      const record = await ledgerOf(h, tables).get('smt-file', unitId);
      assert.equal(record?.status, 'in_progress', 'the dead worker left its claim');

      // Before the lock expires, a redelivered event is refused as busy (SQS retries later) ...
      await assert.rejects(processArchivedFile(processDeps(h, tables), key), /being processed by another worker/);
      // ... after it, the re-run takes over.
      const outcome = await processArchivedFile(processDeps(h, tables, { ledger: ledgerOf(h, tables, { clock: later }) }), key);
      assert.equal(outcome.status, 'processed');
      const counts = outcome.status === 'processed' ? outcome.counts : undefined;
      if (dieAt === 'stored') assert.deepEqual([counts?.stored, counts?.duplicate], [0, 100], 'everything was already stored: duplicates only');
      else assert.deepEqual([counts?.stored, counts?.duplicate], [100, 0]);
      const stored = await storeOf(h, tables).query({
        meterId: ESIID,
        channel: 'energy.active.import',
        from: new Date('2025-11-01T00:00:00Z'),
        to: new Date('2025-11-04T00:00:00Z'),
      });
      assert.equal(stored.length, 100);
      const done = await ledgerOf(h, tables).get('smt-file', outcome.unitId);
      assert.equal(done?.status, 'completed');
      assert.equal(done?.attempts, 2);
    });
  }
});
