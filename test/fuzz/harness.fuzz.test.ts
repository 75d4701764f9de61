/** The fuzz harness itself: a hang, a crash and a wrong acceptance each fail a target. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fc, fuzz, HangError, withDeadline } from './support.ts';

describe('fuzz harness', () => {
  it('turns work that never settles into a HangError at its deadline', async () => {
    await assert.rejects(withDeadline(new Promise(() => {}), 50), HangError);
    assert.equal(await withDeadline(Promise.resolve(7), 50), 7);
  });

  it('passes a target whose checks hold and counts accepted and refused cases', async () => {
    const report = await fuzz({
      name: 'harness-ok',
      runs: 200,
      arbitrary: fc.integer(),
      check: (n) => ({ outcome: n % 2 === 0 ? 'accepted' : 'refused' }),
    });
    assert.equal(report.cases, 200);
    assert.equal(report.accepted + report.refused, 200);
    assert.equal(report.crashes + report.hangs + report.wronglyAccepted, 0);
  });

  it('fails a target on a crash, a hang or a wrong acceptance', async () => {
    await assert.rejects(
      fuzz({
        name: 'harness-crash',
        runs: 50,
        arbitrary: fc.integer(),
        check: () => {
          throw new TypeError('boom');
        },
      }),
      /boom/,
    );
    await assert.rejects(
      fuzz({ name: 'harness-hang', runs: 5, deadlineMs: 20, arbitrary: fc.integer(), check: () => new Promise(() => {}) }),
      /did not settle/,
    );
    await assert.rejects(
      fuzz({ name: 'harness-wrong', runs: 50, arbitrary: fc.integer(), check: () => ({ outcome: 'accepted', wronglyAccepted: 'always' }) }),
      /wrongly accepted/,
    );
  });
});
