/**
 * Fuzzing the SMT interval CSV parser: valid files (ordinary, fall-back and spring-forward days,
 * one or two channels) with 1-4 mutations, fed whole and in random chunks. Invariants: the same
 * outcome for any chunking; a refusal is an SmtLayoutError with a reason; no accepted reading
 * violates the reading model (validateReading) or carries a revision in the future.
 */
import { it } from 'node:test';
import { smtCsv } from '../../local/smt-files.ts';
import { fc, fuzz } from './support.ts';
import { applyMutation, checkSmtInput, chunkingArbitrary, mutationArbitrary } from './smt-support.ts';

const BASES = [
  smtCsv({ esiids: ['10443720004766435'], days: ['2025-11-03'], revision: '11/04/2025 06:00:00' }),
  smtCsv({
    esiids: ['1008901023808105290100'],
    days: ['2025-11-02'],
    revision: '11/03/2025 06:00:00',
    channels: ['Consumption', 'Surplus Generation'],
    value: (_e, _d, row) => (row % 7 === 0 ? undefined : row / 100),
  }),
  smtCsv({ esiids: ['10443720004766435'], days: ['2025-03-09'], revision: '03/10/2025 06:00:00', flag: 'E' }),
].map((text) => Buffer.from(text));

it('fuzz: SMT interval CSV', { timeout: 3_600_000 }, async () => {
  await fuzz({
    name: 'smt-interval-csv',
    arbitrary: fc.record({
      base: fc.nat({ max: BASES.length - 1 }),
      mutations: fc.array(mutationArbitrary, { minLength: 0, maxLength: 4 }),
      sizes: chunkingArbitrary,
    }),
    check: ({ base, mutations, sizes }) => checkSmtInput(mutations.reduce(applyMutation, BASES[base]!), sizes),
  });
});
