/**
 * Fuzzing the SMT LSE parser: valid files (one or two cuts, both channels, an ordinary and a
 * fall-back day, a 00000004 time stamp) with 1-4 mutations, fed whole and in random chunks. The
 * same invariants as the interval CSV (see smt-support.ts).
 */
import { it } from 'node:test';
import { fc, fuzz } from './support.ts';
import { applyMutation, checkSmtInput, chunkingArbitrary, mutationArbitrary } from './smt-support.ts';

function cut(esiid: string, channel: string, day: string, intervals: number, stamp: string): string {
  const values = Array.from({ length: intervals }, (_, i) => `${i % 9 === 0 ? '' : (i / 100).toFixed(3)},${i % 5 === 0 ? 'E' : 'A'},`);
  const records = Array.from({ length: Math.ceil(intervals / 8) }, (_, i) => `${10000001 + i},${values.slice(i * 8, i * 8 + 8).join(',')}`);
  return [
    `00000001,${esiid},${channel},${day}000000,${day}235959,Y,N`,
    '00000002,0,0,1,0,1,0,900,KWH,,CST,,',
    '00000003,fuzz cut',
    `00000004,${stamp},SMT`,
    ...records,
  ].join('\n');
}

const BASES = [
  cut('10443720004766435', '4', '20251103', 96, '20251104061500'),
  `${cut('1008901023808105290100', '4', '20251102', 100, '20251103061500')}\r\n${cut('1008901023808105290100', '1', '20251102', 100, '20251103061500')}\n`,
].map((text) => Buffer.from(text));

it('fuzz: SMT LSE', { timeout: 3_600_000 }, async () => {
  await fuzz({
    name: 'smt-lse',
    arbitrary: fc.record({
      base: fc.nat({ max: BASES.length - 1 }),
      mutations: fc.array(mutationArbitrary, { minLength: 0, maxLength: 4 }),
      sizes: chunkingArbitrary,
    }),
    check: ({ base, mutations, sizes }) => checkSmtInput(mutations.reduce(applyMutation, BASES[base]!), sizes),
  });
});
