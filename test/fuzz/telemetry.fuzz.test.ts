/**
 * Fuzzing telemetry decoding (shared/telemetry.ts), the gateway's contract with the cloud: any
 * bytes, any JSON, near-valid messages with one thing wrong, deep nesting and huge strings.
 *
 * Invariants: decodeTelemetry never throws; every refusal has a known code and a bounded reason;
 * every accepted message's readings satisfy validateReading and carry no identity twice and no
 * overlapping intervals (checked here independently of the decoder's own check); a message the
 * generator made wrong on purpose (the same identity twice, overlapping blocks) is never accepted.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { identityInstant, UNITS, validateReading, type Reading } from '../../shared/reading.ts';
import { decodeTelemetry, TELEMETRY_REFUSALS } from '../../shared/telemetry.ts';
import { fc, fuzz, type Verdict } from './support.ts';

const NOW = new Date('2026-11-23T12:00:00Z');
const GATEWAY = 'gw-1';
/** A refusal names its problem, never the whole input (the bug a 40 KB unit of nested arrays found). */
const MAX_REASON_CHARS = 4096;

interface Case {
  bytes: Uint8Array;
  /** Set when the generator broke the message on purpose: it must be refused. */
  mustRefuse?: string;
}

const text = (value: string): Case => ({ bytes: Buffer.from(value, 'utf8') });

const minute = fc.integer({ min: 0, max: 24 * 60 - 1 });
const instant = (m: number) => new Date(Date.parse('2026-11-22T00:00:00Z') + m * 60_000).toISOString().replace('.000Z', 'Z');
const meterId = fc.constantFrom('m1', 'm2', 'meter-3');
const channel = fc.constantFrom('energy.active.import', 'water.volume');
const unit = fc.oneof(fc.constantFrom(...UNITS), fc.string({ maxLength: 8 }));

const block = fc.record({
  meterId,
  channel,
  start: minute.map((m) => instant(m - (m % 15))),
  intervalSeconds: fc.constantFrom(900, 3600, 60, 59, 86_400),
  unit,
  values: fc.array(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }), fc.constant(null)), {
    minLength: 1,
    maxLength: 8,
  }),
});
const reading = fc.oneof(
  fc.record({ meterId, channel, at: minute.map(instant), value: fc.integer({ min: 0, max: 1000 }), unit }),
  fc.record({ meterId, channel, start: minute.map(instant), end: minute.map(instant), value: fc.integer({ min: 0, max: 1000 }), unit }),
);
const message = fc.record({
  v: fc.constantFrom(1, 1, 1, 2),
  gatewayId: fc.constantFrom(GATEWAY, GATEWAY, GATEWAY, 'gw-2'),
  seq: fc.integer({ min: 0, max: 1_000_000 }),
  sentAt: fc.constant('2026-11-23T11:59:00Z'),
  readings: fc.array(reading, { maxLength: 4 }),
  blocks: fc.array(block, { maxLength: 3 }),
});

/** A valid block, then the same identity again with another value: could only be stored in part. */
const duplicated = fc.tuple(minute, fc.integer({ min: 1, max: 6 })).map(([m, length]): Case => {
  const start = instant(m - (m % 15));
  const values = Array.from({ length }, (_, i) => i + 1);
  const body = {
    v: 1,
    gatewayId: GATEWAY,
    seq: 7,
    sentAt: '2026-11-23T11:59:00Z',
    blocks: [{ meterId: 'm1', channel: 'energy.active.import', start, intervalSeconds: 900, unit: 'kWh', values }],
    readings: [{ meterId: 'm1', channel: 'energy.active.import', start, end: instant(m - (m % 15) + 15), value: 99, unit: 'kWh' }],
  };
  return { ...text(JSON.stringify(body)), mustRefuse: 'the same identity twice' };
});

/** Two blocks of one meter and channel whose intervals overlap (10:07 beside 10:00). */
const overlapping = fc.tuple(minute, fc.integer({ min: 1, max: 14 })).map(([m, shift]): Case => {
  const first = m - (m % 15);
  const blockAt = (start: number) => ({
    meterId: 'm1',
    channel: 'energy.active.import',
    start: instant(start),
    intervalSeconds: 900,
    unit: 'kWh',
    values: [1, 1, 1, 1],
  });
  const body = { v: 1, gatewayId: GATEWAY, seq: 8, sentAt: '2026-11-23T11:59:00Z', blocks: [blockAt(first), blockAt(first + shift)] };
  return { ...text(JSON.stringify(body)), mustRefuse: 'overlapping intervals' };
});

