/**
 * Issue 15, item 1: some corrupted PGP files make openpgp neither end nor fail. Real GnuPG files
 * are mutated bit by bit until openpgp itself hangs on one (test/support/smt-mutations.ts); the
 * decryptor, the process step and `meterbridge smt parse` must refuse such a file as 'corrupt'
 * within a deadline, keep it in the archive, and count it.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { main } from '../../bin/meterbridge.ts';
import type { CliIo } from '../../bin/commands/cli.ts';
import type { PrivateKey } from 'openpgp';
import { decryptToFile, loadPrivateKey, SmtDecryptError } from '../../lambdas/core/smt/pgp/decrypt.ts';
import { processArchivedFile } from '../../lambdas/core/smt/process.ts';
import { createGpgKeyring, writeSmtFile, type GpgKeyring } from '../../local/smt-files.ts';
import { withDeadline } from '../fuzz/support.ts';
import { findHangingMutations, type Mutation } from '../support/smt-mutations.ts';
import { archiveOf, ledgerOf, metricValue, processDeps, startSmtHarness, storeOf, type SmtHarness } from '../support/smt-harness.ts';

const SPEC = { esiids: ['10443720004766435'], days: ['2025-11-03'], revision: '11/04/2025 06:00:00' };

function bufferIo(env: NodeJS.ProcessEnv = {}): CliIo & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', env, out: (t: string) => void (io.stdout += t), err: (t: string) => void (io.stderr += t) };
  return io;
}

const stalled = (e: unknown) =>
  e instanceof SmtDecryptError && e.reason === 'corrupt' && /stalled: decryption neither ended nor failed/.test(e.message);

describe('PGP files that make openpgp hang', { timeout: 600_000 }, () => {
  let keyring: GpgKeyring;
  let work: string;
  let original: Buffer;
  let hanging: Mutation[] = [];
  let key: PrivateKey;
  before(async () => {
    keyring = await createGpgKeyring('cv25519');
    work = await mkdtemp(join(tmpdir(), 'mb-smt-hang-'));
    key = await loadPrivateKey({ armoredKey: keyring.armoredPrivateKey, passphrase: keyring.passphrase });
    // Binary and compressed, as in the issue: a flip near the start garbles the compressed packet's header.
    for (let attempt = 0; attempt < 5 && hanging.length === 0; attempt++) {
      const file = await writeSmtFile({ dir: work, keyring, ...SPEC, armor: false, compress: true });
      original = await readFile(file.path);
      hanging = await findHangingMutations(original, [key], { limit: 2 });
    }
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
    await keyring.dispose();
  });

  it('brute force finds single-bit flips of a GnuPG file on which openpgp itself never settles', () => {
    // If this fails, openpgp no longer hangs on these files: the watchdog stays, this search needs a new target.
    assert.ok(hanging.length > 0, 'no hanging mutation found in 5 files');
  });

  it('decryptToFile refuses each as corrupt (stalled) within its deadline and leaves no clear file', async () => {
    for (const mutation of hanging) {
      const out = join(work, `clear-${mutation.at}`);
      const decrypting = decryptToFile(
        (async function* () {
          yield mutation.bytes;
        })(),
        out,
        { keys: [key], maxClearBytes: 1e7, stallMs: 1500 },
      );
      await assert.rejects(withDeadline(decrypting, 60_000), stalled, `flip ${mutation.xor} at byte ${mutation.at}`);
      assert.equal(existsSync(out), false);
    }
  });

  it('waiting on a slow source is not a stall: a file delivered with pauses longer than stallMs decrypts', async () => {
    const slow = (async function* () {
      for (let at = 0; at < original.length; at += 400) {
        await sleep(700);
        yield original.subarray(at, at + 400);
      }
    })();
    const out = join(work, 'slow');
    const report = await decryptToFile(slow, out, { keys: [key], maxClearBytes: 1e7, stallMs: 300 });
    assert.equal(report.bytesIn, original.length);
    assert.ok(report.bytesOut > 8000);
  });

  it('the overall deadline refuses a source that never ends', async () => {
    const endless = (async function* () {
      yield original.subarray(0, 300);
      await new Promise(() => {});
    })();
    await assert.rejects(
      withDeadline(decryptToFile(endless, join(work, 'endless'), { keys: [key], maxClearBytes: 1e7, deadlineMs: 1500 }), 60_000),
      (e: unknown) => e instanceof SmtDecryptError && e.reason === 'corrupt' && /did not finish decrypting within 1500 ms/.test(e.message),
    );
  });

  it('the process step fails such a file as corrupt with its metrics; it stays in the archive and stores nothing', async () => {
    // The harness's own key: the hanging file is re-found for it (the session key decides which flips hang).
    const h = await startSmtHarness({ servers: false, keyAlgorithm: 'cv25519' });
    try {
      await processStepRefuses(h);
    } finally {
      await h.stop();
    }
  });

  async function processStepRefuses(h: SmtHarness): Promise<void> {
    const hKey = await loadPrivateKey({ armoredKey: h.keyring.armoredPrivateKey, passphrase: h.keyring.passphrase });
    let found: Mutation[] = [];
    for (let attempt = 0; attempt < 5 && found.length === 0; attempt++) {
      const file = await writeSmtFile({ dir: work, keyring: h.keyring, ...SPEC, armor: false, compress: true });
      found = await findHangingMutations(await readFile(file.path), [hKey], { limit: 1 });
    }
    assert.ok(found.length > 0, 'no hanging mutation found in 5 files');
    const tables = await h.dynamo.freshTables();
    const archiveKey = 'smt/intervaldata/IntervalMeterUsage-hang.CSV.123456789.pgp';
    await archiveOf(h).put(archiveKey, found[0]!.bytes);
    const deps = processDeps(h, tables, { decryptStallMs: 1500 });
    const outcome = await withDeadline(processArchivedFile(deps, archiveKey), 120_000);
    assert.equal(outcome.status, 'failed');
    assert.equal(outcome.status === 'failed' ? outcome.reason : '', 'corrupt');
    assert.match((await ledgerOf(h, tables).get('smt-file', outcome.unitId))?.reason ?? '', /^corrupt: the PGP message stalled/);
    assert.equal(metricValue(deps.metrics, 'FilesFailed', 'corrupt'), 1);
    assert.equal(metricValue(deps.metrics, 'DecryptFailures', 'corrupt'), 1);
    assert.ok(await archiveOf(h).head(archiveKey), 'the archive still holds it');
    const stored = await storeOf(h, tables).query({
      meterId: SPEC.esiids[0]!,
      channel: 'energy.active.import',
      from: new Date('2025-11-01T00:00:00Z'),
      to: new Date('2025-11-06T00:00:00Z'),
    });
    assert.equal(stored.length, 0);
  }

  it('meterbridge smt parse exits 1 with the reason and prints no reading (it exited 0 with no output)', async () => {
    const path = join(work, 'hanging.pgp');
    writeFileSync(path, hanging[0]!.bytes);
    const keyFile = join(work, 'private.asc');
    writeFileSync(keyFile, keyring.armoredPrivateKey);
    const io = bufferIo({ P: keyring.passphrase });
    const code = await withDeadline(
      main(['smt', 'parse', path, '--private-key', keyFile, '--passphrase-env', 'P', '--decrypt-stall-seconds', '2'], io),
      120_000,
    );
    assert.equal(code, 1);
    assert.equal(io.stdout, '');
    assert.match(io.stderr, /refused \(corrupt\): the PGP message stalled/);
  });
});
