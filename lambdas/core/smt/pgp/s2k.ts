/**
 * The iterated and salted S2K (RFC 9580 §3.7.1.3) that unlocks a passphrase-protected PGP key,
 * computed as a stream.
 *
 * Why: openpgp builds the whole iterated input in memory before hashing it, and GnuPG calibrates
 * the count to ~100 ms of hashing: tens of MB (65 MB for the keys GnuPG makes on this machine).
 * That one allocation was the process step's peak RSS, and glibc keeps much of it afterwards.
 * Streamed through Node's hash the same digest needs a 64 KiB block.
 */
import { createHash } from 'node:crypto';
import type * as openpgp from 'openpgp';

/** OpenPGP hash algorithm ids (RFC 9580 §9.5) -> Node digest names. */
const NODE_HASHES: Readonly<Record<number, string>> = {
  1: 'md5',
  2: 'sha1',
  3: 'ripemd160',
  8: 'sha256',
  9: 'sha384',
  10: 'sha512',
  11: 'sha224',
  12: 'sha3-256',
  14: 'sha3-512',
};

/**
 * `numBytes` of key derived from `passphrase`: round r hashes r zero octets, then `count` octets of
 * salt+passphrase repeated (the whole of it at least once), and the rounds' digests are
 * concatenated.
 */
export function iteratedSaltedS2k(hashAlgorithm: string, salt: Uint8Array, passphrase: string, count: number, numBytes: number): Buffer {
  const data = Buffer.concat([salt, Buffer.from(passphrase, 'utf8')]);
  const total = Math.max(count, data.length);
  // A whole number of repetitions, so consecutive blocks continue the sequence.
  const block = Buffer.alloc(data.length * Math.max(1, Math.floor(65_536 / data.length)));
  for (let at = 0; at < block.length; at += data.length) data.copy(block, at);
  const digests: Buffer[] = [];
  for (let round = 0, produced = 0; produced < numBytes; round++) {
    const hash = createHash(hashAlgorithm);
    hash.update(Buffer.alloc(round));
    let left = total;
    for (; left >= block.length; left -= block.length) hash.update(block);
    hash.update(block.subarray(0, left));
    const digest = hash.digest();
    digests.push(digest);
    produced += digest.length;
  }
  return Buffer.concat(digests).subarray(0, numBytes);
}

/** The fields of openpgp's S2K object this module reads (not in its public types). */
interface OpenpgpS2k {
  type: string;
  algorithm: number;
  salt: Uint8Array | null;
  getCount(): number;
  produceKey(passphrase: string, numBytes: number): Promise<Uint8Array>;
}

/**
 * Makes `key`'s secret packets derive their unlocking key with iteratedSaltedS2k instead of
 * openpgp's in-memory version. Other S2K types (simple, salted, argon2) keep openpgp's code.
 * The result is identical (test/unit/smt-s2k.test.ts checks it against openpgp's own).
 */
export function useStreamingS2k(key: openpgp.PrivateKey): void {
  for (const packet of [key.keyPacket, ...key.getSubkeys().map((subkey) => subkey.keyPacket)]) {
    // openpgp does not type `s2k` on its packets; it is set on every encrypted secret key packet.
    const s2k = (packet as unknown as { s2k?: OpenpgpS2k | null }).s2k;
    if (!s2k || s2k.type !== 'iterated' || !s2k.salt) continue;
    const hashName = NODE_HASHES[s2k.algorithm];
    if (!hashName) continue;
    const salt = s2k.salt;
    s2k.produceKey = async (passphrase: string, numBytes: number) => iteratedSaltedS2k(hashName, salt, passphrase, s2k.getCount(), numBytes);
  }
}
