/**
 * The native ASCII-armor decoder (lambdas/core/smt/armor.ts): round trips against armor written
 * by GnuPG and by openpgp.js, fed in random chunk sizes down to 1 byte, and every refusal.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { ArmorError, dearmor } from '../../lambdas/core/smt/pgp/armor.ts';
import { decryptToFile, SmtDecryptError } from '../../lambdas/core/smt/pgp/decrypt.ts';

/** Deterministic pseudo-random chunk sizes, so that a failure can be replayed. */
function sizes(seed: number, max: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return 1 + ((state >>> 0) % max);
  };
}

async function* chunked(input: Buffer, next: () => number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < input.length;) {
    const size = next();
    // Plain Uint8Array views too, not only Buffers: S3 bodies are web streams.
    yield new Uint8Array(input.buffer, input.byteOffset + at, Math.min(size, input.length - at));
    at += size;
  }
}

/** Decodes handing on every chunk's output at once (outputBytes 1) unless told otherwise. */
async function decode(input: Buffer | string, maxChunk = 1 << 20, seed = 7, outputBytes = 1): Promise<Buffer> {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const out: Buffer[] = [];
  for await (const part of dearmor(chunked(bytes, sizes(seed, maxChunk)), { outputBytes })) out.push(part);
  return Buffer.concat(out);
}

function armorOf(data: Uint8Array, checksum = false): string {
  return openpgp.armor(openpgp.enums.armor.message, data, undefined, undefined, undefined, checksum);
}

/** Re-wraps an armored message's body to `width` characters per line. */
function rewrap(armored: string, width: number, eol = '\n'): string {
  const [head, rest] = armored.split(/\r?\n\r?\n/, 2) as [string, string];
  const lines = rest.split(/\r?\n/);
  const end = lines.findIndex((l) => l.startsWith('=') || l.startsWith('-'));
  const body = lines.slice(0, end).join('');
  const wrapped = body.match(new RegExp(`.{1,${width}}`, 'g')) ?? [];
  return [...head.split(/\r?\n/), '', ...wrapped, ...lines.slice(end)].join(eol);
}

async function refused(input: Buffer | string, message: RegExp, maxChunk = 1 << 20): Promise<void> {
  await assert.rejects(decode(input, maxChunk), (error: unknown) => {
    assert.ok(error instanceof ArmorError, `an ArmorError, got ${String(error)}`);
    assert.match(error.message, message);
    return true;
  });
}

/** Sizes around the points where lines, base64 quanta and decode slices break. */
const PAYLOAD_SIZES = [0, 1, 2, 3, 4, 47, 48, 49, 56, 57, 58, 3071, 3072, 3073, 24575, 24576, 24577, 49151, 49152, 49153, 200_000];

