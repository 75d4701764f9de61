/**
 * Files encrypted by GnuPG (RSA and legacy Curve25519 keys; armored and binary; compressed and
 * not; a ZIP inside and not) decrypt with openpgp and parse to exactly the readings of the clear
 * CSV. Also: the size caps, and that nothing is left behind when a check fails.
 */
import assert from 'node:assert/strict';
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PrivateKey } from 'openpgp';
import { decryptToFile, loadPrivateKey, SmtDecryptError } from '../../lambdas/core/smt/pgp/decrypt.ts';
import type { SmtDay } from '../../lambdas/core/smt/model.ts';
import { parseSmtAll } from '../../lambdas/core/smt/parse/parse.ts';
import { daysOf } from '../../lambdas/core/smt/process.ts';
import { createGpgKeyring, disposeSmtFile, writeSmtFile, type GpgKeyring, type SmtFile } from '../../local/smt-files.ts';

const SPEC = {
  esiids: ['10443720004766435', '1008901023808105290100'],
  days: ['2025-11-02', '2025-03-09', '2025-11-03'],
  revision: '11/04/2025 06:00:00',
  channels: ['Consumption', 'Surplus Generation'] as Array<'Consumption' | 'Surplus Generation'>,
};

const summary = (days: SmtDay[]) =>
  days.flatMap((d) =>
    d.readings.map((r) => `${r.meterId} ${r.channel} ${r.start.toISOString()} ${r.end.toISOString()} ${r.value} ${r.quality} ${r.revision}`),
  );

for (const algorithm of ['rsa', 'cv25519'] as const) {
  describe(`GnuPG ${algorithm} files`, () => {
    let work: string;
    let keyring: GpgKeyring;
    let key: PrivateKey;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'mb-smt-dec-'));
      keyring = await createGpgKeyring(algorithm);
      key = await loadPrivateKey({ armoredKey: keyring.armoredPrivateKey, passphrase: keyring.passphrase });
    });
    after(async () => {
      await keyring.dispose();
      await rm(work, { recursive: true, force: true });
    });

    for (const variant of [
      { armor: true, compress: true, zip: false },
      { armor: true, compress: false, zip: false },
      { armor: false, compress: true, zip: true },
      { armor: true, compress: false, zip: true },
    ]) {
      it(`decrypts ${variant.armor ? 'armored' : 'binary'}, ${variant.compress ? 'compressed' : 'uncompressed'}${variant.zip ? ', ZIP inside' : ''}, to the clear CSV's readings`, async () => {
        let file: SmtFile | undefined;
        try {
          file = await writeSmtFile({ dir: work, keyring, ...SPEC, ...variant });
          const clearPath = join(work, `${file.name}.clear`);
          const report = await decryptToFile(createReadStream(file.path), clearPath, { keys: [key], maxClearBytes: 10_000_000 });
          assert.equal(report.kind, variant.armor ? 'pgp-armored' : 'pgp-binary');
          const decrypted: SmtDay[] = [];
          for await (const batch of daysOf(clearPath, { originId: 'x' }, 10_000_000)) decrypted.push(...batch);
          const clear = await parseSmtAll(createReadStream(file.csvPath), { originId: 'x' });
          assert.equal(decrypted.length, 12);
          assert.deepEqual(summary(decrypted), summary(clear));
          assert.deepEqual(decrypted.map((d) => d.readings.length).sort(), [100, 100, 100, 100, 92, 92, 92, 92, 96, 96, 96, 96].sort());
        } finally {
          if (file) await disposeSmtFile(file);
        }
      });
    }

    it('refuses clear content beyond the cap and removes the partial file', async () => {
      const file = await writeSmtFile({ dir: work, keyring, ...SPEC, compress: true });
      const clearPath = join(work, 'capped.clear');
      await assert.rejects(
        decryptToFile(createReadStream(file.path), clearPath, { keys: [key], maxClearBytes: 10_000 }),
        (e: unknown) => e instanceof SmtDecryptError && e.reason === 'too-large',
      );
      assert.equal(existsSync(clearPath), false);
      await disposeSmtFile(file);
    });

    it('refuses a ZIP that inflates beyond the cap', async () => {
      const file = await writeSmtFile({ dir: work, keyring, ...SPEC, zip: true });
      const clearPath = join(work, 'zip.clear');
      await decryptToFile(createReadStream(file.path), clearPath, { keys: [key], maxClearBytes: 10_000_000 });
      await assert.rejects(async () => {
        for await (const _ of daysOf(clearPath, { originId: 'x' }, 50_000)) void _;
      }, /uncompressed; the limit is 50000/);
      await disposeSmtFile(file);
    });

    it('refuses clear input unless allowed (the Lambda only accepts PGP)', async () => {
      const file = await writeSmtFile({ dir: work, ...SPEC });
      await assert.rejects(
        decryptToFile(createReadStream(file.path), join(work, 'c'), { keys: [key], maxClearBytes: 1e7 }),
        (e: unknown) => e instanceof SmtDecryptError && e.reason === 'not-pgp',
      );
      const allowed = await decryptToFile(createReadStream(file.path), join(work, 'c'), { keys: [key], maxClearBytes: 1e7, allowClear: true });
      assert.equal(allowed.kind, 'clear');
      await disposeSmtFile(file);
    });
  });
}

describe('PGP key loading', () => {
  it('says clearly when the passphrase is wrong', async () => {
    const keyring = await createGpgKeyring('cv25519');
    try {
      await assert.rejects(loadPrivateKey({ armoredKey: keyring.armoredPrivateKey, passphrase: 'wrong' }), /could not be unlocked/);
      await assert.rejects(loadPrivateKey({ armoredKey: keyring.armoredPrivateKey }), /is protected and no passphrase was given/);
      await assert.rejects(loadPrivateKey({ armoredKey: 'nonsense' }), /could not be read/);
    } finally {
      await keyring.dispose();
    }
  });
});
