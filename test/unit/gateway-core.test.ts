/**
 * Pure parts of the gateway agent: configuration validation, register decoding and scaling,
 * message building (checked with the cloud's own decoder), pacing.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeTelemetry, MAX_MESSAGE_BYTES } from '../../shared/telemetry.ts';
import { assertTlsFilesReadable, ConfigError, loadConfig, parseConfig, telemetryTopic } from '../../gateway/src/config.ts';
import { decodeRegister, encodeRegister } from '../../gateway/src/modbus.ts';
import { buildMessages, toBlocks } from '../../gateway/src/message-builder.ts';
import { Pacer, peakRate, RateMeter } from '../../gateway/src/pacer.ts';
import { decimalsOf, scaleValue } from '../../gateway/src/poller.ts';
import type { SpooledReading } from '../../gateway/src/spool.ts';

const minimal = () => ({
  thingName: 'gw-0001',
  iot: {
    endpoint: 'abc-ats.iot.us-east-1.amazonaws.com',
    ruleName: 'meterbridge_dev_telemetry',
    certFile: 'device.cert.pem',
    keyFile: 'device.key.pem',
    caFile: 'AmazonRootCA1.pem',
  },
  meters: [{ id: 'm-1', host: '10.0.0.5', registers: [{ channel: 'energy.active.import', address: 0, type: 'uint32', unit: 'kWh', scale: 0.001 }] }],
  spool: { directory: '/var/lib/meterbridge-gateway/spool' },
});

function problems(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('gateway configuration', () => {
  it('fills defaults within IoT Core limits', () => {
    const config = parseConfig(minimal());
    assert.equal(config.iot.port, 8883);
    assert.equal(config.iot.protocolVersion, 5);
    assert.equal(config.polling.intervalSeconds, 900);
    assert.equal(config.spool.maxBytes, 512 * 1024 ** 2);
    assert.ok(config.publish.maxPublishesPerSecond <= 100 && config.publish.maxBytesPerSecond <= 512 * 1024 && config.publish.maxInFlight <= 100);
    assert.equal(config.meters[0]!.registers[0]!.mode, 'delta');
    assert.equal(telemetryTopic(config), '$aws/rules/meterbridge_dev_telemetry/gateways/gw-0001/telemetry');
  });

  it('names the bad key in every error', () => {
    const input = minimal() as Record<string, unknown> & ReturnType<typeof minimal>;
    (input.meters[0]!.registers[0] as Record<string, unknown>).type = 'uint64';
    (input as Record<string, unknown>).publish = { maxPublishesPerSecond: 150 };
    input.spool = { directory: 'x', maxBytes: 'lots' } as never;
    const found = problems(input);
    assert.ok(
      found.some((p) => p.startsWith('meters[0].registers[0].type:') && p.includes('uint16|int16|uint32|int32|float32')),
      found.join('\n'),
    );
    const unknownKey = minimal();
    (unknownKey.meters[0] as Record<string, unknown>).colour = 'red';
    assert.deepEqual(problems(unknownKey), ['meters[0]: Unrecognized key: "colour" (colour)']);
    assert.ok(
      found.some((p) => p.startsWith('publish.maxPublishesPerSecond:')),
      found.join('\n'),
    );
    assert.ok(
      found.some((p) => p.startsWith('spool.maxBytes:') && p.includes('"lots" is not a size')),
      found.join('\n'),
    );
  });

  it('refuses duplicate meter ids and channels, and a segment size that defeats the cap', () => {
    const input = minimal();
    input.meters.push({ ...input.meters[0]!, registers: [...input.meters[0]!.registers, ...input.meters[0]!.registers] });
    (input.spool as Record<string, unknown>).maxBytes = '1MiB';
    (input.spool as Record<string, unknown>).segmentBytes = '512kB';
    const found = problems(input);
    assert.ok(
      found.some((p) => p.startsWith('meters[1].id:') && p.includes('already used by meters[0]')),
      found.join('\n'),
    );
    assert.ok(
      found.some((p) => p.startsWith('meters[1].registers[1].channel:')),
      found.join('\n'),
    );
    assert.ok(
      found.some((p) => p.startsWith('spool.segmentBytes:')),
      found.join('\n'),
    );
  });

  it('loads YAML, resolving file paths against the file, and reports YAML errors with the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mb-gwconfig-'));
    try {
      const path = join(dir, 'gateway.yaml');
      writeFileSync(
        path,
        'thingName: gw-0001\niot:\n  endpoint: e\n  ruleName: r\n  certFile: c.pem\n  keyFile: k.pem\n  caFile: ca.pem\nmeters:\n  - id: m-1\n    host: h\n    registers: [{channel: energy.active.import, address: 0, type: uint16, unit: Wh}]\nspool: { directory: spool, maxBytes: 8MiB, segmentBytes: 1MiB }\n',
      );
      const config = loadConfig(path);
      assert.equal(config.iot.certFile, join(dir, 'c.pem'));
      assert.equal(config.spool.directory, join(dir, 'spool'));
      assert.equal(config.spool.maxBytes, 8 * 1024 ** 2);
      writeFileSync(path, 'thingName: [unclosed\n');
      assert.throws(
        () => loadConfig(path),
        (error: Error) => error instanceof ConfigError && error.message.includes(path) && error.message.includes('not valid YAML'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('TLS files', () => {
  it('refuses to start when the certificate, key or CA cannot be read, naming each key', () => {
    const config = parseConfig({ ...minimal(), iot: { ...minimal().iot, certFile: '/nonexistent/device.cert.pem' } });
    assert.throws(
      () => assertTlsFilesReadable(config),
      (error: Error) =>
        error instanceof ConfigError &&
        error.problems.length === 3 &&
        error.problems[0]!.startsWith('iot.certFile: cannot read /nonexistent/device.cert.pem'),
    );
  });
});

describe('register decoding', () => {
  it('decodes every type in both word orders, and round-trips', () => {
    assert.equal(decodeRegister([0xfffe], 'int16', 'big'), -2);
    assert.equal(decodeRegister([0xfffe], 'uint16', 'big'), 65534);
    assert.equal(decodeRegister([0x0001, 0x0002], 'uint32', 'big'), 65538);
    assert.equal(decodeRegister([0x0002, 0x0001], 'uint32', 'little'), 65538);
    assert.equal(decodeRegister([0xffff, 0xffff], 'int32', 'big'), -1);
    assert.equal(decodeRegister([0x4048, 0xf5c3], 'float32', 'big'), Math.fround(3.14));
    for (const [value, type] of [
      [123456789, 'uint32'],
      [-123456, 'int32'],
      [1.5, 'float32'],
      [-300, 'int16'],
      [40000, 'uint16'],
    ] as const) {
      for (const order of ['big', 'little'] as const) assert.equal(decodeRegister(encodeRegister(value, type, order), type, order), value);
    }
    assert.throws(() => decodeRegister([1], 'uint32', 'big'), /expected 2 registers/);
  });

  it('scales without float noise', () => {
    assert.equal(decimalsOf(0.001), 3);
    assert.equal(decimalsOf(0.25), 2);
    assert.equal(decimalsOf(10), 0);
    assert.equal(scaleValue(3, { scale: 0.1, type: 'uint32' }), 0.3);
    assert.equal(scaleValue(123456, { scale: 0.001, type: 'uint32' }), 123.456);
    assert.equal(scaleValue(Math.fround(3.14), { scale: 1, type: 'float32' }), 3.14);
  });
});

const START = Date.parse('2026-11-20T06:00:00Z') / 1000;
const spooled = (meter: number, interval: number, value = meter + interval / 100): SpooledReading => ({
  meterId: `m-${meter}`,
  channel: 'energy.active.import',
  start: START + interval * 900,
  intervalSeconds: 900,
  value,
  unit: 'kWh',
  quality: interval === 3 ? 'estimated' : 'actual',
});

describe('message building', () => {
  it('turns a backlog in poll order into one block per meter run, oldest first', () => {
    const readings: SpooledReading[] = [];
    for (let interval = 0; interval < 4; interval++) for (let meter = 0; meter < 3; meter++) readings.push(spooled(meter, interval));
    readings.push(spooled(0, 6)); // after a hole: a second block
    const blocks = toBlocks(readings);
    assert.deepEqual(
      blocks.map((b) => [b.meterId, b.start, b.values.length]),
      [
        ['m-0', '2026-11-20T06:00:00Z', 4],
        ['m-0', '2026-11-20T07:30:00Z', 1],
        ['m-1', '2026-11-20T06:00:00Z', 4],
        ['m-2', '2026-11-20T06:00:00Z', 4],
      ],
    );
    assert.deepEqual(blocks[0]!.quality, ['actual', 'actual', 'actual', 'estimated']);
    assert.equal(blocks[1]!.quality, undefined, 'all-actual blocks leave quality out');
  });

  it('packs a 24-hour backlog of 1,000 meters into messages the cloud decoder accepts, under the size limit, with every reading once', () => {
    const readings: SpooledReading[] = [];
    for (let interval = 0; interval < 96; interval++)
      for (let meter = 0; meter < 1000; meter++) readings.push(spooled(meter, interval, Math.round(meter * 13.7 + interval) / 1000));
    let seq = 41;
    const messages = buildMessages(readings, {
      gatewayId: 'gw-0001',
      maxMessageBytes: 120 * 1024,
      sentAt: '2026-11-21T06:00:00.000Z',
      allocateSeq: () => ++seq,
    });
    assert.deepEqual(
      messages.map((m) => m.seq),
      messages.map((_, i) => 42 + i),
    );
    let total = 0;
    const seen = new Set<string>();
    for (const message of messages) {
      const bytes = Buffer.from(message.body);
      assert.ok(bytes.length <= 120 * 1024 && bytes.length <= MAX_MESSAGE_BYTES);
      const decoded = decodeTelemetry(bytes, { topicThingName: 'gw-0001', now: new Date('2026-11-21T06:00:00Z') });
      assert.ok(decoded.ok, decoded.ok ? '' : decoded.reason);
      assert.equal(decoded.message.seq, message.seq);
      for (const r of decoded.readings) {
        const key = `${r.meterId}/${r.kind === 'interval' ? r.start.toISOString() : ''}`;
        assert.ok(!seen.has(key), `${key} once`);
        seen.add(key);
      }
      total += decoded.readings.length;
      assert.equal(decoded.readings.length, message.readings);
    }
    assert.equal(total, 96_000);
    assert.ok(messages.length < 60, `few messages (${messages.length})`);
  });

  it('splits a block that alone would not fit a small message', () => {
    const readings = Array.from({ length: 1000 }, (_, i) => spooled(0, i, 12345.678 + i));
    const messages = buildMessages(readings, {
      gatewayId: 'gw-0001',
      maxMessageBytes: 4096,
      sentAt: '2026-11-21T06:00:00.000Z',
      allocateSeq: (() => {
        let s = 0;
        return () => ++s;
      })(),
    });
    assert.ok(messages.length > 2);
    let total = 0;
    for (const message of messages) {
      assert.ok(Buffer.byteLength(message.body) <= 4096);
      const decoded = decodeTelemetry(Buffer.from(message.body), { topicThingName: 'gw-0001', now: new Date('2026-12-31T00:00:00Z') });
      assert.ok(decoded.ok, decoded.ok ? '' : decoded.reason);
      total += decoded.readings.length;
    }
    assert.equal(total, 1000);
  });
});

describe('pacing', () => {
  it('never lets a sliding window exceed the publish or byte budget', () => {
    let now = 0;
    const pacer = new Pacer(10, 5000, 1000, () => now);
    const sent: Array<{ at: number; bytes: number }> = [];
    for (let i = 0; i < 200; i++) {
      const bytes = 200 + ((i * 373) % 900);
      const wait = pacer.delayFor(bytes);
      now += wait;
      assert.equal(pacer.delayFor(bytes), 0, 'after the announced wait it fits');
      pacer.record(bytes);
      sent.push({ at: now, bytes });
    }
    const peak = peakRate(sent, 1000);
    assert.ok(peak.publishes <= 10, `publishes ${peak.publishes}`);
    assert.ok(peak.bytes <= 5000, `bytes ${peak.bytes}`);
    assert.ok(now < (200 / 4) * 1000, 'and does not wait needlessly');
  });

  it('tracks the sender-side peak as publishes happen', () => {
    let now = 0;
    const meter = new RateMeter(1000, () => now);
    for (const [at, bytes] of [
      [0, 1],
      [999, 2],
      [1000, 4],
      [1500, 8],
    ] as const) {
      now = at;
      meter.record(bytes);
    }
    assert.deepEqual(meter.peak(), { publishes: 3, bytes: 14 });
  });

  it('measures peaks over sliding windows', () => {
    assert.deepEqual(
      peakRate([
        { at: 0, bytes: 1 },
        { at: 999, bytes: 2 },
        { at: 1000, bytes: 4 },
        { at: 1500, bytes: 8 },
      ]),
      { publishes: 3, bytes: 14 },
    );
  });
});

describe('the shipped example configuration', () => {
  it('is valid', () => {
    const config = loadConfig(new URL('../../gateway/gateway.example.yaml', import.meta.url).pathname);
    assert.equal(config.meters.length, 2);
    assert.equal(config.meters[1]!.registers[0]!.type, 'float32');
  });
});