describe('ASCII armor decoder: round trips', () => {
  let gnupgHome = '';
  before(() => {
    gnupgHome = mkdtempSync(join(tmpdir(), 'mb-armor-gnupg-'));
  });
  after(() => rmSync(gnupgHome, { recursive: true, force: true }));

  /** GnuPG's own armor (64-character lines, CRC24 line) and its own dearmor as the expected bytes. */
  function gpgArmored(payload: Buffer): { armored: Buffer; binary: Buffer } {
    const gpg = (args: string[], input: Buffer): Buffer =>
      execFileSync('gpg', ['--homedir', gnupgHome, '--batch', '--quiet', ...args], { input, maxBuffer: 1 << 26 });
    const armored = gpg(['--armor', '--compress-algo', 'none', '--store'], payload);
    return { armored, binary: gpg(['--dearmor'], armored) };
  }

  it('decodes what gpg --armor writes, in random chunks down to 1 byte', async () => {
    for (const [i, size] of [5, 48, 3072, 24576, 100_000, 1_000_003].entries()) {
      const { armored, binary } = gpgArmored(randomBytes(size));
      if (size > 100) assert.match(armored.toString('latin1'), /^-----BEGIN PGP MESSAGE-----\n\n[A-Za-z0-9+/]{64}\n/);
      assert.deepEqual(await decode(armored), binary, `${size} bytes, one chunk`);
      assert.deepEqual(await decode(armored, size > 50_000 ? 5000 : 3, i + 1), binary, `${size} bytes, small chunks`);
      assert.deepEqual(await decode(armored, 70_000, i + 11, 64 * 1024), binary, `${size} bytes, output gathered into 64 KiB`);
    }
  });

  it('decodes what openpgp.armor writes (76-character lines), with and without a checksum, every size near a boundary', async () => {
    for (const [i, size] of PAYLOAD_SIZES.entries()) {
      const payload = randomBytes(size);
      for (const checksum of [false, true]) {
        const armored = armorOf(payload, checksum);
        assert.deepEqual(await decode(armored), payload, `${size} bytes`);
        assert.deepEqual(await decode(armored, size > 10_000 ? 997 : 1, i), payload, `${size} bytes, small chunks`);
      }
    }
  });

  it('decodes 1-byte chunks of a whole message', async () => {
    const payload = randomBytes(3000);
    assert.deepEqual(await decode(armorOf(payload, true), 1), payload);
  });

  it('accepts any line length, CRLF, trailing whitespace, headers, a BOM and leading blank lines', async () => {
    const payload = randomBytes(5000);
    const armored = armorOf(payload, true);
    for (const width of [1, 2, 3, 5, 63, 64, 65, 76, 100, 4096, 100_000]) {
      assert.deepEqual(await decode(rewrap(armored, width), 7, width), payload, `width ${width}`);
      assert.deepEqual(await decode(rewrap(armored, width, '\r\n'), 11, width), payload, `width ${width}, CRLF`);
    }
    const fancy = armored
      .replace(
        '-----BEGIN PGP MESSAGE-----\n',
        '\uFEFF\n  \n-----BEGIN PGP MESSAGE----- \nVersion: GnuPG v2\nComment: https://example.com/x: y\nHash: SHA256\nCharset: UTF-8\n',
      )
      .replace(/\n/g, ' \t\r\n');
    assert.deepEqual(await decode(Buffer.from(fancy, 'utf8'), 5), payload, 'UTF-8 BOM, headers, trailing blanks, CRLF');
    assert.deepEqual(await decode(Buffer.from(fancy, 'utf8')), payload);
  });

  it('accepts padding split across lines, and blank lines before the END line', async () => {
    const payload = Buffer.from('abcd'); // "YWJjZA==": two padding characters
    for (const text of [
      '-----BEGIN PGP MESSAGE-----\n\nYWJj\nZA=\n=\n-----END PGP MESSAGE-----\n',
      '-----BEGIN PGP MESSAGE-----\n\nYWJjZA\n==\n=AAAA\n\n-----END PGP MESSAGE-----',
      '-----BEGIN PGP MESSAGE-----\n\nYWJjZA\n\n-----END PGP MESSAGE-----\n',
    ]) {
      for (const chunk of [1, 2, 1000]) assert.deepEqual(await decode(text, chunk), payload, text);
    }
  });

  it('counts characters exactly when lines of one width differ in trailing whitespace', async () => {
    // Same byte width per line (65) but 64 or 63 base64 characters: the layout guess must not miscount.
    const payload = randomBytes(40_000);
    const base64 = payload.toString('base64').replace(/=+$/, '');
    const lines: string[] = [];
    let at = 0;
    for (let i = 0; at < base64.length; i++) {
      const take = i % 3 === 2 ? 63 : 64;
      const part = base64.slice(at, at + take);
      lines.push(part.length === 63 && take === 63 ? `${part} ` : part);
      at += take;
    }
    const padding = '='.repeat((4 - (base64.length % 4)) % 4);
    const text = `-----BEGIN PGP MESSAGE-----\n\n${lines.join('\n')}${padding}\n-----END PGP MESSAGE-----\n`;
    assert.deepEqual(await decode(text), payload);
    assert.deepEqual(await decode(text, 4000, 3), payload);
  });
});

