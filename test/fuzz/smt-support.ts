/**
 * Shared by the SMT fuzz targets: mutations of a valid file, the parse of one input under any
 * chunking, and the invariants every outcome must meet.
 */
import assert from 'node:assert/strict';
import { validateReading } from '../../shared/reading.ts';
import { SmtLayoutError, type SmtDay } from '../../lambdas/core/smt/model.ts';
import { parseSmtAll } from '../../lambdas/core/smt/parse/parse.ts';
import { fc, type Verdict } from './support.ts';

/** Judged against a fixed clock, so a case means the same on every run. */
export const NOW = new Date('2026-11-30T12:00:00Z');

/** Texts that have broken parsers before (or should not): numbers, dates, quotes, separators. */
export const HOSTILE_TOKENS = [
  '',
  ' ',
  '"',
  '""',
  '" "',
  "'",
  ',',
  ',,',
  '\n',
  '\r\n',
  '\r',
  '0',
  '-0',
  '0x10',
  '0b101',
  '+7',
  '5.',
  '.5',
  '1e308',
  '-1e308',
  '1e16',
  'Infinity',
  'NaN',
  '02/31/2025',
  '12/31/9999 23:59:59',
  '11/03/0099',
  '00991103000000',
  '20250231000000',
  '99991231000000',
  '24:00',
  '25:00',
  '00:60',
  'A',
  'E',
  'Q',
  'Consumption',
  'Surplus Generation',
  '00000001',
  '00000002',
  '00000004',
  '10000001',
  '\uFEFF',
  '\u00e9',
  '\uD83D\uDE00',
  '\u0000',
  'x'.repeat(300),
];

export type Mutation =
  | { kind: 'byte'; at: number; byte: number }
  | { kind: 'token'; at: number; token: string }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'duplicate-line'; line: number }
  | { kind: 'swap-lines'; a: number; b: number }
  | { kind: 'replace-field'; line: number; field: number; token: string };

export const mutationArbitrary: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant('byte' as const),
    at: fc.nat(),
    byte: fc.oneof(fc.constantFrom(...Buffer.from(',:/.-e"\' \r\n0123456789AEx')), fc.integer({ min: 0, max: 255 })),
  }),
  fc.record({ kind: fc.constant('token' as const), at: fc.nat(), token: fc.constantFrom(...HOSTILE_TOKENS) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 200 }) }),
  fc.record({ kind: fc.constant('duplicate-line' as const), line: fc.nat() }),
  fc.record({ kind: fc.constant('swap-lines' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant('replace-field' as const), line: fc.nat(), field: fc.nat({ max: 30 }), token: fc.constantFrom(...HOSTILE_TOKENS) }),
);

export function applyMutation(text: Buffer, mutation: Mutation): Buffer {
  switch (mutation.kind) {
    case 'byte': {
      const copy = Buffer.from(text);
      if (copy.length > 0) copy[mutation.at % copy.length] = mutation.byte;
      return copy;
    }
    case 'token': {
      const at = mutation.at % (text.length + 1);
      return Buffer.concat([text.subarray(0, at), Buffer.from(mutation.token), text.subarray(at)]);
    }
    case 'delete': {
      const at = mutation.at % (text.length + 1);
      return Buffer.concat([text.subarray(0, at), text.subarray(at + mutation.length)]);
    }
    default: {
      const lines = text.toString('latin1').split('\n');
      if (mutation.kind === 'duplicate-line') {
        const i = mutation.line % lines.length;
        lines.splice(i, 0, lines[i]!);
      } else if (mutation.kind === 'swap-lines') {
        const a = mutation.a % lines.length;
        const b = mutation.b % lines.length;
        [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      } else {
        const i = mutation.line % lines.length;
        const fields = lines[i]!.split(',');
        fields[mutation.field % fields.length] = Buffer.from(mutation.token).toString('latin1');
        lines[i] = fields.join(',');
      }
      return Buffer.from(lines.join('\n'), 'latin1');
    }
  }
}

/** Chunk sizes to cut an input into (cycled), or one chunk. */
export const chunkingArbitrary = fc.oneof(fc.constant([] as number[]), fc.array(fc.integer({ min: 1, max: 4096 }), { minLength: 1, maxLength: 8 }));

function chunked(bytes: Buffer, sizes: number[]): Buffer[] {
  if (sizes.length === 0) return [bytes];
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length]!;
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

/** The parse of `bytes` in these chunks: days, or the layout error it was refused with. Anything else thrown is a crash. */
async function parseOnce(bytes: Buffer, sizes: number[]): Promise<{ days: SmtDay[] } | { refused: string }> {
  const chunks = chunked(bytes, sizes);
  try {
    return {
      days: await parseSmtAll(
        (async function* () {
          yield* chunks;
        })(),
        { originId: 'fuzz', now: NOW },
      ),
    };
  } catch (error) {
    if (error instanceof SmtLayoutError) return { refused: error.message };
    throw error;
  }
}

function fingerprint(result: { days: SmtDay[] } | { refused: string }): string {
  if ('refused' in result) return `refused: ${result.refused}`;
  return JSON.stringify(result.days.map((d) => [d.meterId, d.channel, d.date, d.layout, d.missing, d.unknownStatuses, d.readings]));
}

/**
 * The invariants of one SMT input: the same outcome whole and in the given chunks; a refusal is a
 * typed SmtLayoutError with a reason; every reading accepted passes the reading model.
 */
export async function checkSmtInput(bytes: Buffer, sizes: number[]): Promise<Verdict> {
  const whole = await parseOnce(bytes, []);
  const pieces = await parseOnce(bytes, sizes.length > 0 ? sizes : [1 + (bytes.length % 97)]);
  assert.equal(fingerprint(pieces), fingerprint(whole), 'the outcome depends on chunking');
  if ('refused' in whole) {
    assert.ok(whole.refused.trim().length > 0, 'a refusal without a reason');
    return { outcome: 'refused' };
  }
  for (const day of whole.days) {
    for (const reading of day.readings) {
      const result = validateReading(reading, { now: NOW });
      if (!result.ok)
        return { outcome: 'accepted', wronglyAccepted: `${day.meterId} ${day.date} ${reading.start.toISOString()}: ${result.reasons.join('; ')}` };
      if (reading.revision * 1000 > NOW.getTime() + 3_600_000)
        return { outcome: 'accepted', wronglyAccepted: `revision ${reading.revision} in the future` };
    }
  }
  return { outcome: 'accepted' };
}
