import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { iteratedSaltedS2k, useStreamingS2k } from '../../lambdas/core/smt/pgp/s2k.ts';

/** RFC 9580 §3.7.1.3 spelled out: the whole iterated input built in memory (small counts only). */
function reference(hash: string, salt: Uint8Array, passphrase: string, count: number, numBytes: number): Buffer {
  const data = Buffer.concat([salt, Buffer.from(passphrase, 'utf8')]);
  const total = Math.max(count, data.length);
  const repeated = Buffer.alloc(total);
  for (let at = 0; at < total; at += data.length) data.copy(repeated, at, 0, Math.min(data.length, total - at));
  const out: Buffer[] = [];
  for (let round = 0; Buffer.concat(out).length < numBytes; round++) out.push(createHash(hash).update(Buffer.alloc(round)).update(repeated).digest());
  return Buffer.concat(out).subarray(0, numBytes);
}

describe('iterated and salted S2K, streamed', () => {
  const salt = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);

  it('equals the in-memory construction for counts around its block size, several rounds and odd passphrase lengths', () => {
    for (const count of [1, 17, 1024, 65_535, 65_536, 65_537, 200_003, 3_014_656]) {
      for (const [hash, numBytes] of [
        ['sha1', 16],
        ['sha1', 32],
        ['sha256', 32],
        ['sha512', 64],
        ['sha256', 70],
      ] as const) {
        for (const passphrase of ['', 'x', 'correct horse battery staple', 'pässwörd ✓']) {
          assert.deepEqual(
            iteratedSaltedS2k(hash, salt, passphrase, count, numBytes),
            reference(hash, salt, passphrase, count, numBytes),
            `${hash} ${count} ${numBytes} ${JSON.stringify(passphrase)}`,
          );
        }
      }
    }
  });

  it('unlocks a key openpgp protected, with the same result as openpgp itself', async () => {
    const { privateKey } = await openpgp.generateKey({
      type: 'ecc',
      curve: 'curve25519Legacy',
      userIDs: [{ name: 'meterbridge test' }],
      passphrase: 'sesame',
      format: 'object',
      config: { s2kIterationCountByte: 0xc0 },
    });
    const armored = privateKey.armor();
    const ours = await openpgp.readPrivateKey({ armoredKey: armored });
    const s2k = (ours.keyPacket as unknown as { s2k: { type: string; produceKey: (...args: unknown[]) => Promise<Uint8Array> } }).s2k;
    assert.equal(s2k.type, 'iterated');
    useStreamingS2k(ours);
    const streaming = s2k.produceKey;
    let calls = 0;
    s2k.produceKey = (...args: unknown[]) => {
      calls += 1;
      return streaming(...args);
    };
    const unlockedOurs = await openpgp.decryptKey({ privateKey: ours, passphrase: 'sesame' });
    const unlockedTheirs = await openpgp.decryptKey({ privateKey: await openpgp.readPrivateKey({ armoredKey: armored }), passphrase: 'sesame' });
    assert.ok(calls > 0, 'openpgp derived the key through the streaming S2K');
    assert.equal(unlockedOurs.armor(), unlockedTheirs.armor());
    await assert.rejects(openpgp.decryptKey({ privateKey: ours, passphrase: 'wrong' }), /passphrase/i);
  });
});
