/**
 * Fuzzing the PGP decryptor with mutated real GnuPG files (binary and armored, compressed and not;
 * one keyring, made once). Each case changes 1-3 bytes (biased towards the packet headers and the
 * encrypted prefix, where openpgp has hung) or truncates the file. Invariants: every case settles
 * (a hang fails the target: the watchdog's stall bound is short here); a mutated file is either
 * refused with a typed SmtDecryptError and a reason, leaving no clear file, or yields exactly the
 * original plaintext.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import type { PrivateKey } from 'openpgp';
import { decryptToFile, loadPrivateKey, SmtDecryptError } from '../../lambdas/core/smt/pgp/decrypt.ts';
import { createGpgKeyring, writeSmtFile, type GpgKeyring } from '../../local/smt-files.ts';
import { encryptedDataOffset } from '../support/smt-mutations.ts';
import { fc, fuzz } from './support.ts';

const REASONS = new Set(['not-pgp', 'wrong-key', 'integrity', 'corrupt', 'too-large']);
/** Decryption is slower than parsing (and a stalled case waits out its 2 s bound): a quarter of the cases of the parser targets. */
const RUNS = Math.max(100, Math.round(Number(process.env.FUZZ_RUNS ?? 2000) / 4));

let keyring: GpgKeyring;
let key: PrivateKey;
let work: string;
const files: Array<{ bytes: Buffer; clear: Buffer; prefixAt: number }> = [];

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'mb-fuzz-decrypt-'));
  keyring = await createGpgKeyring('cv25519');
  key = await loadPrivateKey({ armoredKey: keyring.armoredPrivateKey, passphrase: keyring.passphrase });
  for (const variant of [
    { armor: false, compress: true },
    { armor: false, compress: false },
    { armor: true, compress: true },
  ]) {
    const file = await writeSmtFile({
      dir: work,
      keyring,
      esiids: ['10443720004766435'],
      days: ['2025-11-03'],
      revision: '11/04/2025 06:00:00',
      ...variant,
    });
    const bytes = await readFile(file.path);
    files.push({ bytes, clear: await readFile(file.csvPath), prefixAt: variant.armor ? 0 : encryptedDataOffset(bytes) });
  }
});

after(async () => {
  await keyring?.dispose();
  await rm(work, { recursive: true, force: true });
});

/** Where a change lands: anywhere, the first 160 bytes (PKESK and packet headers), or the 48 bytes from the encrypted data packet on (the flips on which openpgp has hung). */
const change = fc.record({
  region: fc.constantFrom('anywhere', 'head', 'prefix'),
  at: fc.nat(),
  xor: fc.oneof(fc.constantFrom(1, 2, 4, 8, 16, 32, 64, 128), fc.integer({ min: 1, max: 255 })),
});

it('fuzz: SMT decrypt of mutated GnuPG files', { timeout: 3_600_000 }, async (t) => {
  let n = 0;
  let stalls = 0;
  await fuzz({
    name: 'smt-decrypt',
    runs: RUNS,
    deadlineMs: 20_000,
    arbitrary: fc.record({
      file: fc.nat({ max: 2 }),
      changes: fc.array(change, { minLength: 1, maxLength: 3 }),
      truncate: fc.option(fc.nat(), { freq: 8 }),
    }),
    async check({ file, changes, truncate }) {
      const { bytes, clear, prefixAt } = files[file]!;
      let mutated = Buffer.from(bytes);
      for (const { region, at, xor } of changes) {
        const position = region === 'anywhere' ? at % mutated.length : region === 'head' ? at % 160 : prefixAt + (at % 48);
        mutated[position] = mutated[position]! ^ xor;
      }
      if (truncate !== null) mutated = mutated.subarray(0, truncate % mutated.length);
      const out = join(work, `clear-${++n}`);
      try {
        await decryptToFile(
          (async function* () {
            yield mutated;
          })(),
          out,
          { keys: [key], maxClearBytes: 10_000_000, stallMs: 2000 },
        );
      } catch (error) {
        if (!(error instanceof SmtDecryptError)) throw error;
        if (/stalled/.test(error.message)) stalls += 1;
        assert.ok(REASONS.has(error.reason), `untyped reason ${error.reason}`);
        assert.ok(error.message.length > 0, 'a refusal without a reason');
        assert.equal(existsSync(out), false, 'a refused file left its clear content behind');
        return { outcome: 'refused' };
      }
      const plaintext = await readFile(out);
      await rm(out, { force: true });
      if (!plaintext.equals(clear))
        return { outcome: 'accepted', wronglyAccepted: `decrypted to ${plaintext.length} bytes that differ from the original ${clear.length}` };
      return { outcome: 'accepted' };
    },
  });
  // Shown with the figures: how many cases made openpgp hang (each refused by the watchdog).
  t.diagnostic(`smt-decrypt: ${stalls} case(s) stalled and were refused as corrupt`);
});
