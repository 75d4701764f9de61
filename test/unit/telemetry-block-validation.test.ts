/**
 * decodeTelemetry validates a block's first value in full and the rest by what can differ within a
 * block (shared/telemetry.ts, BlockValue). These tests hold it to the full validation: the same
 * readings accepted, and the same refusals with the same reasons, as validateReading on each value.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeTelemetry } from '../../shared/telemetry.ts';
import { validateReading } from '../../shared/reading.ts';

const now = new Date('2026-11-23T12:00:00Z');
const base = { v: 1, gatewayId: 'gw-1', seq: 7, sentAt: '2026-11-23T11:59:00Z' };
const decode = (message: unknown) => decodeTelemetry(Buffer.from(JSON.stringify(message)), { topicThingName: 'gw-1', now });

/** What validating every value of the block one by one gives: the first refusal, or every reading. */
function reference(block: { meterId: string; channel: string; start: string; intervalSeconds: number; unit: string; values: Array<number | null> }) {
  const readings = [];
  let index = 0;
  for (const [i, value] of block.values.entries()) {
    if (value === null) continue;
    const start = new Date(Date.parse(block.start) + i * block.intervalSeconds * 1000);
    const end = new Date(start.getTime() + block.intervalSeconds * 1000);
    const candidate = { kind: 'interval', ...block, start, end, value, quality: 'actual', revision: 0, source: 'iot', originId: 'gw-1/7' };
    delete (candidate as Record<string, unknown>).values;
    delete (candidate as Record<string, unknown>).intervalSeconds;
    const result = validateReading(candidate, { now });
    if (!result.ok) return { ok: false as const, reason: `reading ${index}: ${result.reasons.join('; ')}` };
    readings.push(result.reading);
    index += 1;
  }
  return { ok: true as const, readings };
}

const block = (start: string, intervalSeconds: number, values: Array<number | null>) => ({
  meterId: 'm-1',
  channel: 'energy.active.import',
  start,
  intervalSeconds,
  unit: 'kWh',
  values,
});

describe('block values validated as strictly as single readings', () => {
  it('accepts a whole day with the very readings validateReading returns', () => {
    const day = block(
      '2026-11-22T06:00:00Z',
      900,
      Array.from({ length: 96 }, (_, i) => (i % 7 === 3 ? null : i / 10)),
    );
    const result = decode({ ...base, blocks: [day] });
    const expected = reference(day);
    assert.ok(result.ok && expected.ok);
    assert.deepEqual(result.readings, expected.readings);
  });

  it('refuses the first value that runs into the future with the reason validateReading gives, though earlier values passed', () => {
    // From 11:00 in 15-min steps: the ninth interval ends at 13:15, past now + 1 h skew.
    const late = block('2026-11-23T11:00:00Z', 900, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const result = decode({ ...base, blocks: [late] });
    const expected = reference(late);
    assert.ok(!result.ok && !expected.ok);
    assert.equal(result.code, 'invalid');
    assert.equal(result.reason, expected.reason);
    assert.match(result.reason, /^reading 8: end: 2026-11-23T13:15:00.000Z is in the future/);
  });

  it('refuses a block that starts off the whole second on its first value, as before', () => {
    const off = block('2026-11-23T00:00:00.500Z', 900, [1, 2]);
    const result = decode({ ...base, blocks: [off] });
    const expected = reference(off);
    assert.ok(!result.ok && !expected.ok);
    assert.equal(result.reason, expected.reason);
  });

  it('validates each block on its own: a second block of another meter gets the full check again', () => {
    const good = block('2026-11-22T06:00:00Z', 900, [1, 2]);
    const bad = { ...block('2026-11-22T06:00:00Z', 900, [1, 2]), meterId: '-bad meter' };
    const result = decode({ ...base, blocks: [good, bad] });
    assert.ok(!result.ok);
    const expected = reference(bad);
    assert.ok(!expected.ok);
    assert.equal(result.reason, expected.reason.replace(/^reading 0:/, 'reading 2:'));
  });
});
