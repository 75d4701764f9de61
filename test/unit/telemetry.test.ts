import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  basicIngestTopicPrefix,
  decodeTelemetry,
  MAX_MESSAGE_BYTES,
  TELEMETRY_TOPIC_FILTER,
  telemetryTopic,
  THING_NAME_PATTERN,
  thingNameFromTopic,
  withoutBasicIngestPrefix,
} from '../../shared/telemetry.ts';
import { preview } from '../../shared/untrusted-json.ts';

const now = new Date('2026-11-23T12:00:00Z');
const base = { v: 1, gatewayId: 'gw-1', seq: 42, sentAt: '2026-11-23T11:59:00Z' };
const decode = (message: unknown) => decodeTelemetry(Buffer.from(JSON.stringify(message)), { topicThingName: 'gw-1', now });

describe('telemetry contract v1', () => {
  it('expands a block into consecutive intervals with their qualities and skips nulls', () => {
    const result = decode({
      ...base,
      blocks: [
        {
          meterId: 'm1',
          channel: 'energy.active.import',
          start: '2026-11-23T00:00:00Z',
          intervalSeconds: 900,
          unit: 'kWh',
          values: [1, null, 3],
          quality: ['actual', 'actual', 'estimated'],
        },
      ],
    });
    assert.ok(result.ok);
    assert.deepEqual(
      result.readings.map((r) => [r.kind === 'interval' && r.start.toISOString(), r.kind === 'interval' && r.end.toISOString(), r.value, r.quality]),
      [
        ['2026-11-23T00:00:00.000Z', '2026-11-23T00:15:00.000Z', 1, 'actual'],
        ['2026-11-23T00:30:00.000Z', '2026-11-23T00:45:00.000Z', 3, 'estimated'],
      ],
    );
    assert.ok(result.readings.every((r) => r.source === 'iot' && r.originId === 'gw-1/42' && r.revision === 0));
  });

  it('reads interval readings and register reads, quality defaulting to actual', () => {
    const result = decode({
      ...base,
      readings: [
        { meterId: 'm1', channel: 'energy.active.import', start: '2026-11-23T00:00:00Z', end: '2026-11-23T00:15:00Z', value: 0.5, unit: 'kWh' },
        { meterId: 'm2', channel: 'water.volume', at: '2026-11-23T00:00:00Z', value: 10, unit: 'm3', quality: 'estimated' },
      ],
    });
    assert.ok(result.ok);
    assert.deepEqual(
      result.readings.map((r) => [r.kind, r.quality]),
      [
        ['interval', 'actual'],
        ['register', 'estimated'],
      ],
    );
  });

  it('refuses a message for another gateway than its topic names', () => {
    const result = decode({
      ...base,
      gatewayId: 'gw-2',
      readings: [{ meterId: 'm', channel: 'water.volume', at: '2026-11-23T00:00:00Z', value: 1, unit: 'm3' }],
    });
    assert.equal(result.ok, false);
    assert.ok(!result.ok && /does not match the thing name "gw-1"/.test(result.reason));
  });

  it('refuses oversized, empty, unknown-version, extra-field and mismatched-quality messages, naming the problem', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ ...base }, /at least one reading or block/],
      [{ ...base, v: 2, readings: [] }, /unsupported contract version/],
      [{ ...base, extra: true, readings: [{ meterId: 'm', channel: 'water.volume', at: '2026-11-23T00:00:00Z', value: 1, unit: 'm3' }] }, /extra/],
      [{ ...base, seq: 0 }, /seq/],
      [
        {
          ...base,
          blocks: [
            {
              meterId: 'm',
              channel: 'energy.active.import',
              start: '2026-11-23T00:00:00Z',
              intervalSeconds: 900,
              unit: 'kWh',
              values: [1, 2],
              quality: ['actual'],
            },
          ],
        },
        /quality: has 1 entries for 2 values/,
      ],
      [
        { ...base, readings: [{ meterId: 'm', channel: 'energy.active.import', start: '2026-11-23T00:00:00Z', value: 1, unit: 'kWh' }] },
        /reading 0: end/,
      ],
    ];
    for (const [message, reason] of cases) {
      const result = decode(message);
      assert.ok(!result.ok, JSON.stringify(message));
      assert.match(result.reason, reason);
    }
    const huge = decodeTelemetry(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 32), { topicThingName: 'gw-1', now });
    assert.ok(!huge.ok && /limit is 131072/.test(huge.reason));
  });

  it('refuses a 40 KB unit of 20,000 nested arrays as too deep, and a huge or deep unknown unit with a bounded reason, never throwing', () => {
    const nested = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    const deep = decodeTelemetry(
      Buffer.from(
        `{"v":1,"gatewayId":"gw-1","seq":1,"sentAt":"2026-11-23T11:59:00Z","readings":[{"meterId":"m","channel":"water.volume","at":"2026-11-23T11:00:00Z","value":1,"unit":${nested}}]}`,
      ),
      { topicThingName: 'gw-1', now },
    );
    assert.ok(!deep.ok);
    assert.equal(deep.code, 'too-deep');
    assert.match(deep.reason, /^JSON nests deeper than 8 levels \(at character \d+\)$/);

    // Within the depth limit, the unknown units are shown as a preview, never whole.
    for (const unit of [
      'x'.repeat(100_000),
      [[[['kWh', 'x'.repeat(50_000)]]]],
      Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i])),
    ]) {
      const result = decode({ ...base, readings: [{ meterId: 'm', channel: 'water.volume', at: '2026-11-23T11:00:00Z', value: 1, unit }] });
      assert.ok(!result.ok);
      assert.equal(result.code, 'invalid');
      assert.match(result.reason, /unknown unit/);
      assert.ok(result.reason.length < 400, `${result.reason.length} characters`);
    }
  });

  it('refuses a message with the same identity twice (values 1 and 2): it could not be stored whole', () => {
    const result = decode({
      ...base,
      readings: [1, 2].map((value) => ({ meterId: 'm', channel: 'water.volume', at: '2026-11-23T11:00:00Z', value, unit: 'm3' })),
    });
    assert.ok(!result.ok);
    assert.equal(result.code, 'inconsistent');
    assert.match(result.reason, /m water\.volume 2026-11-23T11:00:00\.000Z: the same reading twice \(values 1 and 2\)/);
    assert.deepEqual({ gatewayId: result.gatewayId, seq: result.seq }, { gatewayId: 'gw-1', seq: 42 });
  });

  it('refuses overlapping intervals of one meter and channel (a block at 10:07 beside one at 10:00; a reading inside a block)', () => {
    const block = (start: string) => ({
      meterId: 'm',
      channel: 'energy.active.import',
      start,
      intervalSeconds: 900,
      unit: 'kWh',
      values: [1, 1, 1, 1],
    });
    const shifted = decode({ ...base, blocks: [block('2026-11-23T10:00:00Z'), block('2026-11-23T10:07:00Z')] });
    assert.ok(!shifted.ok);
    assert.equal(shifted.code, 'inconsistent');
    assert.match(shifted.reason, /2026-11-23T10:07:00\.000Z: lies inside an earlier interval .* \(which ends 2026-11-23T10:15:00\.000Z\)/);

    const inside = decode({
      ...base,
      blocks: [block('2026-11-23T10:00:00Z')],
      readings: [
        { meterId: 'm', channel: 'energy.active.import', start: '2026-11-23T10:30:00Z', end: '2026-11-23T11:30:00Z', value: 4, unit: 'kWh' },
      ],
    });
    assert.ok(!inside.ok && inside.code === 'inconsistent');

    // Adjacent, or another channel or meter: no overlap.
    assert.ok(
      decode({ ...base, blocks: [block('2026-11-23T10:00:00Z'), block('2026-11-23T11:00:00Z'), { ...block('2026-11-23T10:07:00Z'), meterId: 'n' }] })
        .ok,
    );
  });

  it('previews any value within its bound, however large or deep', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    for (const value of [deep, 'x'.repeat(1_000_000), Array.from({ length: 100_000 }, () => ({ a: 'y'.repeat(1000) })), null, undefined, 12n]) {
      assert.ok(preview(value).length <= 80);
    }
    assert.equal(preview({ unit: ['kWh', 2] }), '{"unit":["kWh",2]}');
    assert.equal(preview('x'.repeat(100), 10), '"xxxxxxxx…');
  });

  it('finds the thing name in a topic with or without the Basic Ingest prefix', () => {
    assert.equal(thingNameFromTopic('$aws/rules/meterbridge_dev_telemetry/gateways/gw-7/telemetry'), 'gw-7');
    assert.equal(thingNameFromTopic('gateways/gw-7/telemetry'), 'gw-7');
    assert.equal(thingNameFromTopic('gateways/gw-7/other'), undefined);
  });

  it('builds the Basic Ingest topic the rule filter matches and the thing name is read back from', () => {
    const topic = telemetryTopic('meterbridge_dev_telemetry', 'gw-7');
    assert.equal(topic, '$aws/rules/meterbridge_dev_telemetry/gateways/gw-7/telemetry');
    assert.ok(topic.startsWith(`${basicIngestTopicPrefix('meterbridge_dev_telemetry')}/`));
    assert.equal(TELEMETRY_TOPIC_FILTER, 'gateways/+/telemetry');
    assert.equal(withoutBasicIngestPrefix(topic), 'gateways/gw-7/telemetry');
    assert.equal(thingNameFromTopic(topic), 'gw-7');
    // No rule name, extra levels, an empty thing name: not a telemetry topic.
    assert.equal(withoutBasicIngestPrefix('$aws/rules//gateways/gw-7/telemetry'), '$aws/rules//gateways/gw-7/telemetry');
    assert.equal(thingNameFromTopic('$aws/rules//gateways/gw-7/telemetry'), undefined);
    assert.equal(thingNameFromTopic('gateways/gw-7/telemetry/more'), undefined);
    assert.equal(thingNameFromTopic('gateways//telemetry'), undefined);
  });

  it('accepts exactly the thing names IoT Core allows', () => {
    for (const name of ['gw-1', 'a', 'A:b_c-9', 'x'.repeat(128)]) assert.ok(THING_NAME_PATTERN.test(name), name);
    for (const name of ['', 'gw/1', 'gw 1', 'gw.1', 'x'.repeat(129), '+', '#']) assert.ok(!THING_NAME_PATTERN.test(name), name);
  });
});
