import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../../bin/meterbridge.ts';
import type { CliIo } from '../../bin/commands/cli.ts';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import { createGpgKeyring, writeSmtFile } from '../../local/smt-files.ts';
import { ARCHIVE_BUCKET, archiveOf, ledgerOf, processDeps, startSmtHarness, storeOf, type SmtHarness } from '../support/smt-harness.ts';

function bufferIo(env: NodeJS.ProcessEnv = {}): CliIo & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', env, out: (t: string) => void (io.stdout += t), err: (t: string) => void (io.stderr += t) };
  return io;
}

describe('meterbridge smt', () => {
  let h: SmtHarness;
  let keyFile: string;
  before(async () => {
    h = await startSmtHarness({ servers: false, keyAlgorithm: 'cv25519' });
    keyFile = join(h.work, 'private.asc');
    writeFileSync(keyFile, h.keyring.armoredPrivateKey);
  });
  after(async () => h.stop());

  it('parse prints one JSON reading per line for an encrypted ZIP, DST day included', async () => {
    const file = await writeSmtFile({
      dir: h.work,
      keyring: h.keyring,
      esiids: ['10443720004766435'],
      days: ['2025-11-02'],
      revision: '11/03/2025 06:00:00',
      zip: true,
      channels: ['Consumption', 'Surplus Generation'],
    });
    const io = bufferIo({ SMT_PASSPHRASE: h.keyring.passphrase });
    const code = await main(['smt', 'parse', file.path, '--private-key', keyFile, '--passphrase-env', 'SMT_PASSPHRASE'], io);
    assert.equal(code, 0, io.stderr);
    const lines = io.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 200);
    assert.deepEqual(
      Object.keys(lines[0]!).filter((k) => ['meterId', 'channel', 'start', 'end', 'value', 'unit', 'quality', 'revision'].includes(k)).length,
      8,
    );
    assert.equal(lines[0]!.meterId, '10443720004766435');
    assert.equal(lines[0]!.start, '2025-11-02T05:00:00.000Z');
    assert.match(String(lines[0]!.end), /Z$/);
    assert.match(io.stderr, /pgp-armored, interval-csv, 2 day\(s\), 200 reading\(s\)/);
  });

  it('parse of a tampered file, a drifted layout, or an encrypted file without a key: exit 1 and no readings', async () => {
    const good = await writeSmtFile({
      dir: h.work,
      keyring: h.keyring,
      esiids: ['10443720004766435'],
      days: ['2025-11-03'],
      revision: '11/04/2025 06:00:00',
      compress: false,
    });
    const lines = readFileSync(good.path, 'utf8').split('\n');
    const i = Math.floor(lines.length / 2);
    lines[i] = `${lines[i]!.slice(0, 20)}${lines[i]![20] === 'z' ? 'y' : 'z'}${lines[i]!.slice(21)}`;
    const tampered = join(h.work, 'tampered.asc');
    writeFileSync(tampered, lines.join('\n'));
    const drifted = join(h.work, 'drifted.csv');
    writeFileSync(drifted, readFileSync(good.csvPath, 'utf8').replace('ESTIMATED_ACTUAL', 'EST_ACT'));
    for (const [path, withKey, message] of [
      [tampered, true, /refused \(integrity\)/],
      [drifted, false, /refused \(layout\): line 1: unknown layout/],
      [good.path, false, /give --private-key/],
    ] as const) {
      const io = bufferIo({ P: h.keyring.passphrase });
      const code = await main(['smt', 'parse', path, ...(withKey ? ['--private-key', keyFile, '--passphrase-env', 'P'] : [])], io);
      assert.equal(code, 1, path);
      assert.equal(io.stdout, '', 'no readings on stdout');
      assert.match(io.stderr, message);
    }
  });

  it('replay re-processes an archived file that failed (here: the key was missing when it arrived)', async () => {
    const tables = await h.dynamo.freshTables();
    const file = await writeSmtFile({
      dir: h.work,
      keyring: h.keyring,
      esiids: ['10443720004766435'],
      days: ['2025-11-03'],
      revision: '11/04/2025 06:00:00',
    });
    const key = `smt/intervaldata/${file.name}`;
    await archiveOf(h).put(key, readFileSync(file.path));
    const other = await createGpgKeyring('cv25519');
    const { loadPrivateKey } = await import('../../lambdas/core/smt/pgp/decrypt.ts');
    const wrongKey = await loadPrivateKey({ armoredKey: other.armoredPrivateKey, passphrase: other.passphrase });
    await other.dispose();
    const failed = await processArchivedFile(processDeps(h, tables, { keys: async () => [wrongKey] }), key);
    assert.equal(failed.status === 'failed' ? failed.reason : failed.status, 'wrong-key');

    const io = bufferIo({ P: h.keyring.passphrase });
    const code = await main(
      [
        'smt',
        'replay',
        key,
        '--bucket',
        ARCHIVE_BUCKET,
        '--readings-table',
        tables.readings,
        '--ledger-table',
        tables.ledger,
        '--private-key',
        keyFile,
        '--passphrase-env',
        'P',
        '--s3-endpoint',
        h.s3.endpoint,
        '--dynamodb-endpoint',
        h.dynamo.endpoint,
        '--region',
        'us-east-1',
      ],
      io,
    );
    assert.equal(code, 0, io.stderr);
    assert.equal(JSON.parse(io.stdout).status, 'processed');
    const stored = await storeOf(h, tables).query({
      meterId: '10443720004766435',
      channel: 'energy.active.import',
      from: new Date('2025-11-03T00:00:00Z'),
      to: new Date('2025-11-05T00:00:00Z'),
    });
    assert.equal(stored.length, 96);
    assert.equal((await ledgerOf(h, tables).get('smt-file', failed.unitId))?.status, 'completed');
  });
});