describe('ASCII armor decoder: refusals', () => {
  const good = armorOf(randomBytes(2000), true);
  const bodyLine = good.split('\n')[3]!;

  it('refuses input without a BEGIN line', async () => {
    await refused('', /input is empty/);
    await refused('\n \n', /no "-----BEGIN PGP MESSAGE-----" line/);
    await refused('ESIID,USAGE_DATE\n1,2\n', /no "-----BEGIN PGP MESSAGE-----" line: the first line is "ESIID,USAGE_DATE"/);
    await refused('x'.repeat(100_000), /no "-----BEGIN PGP MESSAGE-----" line in the first 65536 bytes/);
  });

  it('refuses other armor types', async () => {
    await refused(good.replace(/PGP MESSAGE/g, 'PGP PRIVATE KEY BLOCK'), /"PGP PRIVATE KEY BLOCK" block, not an encrypted "PGP MESSAGE"/);
    await refused('-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhello\n', /"PGP SIGNED MESSAGE" block/);
    await refused(good.replace(/PGP MESSAGE/g, 'PGP MESSAGE, PART 1/2'), /multi-part/);
    await refused(good.replace('-----END PGP MESSAGE-----', '-----END PGP SIGNATURE-----'), /END line "-----END PGP SIGNATURE-----" does not match/);
  });

  it('refuses malformed headers and a body without the blank line', async () => {
    await refused(good.replace('-----\n\n', '-----\nnot a header\n\n'), /malformed armor header "not a header"/);
    await refused(good.replace('-----\n\n', '-----\n'), /malformed armor header/);
  });

  it('refuses characters outside base64 in the body, wherever the chunks break', async () => {
    const at = good.indexOf(bodyLine) + 10;
    for (const bad of ['*', '_', '-', ' ', '\u00ff', '\u0000', '.', ':']) {
      const text = `${good.slice(0, at)}${bad}${good.slice(at + 1)}`;
      for (const chunk of [1, 3, 1 << 20]) await refused(text, /character outside base64/, chunk);
    }
    await refused(`${good.slice(0, at)}\r${good.slice(at + 1)}`, /character outside base64: byte 0x0d/);
    // Where: the byte offset, so that an operator can look at it.
    await refused(`${good.slice(0, at)}*${good.slice(at + 1)}`, new RegExp(`'\\*' at byte ${at}$`));
  });

  it('refuses a truncated file (no END line)', async () => {
    const end = good.indexOf('-----END');
    for (const cut of [good.indexOf(bodyLine) + 5, good.indexOf('\n=') + 1, good.indexOf('\n=') + 3, end]) {
      for (const chunk of [1, 1 << 20]) await refused(good.slice(0, cut), /truncated: no "-----END PGP MESSAGE-----" line/, chunk);
    }
    await refused(good.slice(0, end + 10), /truncated: it ends in its "-----END PGP MESSAGE-----" line/);
    await refused(good.slice(0, good.indexOf('\n\n') + 1), /truncated: it ends in its headers/);
  });

  it('refuses data after the padding, stray padding, a lone character and data after the END line', async () => {
    const head = '-----BEGIN PGP MESSAGE-----\n\n';
    const tail = '\n-----END PGP MESSAGE-----\n';
    for (const chunk of [1, 1 << 20]) {
      await refused(`${head}YWJjZA==YWJj${tail}`, /data after the '=' padding: "==YWJj"/, chunk);
      await refused(`${head}YWJjZA==\nYWJj${tail}`, /data after the '=' padding: "YWJj"/, chunk);
      await refused(`${head}YWJjZA=\n=\nYWJj${tail}`, /data after the '=' padding/, chunk);
      await refused(`${head}YWJj=${tail}`, /'=' padding where the base64 data needs none/, chunk);
      await refused(`${head}YWJjZA===${tail}`, /too much '=' padding/, chunk);
      await refused(`${head}YWJjZ==${tail}`, /lone character/, chunk);
      await refused(`${head}YWJjZA==\n=AAAA\n=BBBB${tail}`, /second armor checksum line/, chunk);
      await refused(`${good}garbage\n`, /data after the "-----END PGP MESSAGE-----" line: "garbage"/, chunk);
      await refused(`${good}${good}`, /data after the "-----END PGP MESSAGE-----" line/, chunk);
    }
    await refused(`${head}YWJj\n-- not the end\n`, /expected the "-----END PGP MESSAGE-----" line/);
  });
});

describe('decryptToFile on armored input', () => {
  let dir = '';
  let key: openpgp.PrivateKey;
  let armored = '';
  const clear = randomBytes(300_000);
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mb-armor-decrypt-'));
    const generated = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'test' }], format: 'object' });
    key = generated.privateKey;
    const message = await openpgp.createMessage({ binary: clear });
    armored = (await openpgp.encrypt({
      message,
      encryptionKeys: generated.publicKey,
      format: 'armored',
      config: { preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed },
    })) as string;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function run(text: string): Promise<Buffer> {
    const out = join(dir, 'clear');
    await decryptToFile(chunked(Buffer.from(text, 'latin1'), sizes(5, 4096)), out, { keys: [key], maxClearBytes: 1e9 });
    const { readFileSync } = await import('node:fs');
    return readFileSync(out);
  }

  async function failsAs(text: string, reason: string, message: RegExp): Promise<void> {
    const out = join(dir, 'clear');
    await assert.rejects(
      decryptToFile(chunked(Buffer.from(text, 'latin1'), sizes(5, 4096)), out, { keys: [key], maxClearBytes: 1e9 }),
      (error: unknown) => {
        assert.ok(error instanceof SmtDecryptError, String(error));
        assert.equal(error.reason, reason, error.message);
        assert.match(error.message, message);
        return true;
      },
    );
    assert.equal(existsSync(out), false, 'the partial file is removed');
  }

  it('decrypts through the native decoder', async () => {
    assert.deepEqual(await run(armored), clear);
    assert.deepEqual(await run(rewrap(armored, 64, '\r\n')), clear);
  });

  it('decrypts the same message in binary, gathered from small chunks', async () => {
    const binary = await decode(armored);
    assert.equal(binary[0]! & 0x80, 0x80, 'an OpenPGP packet');
    assert.deepEqual(await run(binary.toString('latin1')), clear);
  });

  it('reports malformed armor as corrupt, a changed base64 letter as integrity, and removes the partial file', async () => {
    const lines = armored.split('\n');
    const middle = Math.floor(lines.length / 2);
    const swap = (c: string): string => (c === 'Q' ? 'R' : 'Q');
    const tampered = lines.map((l, i) => (i === middle ? `${l.slice(0, 10)}${swap(l[10]!)}${l.slice(11)}` : l)).join('\n');
    await failsAs(tampered, 'integrity', /Modification detected/);
    const badChar = lines.map((l, i) => (i === middle ? `${l.slice(0, 10)}*${l.slice(11)}` : l)).join('\n');
    await failsAs(badChar, 'corrupt', /character outside base64/);
    await failsAs(lines.slice(0, middle).join('\n'), 'corrupt', /truncated/);
    await failsAs(lines.slice(0, 3).join('\n'), 'corrupt', /truncated/);
  });
});
