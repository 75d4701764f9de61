/** Local mode's sleep: one abort signal for the whole run, a sleep per progress tick, no listener left behind. */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, it } from 'node:test';
import { sleep } from '../../local/local-mode.ts';

describe('local mode sleep', () => {
  it('takes its abort listener off when the timer fires, so a long run never leaks listeners (no MaxListenersExceededWarning)', async () => {
    const abort = new AbortController();
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      for (let tick = 0; tick < 25; tick++) await sleep(1, abort.signal);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    assert.equal(getEventListeners(abort.signal, 'abort').length, 0, 'no listener left on the signal');
    assert.deepEqual(
      warnings.map((w) => w.name),
      [],
    );
  });

  it('still ends at once when the signal aborts', async () => {
    const abort = new AbortController();
    const started = Date.now();
    const sleeping = sleep(60_000, abort.signal);
    abort.abort();
    await sleeping;
    assert.ok(Date.now() - started < 30_000);
    await sleep(60_000, abort.signal); // already aborted: returns at once
  });
});
