/**
 * The command-line helpers every `meterbridge` command shares: a subcommand and its options, with
 * help and wrong input answered the same way everywhere.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSubcommandLine, subcommandOf, UsageError } from '../../bin/commands/cli.ts';

const HELP = 'meterbridge things --help';

describe('subcommandOf', () => {
  it('returns a known subcommand and the arguments after it', () => {
    assert.deepEqual(subcommandOf(['show', '--meter', 'm1'], 'things', ['list', 'show'], HELP), { subcommand: 'show', rest: ['--meter', 'm1'] });
  });

  it('turns -h, --help and help into help', () => {
    for (const word of ['-h', '--help', 'help']) assert.equal(subcommandOf([word], 'things', ['list'], HELP).subcommand, 'help');
  });

  it('refuses a missing or unknown subcommand with a UsageError naming the ones it knows and pointing at help', () => {
    assert.throws(
      () => subcommandOf([], 'things', ['list', 'show', 'drop'], HELP),
      (error: unknown) => error instanceof UsageError && error.message === 'missing subcommand: list, show or drop' && error.helpCommand === HELP,
    );
    assert.throws(() => subcommandOf(['lsit'], 'things', ['list', 'show'], HELP), {
      name: 'UsageError',
      message: 'unknown things subcommand "lsit" (expected list or show)',
    });
  });
});

describe('parseSubcommandLine', () => {
  const options = { meter: { type: 'string' } } as const;

  it('parses the options and checks the number of positionals', () => {
    const parsed = parseSubcommandLine(['--meter', 'm1', 'q'], HELP, options, { count: 1, what: 'needs one query' });
    assert.equal(parsed?.values.meter, 'm1');
    assert.deepEqual(parsed?.positionals, ['q']);
    assert.throws(() => parseSubcommandLine(['a', 'b'], HELP, options, { count: 1, what: 'needs one query' }), {
      name: 'UsageError',
      message: 'needs one query, got: a b',
    });
    assert.throws(() => parseSubcommandLine([], HELP, options, { count: 1, what: 'needs one query' }), {
      name: 'UsageError',
      message: 'needs one query',
    });
  });

  it('is undefined when help was asked, whatever else is on the line', () => {
    assert.equal(parseSubcommandLine(['-h'], HELP, options, { count: 1, what: 'x' }), undefined);
    assert.equal(parseSubcommandLine(['--meter', 'm1', '--help', 'extra', 'more'], HELP, options, { count: 0, what: 'x' }), undefined);
  });

  it('turns an unknown option into a UsageError pointing at help', () => {
    assert.throws(
      () => parseSubcommandLine(['--metre', 'm1'], HELP, options, { count: 0, what: 'x' }),
      (error: unknown) => error instanceof UsageError && /--metre/.test(error.message) && error.helpCommand === HELP,
    );
  });
});