/** A valid message with one field replaced by arrays nested `depth` deep (the 40 KB `unit` case and beyond). */
const deep = fc
  .tuple(fc.integer({ min: 1, max: 60_000 }), fc.constantFrom('unit', 'value', 'meterId', 'readings', 'v'))
  .map(([depth, field]): Case => {
    const nested = `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const entry = JSON.stringify({ meterId: 'm1', channel: 'water.volume', at: '2026-11-23T11:00:00Z', value: 1, unit: 'm3' }).replace(
      `"${field}":`,
      `"${field}":${nested},"_":`,
    );
    return text(`{"v":1,"gatewayId":"${GATEWAY}","seq":1,"sentAt":"2026-11-23T11:59:00Z","readings":[${entry}]}`);
  });

/** Huge strings where short ones belong (up to past the 128 KiB limit). */
const huge = fc
  .tuple(fc.integer({ min: 1_000, max: 140_000 }), fc.constantFrom('unit', 'meterId', 'channel', 'gatewayId', 'sentAt'))
  .map(([length, field]): Case => {
    const body: Record<string, unknown> = {
      v: 1,
      gatewayId: GATEWAY,
      seq: 1,
      sentAt: '2026-11-23T11:59:00Z',
      readings: [{ meterId: 'm1', channel: 'water.volume', at: '2026-11-23T11:00:00Z', value: 1, unit: 'm3' }],
    };
    const target = field === 'gatewayId' || field === 'sentAt' ? body : (body.readings as Array<Record<string, unknown>>)[0]!;
    target[field] = 'x'.repeat(length);
    return text(JSON.stringify(body));
  });

const arbitrary: fc.Arbitrary<Case> = fc.oneof(
  { weight: 4, arbitrary: message.map((m) => text(JSON.stringify(m))) },
  { weight: 1, arbitrary: duplicated },
  { weight: 1, arbitrary: overlapping },
  { weight: 1, arbitrary: deep },
  { weight: 1, arbitrary: huge },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 6 }).map((value) => text(JSON.stringify(value) ?? 'null')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }).map((bytes) => ({ bytes })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }).map(text) },
);

/** Independently of unitOfWorkProblems: no identity twice, no interval starting before the previous one of its series ends. */
function assertNoOverlap(readings: readonly Reading[]): void {
  const series = new Map<string, Reading[]>();
  for (const r of readings) series.set(`${r.meterId}|${r.channel}`, [...(series.get(`${r.meterId}|${r.channel}`) ?? []), r]);
  for (const [name, list] of series) {
    const sorted = [...list].sort((a, b) => identityInstant(a).getTime() - identityInstant(b).getTime());
    for (let i = 1; i < sorted.length; i++) {
      const previous = sorted[i - 1]!;
      const current = sorted[i]!;
      assert.notEqual(identityInstant(current).getTime(), identityInstant(previous).getTime(), `${name}: identity twice`);
      if (previous.kind === 'interval') assert.ok(identityInstant(current).getTime() >= previous.end.getTime(), `${name}: overlapping intervals`);
    }
  }
}

function check(input: Case): Verdict {
  const result = decodeTelemetry(input.bytes, { topicThingName: GATEWAY, now: NOW });
  if (!result.ok) {
    assert.ok((TELEMETRY_REFUSALS as readonly string[]).includes(result.code), `untyped refusal ${result.code}`);
    assert.ok(result.reason.length > 0 && result.reason.length <= MAX_REASON_CHARS, `reason of ${result.reason.length} characters`);
    return { outcome: 'refused' };
  }
  for (const r of result.readings) {
    const again = validateReading(r, { now: NOW });
    assert.ok(again.ok, `accepted a reading the model refuses: ${again.ok ? '' : again.reasons.join('; ')}`);
  }
  assertNoOverlap(result.readings);
  return { outcome: 'accepted', ...(input.mustRefuse ? { wronglyAccepted: input.mustRefuse } : {}) };
}

describe('fuzz: telemetry decoding', () => {
  it('never throws, types every refusal with a bounded reason, and accepts only whole, valid, non-overlapping messages', async () => {
    const report = await fuzz({ name: 'telemetry', arbitrary, check });
    assert.ok(report.accepted > 0 && report.refused > 0, `accepted ${report.accepted}, refused ${report.refused}`);
  });
});
