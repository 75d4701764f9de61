import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { mapDelivery } from '../../lambdas/core/ready/delivery.ts';
import { parseStatusCallback } from '../../lambdas/core/ready/status.ts';
import { isJsonContentType } from '../../lambdas/core/ready/webhook.ts';

const NOW = new Date('2026-11-23T12:00:00Z');

function delivery(meters: unknown[], extra: Record<string, unknown> = {}) {
  return { deliveryId: 'd-1', subscriptionId: 'sub-1', resource: 'meterReadings', sentAt: '2026-11-23T11:00:00Z', meters, ...extra };
}

const map = (json: unknown) => mapDelivery(json, Buffer.from(JSON.stringify(json)), { now: NOW });

describe('mapDelivery', () => {
  it('maps a water register with READY unit spelling to water.volume in m3', () => {
    const result = map(
      delivery([
        { meterId: 'kam-1', utility: 'water', registers: [{ register: 'volume', value: 1234.567, unit: 'm³', readAt: '2026-11-23T10:00:00Z' }] },
      ]),
    );
    assert.ok(result.ok);
    assert.deepEqual(
      result.readings.map((r) => [r.kind, r.channel, r.value, r.unit, r.quality, r.source, r.originId]),
      [['register', 'water.volume', 1234.567, 'm3', 'actual', 'ready', 'ready/sub-1/d-1']],
    );
  });

  it('maps interval values to consecutive intervals, skipping nulls, on the .interval channel', () => {
    const result = map(
      delivery([
        {
          meterId: 'kam-1',
          utility: 'heat',
          intervals: [
            { register: 'energy', start: '2026-11-23T00:00:00Z', intervalSeconds: 3600, unit: 'kWh', values: [1.5, null, 2.5], estimated: true },
          ],
        },
      ]),
    );
    assert.ok(result.ok);
    assert.deepEqual(
      result.readings.map((r) => (r.kind === 'interval' ? [r.channel, r.start.toISOString(), r.end.toISOString(), r.value, r.quality] : [])),
      [
        ['heat.energy.interval', '2026-11-23T00:00:00.000Z', '2026-11-23T01:00:00.000Z', 1.5, 'estimated'],
        ['heat.energy.interval', '2026-11-23T02:00:00.000Z', '2026-11-23T03:00:00.000Z', 2.5, 'estimated'],
      ],
    );
  });

  it('puts electricity intervals on the channel SMT and IoT use, registers apart', () => {
    const result = map(
      delivery([
        {
          meterId: 'kam-e',
          utility: 'electricity',
          registers: [{ register: 'energyImport', value: 10, unit: 'kWh', readAt: '2026-11-23T10:00:00Z' }],
          intervals: [{ register: 'energyImport', start: '2026-11-23T10:00:00Z', intervalSeconds: 900, unit: 'kWh', values: [0.2] }],
        },
      ]),
    );
    assert.ok(result.ok);
    assert.deepEqual(
      result.readings.map((r) => r.channel),
      ['energy.active.import.register', 'energy.active.import'],
    );
  });

  it('turns alarm codes into event readings: 1 raised, 0 cleared', () => {
    const result = map(
      delivery([
        {
          meterId: 'kam-1',
          utility: 'water',
          events: [
            { code: 'leak', at: '2026-11-23T09:00:00Z' },
            { code: 'dry', active: false, at: '2026-11-23T09:30:00Z' },
          ],
        },
      ]),
    );
    assert.ok(result.ok);
    assert.deepEqual(
      result.readings.map((r) => [r.channel, r.value, r.unit]),
      [
        ['event.leak', 1, 'count'],
        ['event.dry', 0, 'count'],
      ],
    );
    assert.deepEqual(
      result.events.map((e) => [e.code, e.active]),
      [
        ['leak', true],
        ['dry', false],
      ],
    );
  });

  it('identifies a delivery without an id by the SHA-256 of its bytes', () => {
    const json = delivery(
      [{ meterId: 'kam-1', utility: 'water', registers: [{ register: 'volume', value: 1, unit: 'm3', readAt: '2026-11-23T10:00:00Z' }] }],
      { deliveryId: undefined },
    );
    const bytes = Buffer.from(JSON.stringify(json));
    const result = mapDelivery(json, bytes, { now: NOW });
    assert.ok(result.ok);
    assert.equal(result.unitId, `sub-1/sha256-${createHash('sha256').update(bytes).digest('hex')}`);
  });

  const refusals: Array<[string, unknown, RegExp]> = [
    ['an unknown field', delivery([{ meterId: 'kam-1', utility: 'water', colour: 'blue' }]), /meters\.0: Unrecognized key/],
    ['an unknown utility', delivery([{ meterId: 'kam-1', utility: 'steam' }]), /meters\.0\.utility/],
    [
      'an unknown register',
      delivery([{ meterId: 'kam-1', utility: 'water', registers: [{ register: 'pressure', value: 1, unit: 'm3', readAt: '2026-11-23T10:00:00Z' }] }]),
      /unknown water register "pressure"/,
    ],
    [
      'a unit of another quantity',
      delivery([{ meterId: 'kam-1', utility: 'water', registers: [{ register: 'volume', value: 1, unit: 'kWh', readAt: '2026-11-23T10:00:00Z' }] }]),
      /"kWh" does not measure water volume/,
    ],
    [
      'an unknown unit',
      delivery([{ meterId: 'kam-1', utility: 'water', registers: [{ register: 'volume', value: 1, unit: 'hl', readAt: '2026-11-23T10:00:00Z' }] }]),
      /unknown unit "hl"/,
    ],
    [
      'an unknown alarm code',
      delivery([{ meterId: 'kam-1', utility: 'water', events: [{ code: 'fire', at: '2026-11-23T10:00:00Z' }] }]),
      /events\.0\.code/,
    ],
    [
      'a reading in the future',
      delivery([{ meterId: 'kam-1', utility: 'water', registers: [{ register: 'volume', value: 1, unit: 'm3', readAt: '2026-11-24T10:00:00Z' }] }]),
      /in the future/,
    ],
    ['no data at all', delivery([{ meterId: 'kam-1', utility: 'water' }]), /no registers, intervals or events/],
    ['another resource', delivery([{ meterId: 'kam-1', utility: 'water' }], { resource: 'alarms' }), /resource/],
    ['a JSON array', [1, 2], /delivery/],
  ];
  for (const [what, json, reason] of refusals) {
    it(`refuses ${what} with a reason that names the field`, () => {
      const result = map(json);
      assert.equal(result.ok, false);
      if (!result.ok) assert.match(result.reasons.join('\n'), reason);
    });
  }
});

describe('parseStatusCallback', () => {
  it('accepts READY-style capitalised states', () => {
    const parsed = parseStatusCallback({
      subscriptionId: 'sub-1',
      status: 'Suspended',
      changedAt: '2026-11-23T10:00:00Z',
      reason: 'webhook answered 500 for 24 h',
    });
    assert.ok(parsed.ok);
    assert.equal(parsed.status.status, 'suspended');
  });

  it('refuses an unknown state', () => {
    const parsed = parseStatusCallback({ subscriptionId: 'sub-1', status: 'Sleeping', changedAt: '2026-11-23T10:00:00Z' });
    assert.equal(parsed.ok, false);
    if (!parsed.ok) assert.match(parsed.reasons.join(), /unknown subscription status "sleeping"/);
  });
});

describe('isJsonContentType', () => {
  it('accepts application/json with or without a UTF-8 charset, nothing else', () => {
    assert.equal(isJsonContentType('application/json'), true);
    assert.equal(isJsonContentType('Application/JSON; charset=UTF-8'), true);
    assert.equal(isJsonContentType('application/json; charset=iso-8859-1'), false);
    assert.equal(isJsonContentType('text/plain'), false);
    assert.equal(isJsonContentType(undefined), false);
  });
});
