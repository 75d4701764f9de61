/**
 * Fuzzing the ASCII armor decoder with mutated real GnuPG armor (LF and CRLF, a header line),
 * fed whole and in random chunks. Invariants: the same outcome for any chunking (refused, or the
 * same bytes); a refusal is an
 * ArmorError with a reason; what it accepts decodes to exactly what a plain reading of the body
 * gives (base64 lines between the headers' blank line and the checksum / END line).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { ArmorError, dearmor } from '../../lambdas/core/smt/pgp/armor.ts';
import { createGpgKeyring, writeSmtFile, type GpgKeyring } from '../../local/smt-files.ts';
import { applyMutation, chunkingArbitrary, mutationArbitrary } from './smt-support.ts';
import { fc, fuzz } from './support.ts';

let keyring: GpgKeyring;
let work: string;
const bases: Buffer[] = [];

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'mb-fuzz-armor-'));
  keyring = await createGpgKeyring('cv25519');
  const file = await writeSmtFile({
    dir: work,
    keyring,
    esiids: ['10443720004766435'],
    days: ['2025-11-03'],
    revision: '11/04/2025 06:00:00',
    armor: true,
    compress: true,
  });
  const text = (await readFile(file.path, 'latin1')).replace(/\r\n/g, '\n');
  bases.push(
    Buffer.from(text, 'latin1'),
    Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1'),
    Buffer.from(text.replace('-----\n', '-----\nComment: fuzz\n'), 'latin1'),
  );
});

after(async () => {
  await keyring?.dispose();
  await rm(work, { recursive: true, force: true });
});

async function decode(bytes: Buffer, sizes: number[]): Promise<{ bytes: Buffer } | { refused: string }> {
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes.length === 0 ? bytes.length : sizes[i % sizes.length]!;
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  const out: Buffer[] = [];
  try {
    for await (const part of dearmor(
      (async function* () {
        yield* chunks;
      })(),
      { outputBytes: 1 + (bytes.length % 700) },
    ))
      out.push(Buffer.from(part));
    return { bytes: Buffer.concat(out) };
  } catch (error) {
    if (error instanceof ArmorError) return { refused: error.message };
    throw error;
  }
}

/** The body as a plain reader sees it, or undefined when it is not plain base64 lines. */
function plainBody(text: string): Buffer | undefined {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  let i = lines.findIndex((line) => line.trim() === '-----BEGIN PGP MESSAGE-----');
  if (i < 0) return undefined;
  for (i++; i < lines.length && lines[i]!.trim() !== ''; i++);
  let body = '';
  for (i++; i < lines.length; i++) {
    const line = lines[i]!.replace(/[ \t\r]+$/, '');
    if (line.startsWith('=') || line.startsWith('-----END')) break;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(line)) return undefined;
    body += line;
  }
  return Buffer.from(body, 'base64');
}

it('fuzz: SMT ASCII armor', { timeout: 3_600_000 }, async () => {
  await fuzz({
    name: 'smt-armor',
    arbitrary: fc.record({
      base: fc.nat({ max: 2 }),
      mutations: fc.array(mutationArbitrary, { minLength: 0, maxLength: 3 }),
      sizes: chunkingArbitrary,
    }),
    async check({ base, mutations, sizes }) {
      const input = mutations.reduce(applyMutation, bases[base]!);
      const whole = await decode(input, []);
      const pieces = await decode(input, sizes.length > 0 ? sizes : [1 + (input.length % 61)]);
      // Refused in both, or the same bytes in both. The reason's wording may differ (a stray blank is
      // named by its byte when the line is whole, as "whitespace inside a line" when a chunk ends in it).
      assert.deepEqual(
        'refused' in pieces ? 'refused' : pieces.bytes,
        'refused' in whole ? 'refused' : whole.bytes,
        'the outcome depends on chunking',
      );
      if ('refused' in whole) {
        assert.ok(whole.refused.trim().length > 0, 'a refusal without a reason');
        return { outcome: 'refused' };
      }
      const expected = plainBody(input.toString('latin1'));
      if (expected === undefined) return { outcome: 'accepted', wronglyAccepted: 'accepted a body that is not plain base64 lines' };
      if (!expected.equals(whole.bytes))
        return { outcome: 'accepted', wronglyAccepted: `decoded ${whole.bytes.length} bytes, a plain reading gives ${expected.length}` };
      return { outcome: 'accepted' };
    },
  });
});
