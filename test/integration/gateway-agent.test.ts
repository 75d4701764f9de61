/**
 * The gateway agent in-process against real parts on loopback: simulated meters over Modbus TCP,
 * the mTLS IoT broker stand-in, the topic rule body, the real ingest core and DynamoDB Local.
 * Time runs on a demo clock (one 15-minute interval every 200 ms) so an outage of hours takes seconds.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLog } from '../../shared/log.ts';
import { parseConfig, type GatewayConfigInput } from '../../gateway/src/config.ts';
import { startGatewayAgent, type GatewayStatus } from '../../gateway/src/agent.ts';
import { spawnGatewayAgent } from '../../gateway/src/index.ts';
import { peakRate } from '../../gateway/src/pacer.ts';
import { SIMULATED_CHANNEL, startSimulatedMeters, type SimulatedMeters } from '../../gateway/src/simulated-meter.ts';
import { Spool, type SpooledReading } from '../../gateway/src/spool.ts';
import { demoClock } from '../../gateway/src/clock.ts';
import { demoClockConfig, startGatewayHarness, waitFor, type BrokerPublish, type GatewayHarness } from '../support/gateway-harness.ts';

const INTERVAL = 900;
const SPEEDUP = 4500; // 900 s of meter time every 200 ms

let harness: GatewayHarness;

before(async () => {
  harness = await startGatewayHarness();
});

after(async () => {
  await harness?.close();
});

/** Per meter, the interval starts in the order their first publication reached the broker. */
function startsInBrokerOrder(published: readonly BrokerPublish[], fromIndex = 0): Map<string, number[]> {
  const seen = new Set<number>();
  const order = new Map<string, number[]>();
  for (const publish of published.slice(fromIndex)) {
    if (seen.has(publish.seq)) continue; // a re-send of a message the broker already had
    seen.add(publish.seq);
    for (const block of publish.blocks) {
      const list = order.get(block.meterId) ?? [];
      block.values.forEach((_, i) => list.push(Date.parse(block.start) / 1000 + i * INTERVAL));
      order.set(block.meterId, list);
    }
  }
  return order;
}

describe('gateway agent: Modbus -> spool -> MQTT mTLS -> ingest -> DynamoDB Local', () => {
  it('keeps polling through a broker outage and then delivers every reading exactly once, in order per meter', async () => {
    const clockConfig = demoClockConfig(SPEEDUP, 6);
    const clock = demoClock(Date.parse(clockConfig.virtualStart), Date.parse(clockConfig.realStart), SPEEDUP);
    const sim: SimulatedMeters = await startSimulatedMeters({ count: 4, clock, stepSeconds: INTERVAL, idPrefix: 'outage-' });
    const firstPublish = harness.published.length;
    const firstOutcome = harness.outcomes.length;
    const config = parseConfig({
      ...harness.baseConfig(join(harness.dir, 'spool-outage')),
      meters: sim.meterConfigs(),
      // The simulated index moves in 900 s steps: a read up to 850 s late still sees its boundary's value.
      polling: { intervalSeconds: INTERVAL, timeoutMs: 150, maxReadDelaySeconds: 850 },
      publish: { holdSeconds: 0, drainStartDelayMaxSeconds: 0.3 },
      demoClock: clockConfig,
    } satisfies GatewayConfigInput);
    const agent = await startGatewayAgent(config, { log: silentLog });
    try {
      await waitFor(() => agent.status().publisher.messagesAcked >= 2, 10_000, 'first acknowledged messages');

      await harness.stopBroker();
      const takenBeforeOutage = agent.status().poller.readingsTaken;
      await waitFor(() => agent.status().poller.readingsTaken >= takenBeforeOutage + 4 * 8, 10_000, 'eight intervals polled during the outage');
      assert.ok(agent.status().spool.depth >= 4 * 8, 'readings pile up in the spool while the broker is down');
      assert.ok(agent.status().publisher.connectFailures > 0, 'the agent tried to reconnect');
      await harness.startBroker();

      // Stop producing readings (the meters stop answering), then let the backlog drain.
      await waitFor(() => agent.status().publisher.connected && agent.status().publisher.messagesAcked > 2, 10_000, 'reconnect');
      for (let i = 0; i < sim.meters.length; i++) sim.setFault(i, 'exception');
      await waitFor(() => agent.status().poller.readErrors >= 4, 5000, 'read errors counted');
      await waitFor(() => agent.status().spool.depth === 0, 15_000, 'the spool to drain');
    } finally {
      await agent.stop();
      await sim.stop();
    }
    await harness.drained();

    const status = agent.status();
    const taken = status.poller.readingsTaken;
    assert.ok(taken >= 4 * 8, `enough readings taken (${taken})`);
    let storedTotal = 0;
    const order = startsInBrokerOrder(harness.published, firstPublish);
    for (const [index, meter] of sim.meters.entries()) {
      const stored = await harness.readings(meter.meterId, SIMULATED_CHANNEL, new Date(Date.parse(clockConfig.virtualStart)), new Date());
      storedTotal += stored.length;
      assert.ok(stored.length > 8, `${meter.meterId} has its readings`);
      for (const reading of stored) {
        assert.equal(reading.kind, 'interval');
        if (reading.kind !== 'interval' || reading.quality === 'estimated') continue; // read late on a busy machine: flagged, not exact
        assert.equal(
          reading.value,
          sim.intervalKwh(index, reading.start.getTime() / 1000, INTERVAL),
          `${meter.meterId} ${reading.start.toISOString()} has the value the meter measured`,
        );
      }
      const sent = order.get(meter.meterId) ?? [];
      assert.deepEqual(
        sent,
        [...sent].sort((a, b) => a - b),
        `${meter.meterId}: readings reached the broker oldest first`,
      );
      assert.equal(sent.length, stored.length, `${meter.meterId}: each reading published in exactly one message`);
    }
    assert.equal(storedTotal, taken, 'every reading taken is stored');
    const outcomes = harness.outcomes.slice(firstOutcome);
    const counts = outcomes.reduce(
      (sum, o) =>
        o.status === 'stored'
          ? { stored: sum.stored + o.counts.stored, conflict: sum.conflict + o.counts.conflict, duplicate: sum.duplicate + o.counts.duplicate }
          : sum,
      { stored: 0, conflict: 0, duplicate: 0 },
    );
    assert.equal(counts.stored, taken, 'each reading was written once');
    assert.equal(counts.conflict, 0);
    assert.equal(outcomes.filter((o) => o.status === 'rejected').length, 0);
  });

  it('detects and drops a torn final spool record and outbox record, starts, and delivers what came before', async () => {
    const directory = join(harness.dir, 'spool-torn');
    const base = Math.floor((Date.now() - 3 * 86_400_000) / 900_000) * 900;
    const readings: SpooledReading[] = Array.from({ length: 20 }, (_, i) => ({
      meterId: 'torn-0001',
      channel: SIMULATED_CHANNEL,
      start: base + i * INTERVAL,
      intervalSeconds: INTERVAL,
      value: i + 0.5,
      unit: 'kWh',
      quality: 'actual',
    }));
    const spool = Spool.open({ directory, segmentBytes: 64 * 1024, maxBytes: 1024 * 1024 });
    spool.append(readings.slice(0, 10));
    spool.append(readings.slice(10));
    spool.close();
    // A write cut short by power loss: a header announcing 200 bytes, followed by 11.
    const segment = readdirSync(directory).find((name) => name.startsWith('seg-'))!;
    const torn = Buffer.alloc(8 + 11);
    torn.writeUInt32LE(200, 0);
    appendFileSync(join(directory, segment), torn);
    appendFileSync(join(directory, 'outbox.log'), Buffer.from([0x40, 0, 0, 0, 1, 2]));

    const config = parseConfig({
      ...harness.baseConfig(directory),
      // A meter that never answers: this test is about what is already in the spool.
      meters: [
        {
          id: 'torn-0001',
          host: '127.0.0.1',
          port: 1,
          registers: [{ channel: SIMULATED_CHANNEL, address: 0, type: 'uint32', unit: 'kWh', scale: 0.001 }],
        },
      ],
      polling: { intervalSeconds: INTERVAL, timeoutMs: 100 },
      publish: { holdSeconds: 0, drainStartDelayMaxSeconds: 0 },
    } satisfies GatewayConfigInput);
    const agent = await startGatewayAgent(config, { log: silentLog });
    try {
      assert.equal(agent.status().spool.tornRecordsDropped, 2, 'the torn segment record and the torn outbox record');
      await waitFor(() => agent.status().spool.depth === 0, 10_000, 'the spool to drain');
    } finally {
      await agent.stop();
    }
    await harness.drained();
    const stored = await harness.readings('torn-0001', SIMULATED_CHANNEL, new Date(base * 1000), new Date());
    assert.deepEqual(
      stored.map((r) => r.value),
      readings.map((r) => r.value),
    );
  });

  it('drains a backlog within the configured per-connection rates and in-flight limit, measured at the broker', async () => {
    const directory = join(harness.dir, 'spool-pacing');
    const meters = 180;
    const base = Math.floor((Date.now() - 3 * 86_400_000) / 900_000) * 900;
    const spool = Spool.open({ directory, segmentBytes: 1024 * 1024, maxBytes: 64 * 1024 * 1024 });
    for (let interval = 0; interval < 96; interval++) {
      spool.append(
        Array.from({ length: meters }, (_, m) => ({
          meterId: `pace-${String(m).padStart(4, '0')}`,
          channel: SIMULATED_CHANNEL,
          start: base + interval * INTERVAL,
          intervalSeconds: INTERVAL,
          value: Math.round((m + interval / 7) * 1000) / 1000,
          unit: 'kWh' as const,
          quality: 'actual' as const,
        })),
      );
    }
    spool.close();
    // A 2 s window: the budgets hold at the broker even when a loaded test machine delays arrivals.
    const limits = { maxPublishesPerSecond: 20, maxBytesPerSecond: 48 * 1024, maxInFlight: 3, rateWindowSeconds: 2 };
    const config = {
      ...harness.baseConfig(directory),
      meters: [
        {
          id: 'pace-0000',
          host: '127.0.0.1',
          port: 1,
          registers: [{ channel: SIMULATED_CHANNEL, address: 0, type: 'uint32', unit: 'kWh', scale: 0.001 }],
        },
      ],
      polling: { intervalSeconds: INTERVAL, timeoutMs: 100 },
      publish: { ...limits, maxMessageBytes: 4096, holdSeconds: 0, drainStartDelayMaxSeconds: 0 },
    } satisfies GatewayConfigInput;
    const firstPublish = harness.published.length;
    harness.setAckDelayMs(40);
    // A child process, as in production: the broker's clock is not held up by the agent's fsyncs.
    const configPath = await harness.writeConfig(config, 'pacing.yaml');
    const child = spawnGatewayAgent(configPath, { stdio: ['ignore', 'ignore', 'ignore'] });
    const statusPath = join(directory, 'status.json');
    let sender = { publishes: Infinity, bytes: Infinity };
    try {
      await waitFor(
        () => {
          if (!existsSync(statusPath)) return false;
          const status = JSON.parse(readFileSync(statusPath, 'utf8')) as GatewayStatus;
          if (status.pid === child.pid) sender = status.publisher.peakSendRate;
          return status.pid === child.pid && status.spool.depth === 0;
        },
        40_000,
        'the backlog to drain',
      );
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      harness.setAckDelayMs(0);
    }
    await harness.drained();
    const publishes = harness.published.slice(firstPublish);
    const total = publishes.reduce((sum, p) => sum + p.bytes, 0);
    assert.ok(
      total >= 2.5 * limits.maxBytesPerSecond && publishes.length >= 1.5 * limits.maxPublishesPerSecond,
      `a backlog large enough to need pacing (${publishes.length} publishes, ${total} bytes)`,
    );
    const peak = peakRate(publishes, 1000);
    // Strictly at the sender; at the broker, which timestamps arrivals on its own busy event loop
    // (and acknowledges one message at a time), bunching gets a little slack. Without pacing the
    // whole backlog (~150 KB, 40 publishes) would arrive within a second.
    assert.ok(sender.publishes <= limits.maxPublishesPerSecond && sender.bytes <= limits.maxBytesPerSecond, `sender peak ${JSON.stringify(sender)}`);
    assert.ok(peak.publishes <= limits.maxPublishesPerSecond * 1.25, `broker peak ${peak.publishes} publishes/s`);
    assert.ok(peak.bytes <= limits.maxBytesPerSecond * 1.25, `broker peak ${peak.bytes} bytes/s`);
    assert.ok(peak.bytes >= limits.maxBytesPerSecond * 0.4, `the drain used the budget (peak ${peak.bytes} bytes/s)`);
    assert.ok(harness.peakUnacknowledged <= limits.maxInFlight, `at most ${limits.maxInFlight} unacknowledged (saw ${harness.peakUnacknowledged})`);
    assert.ok(publishes.every((p) => p.bytes <= 4096));
    const sample = await harness.readings('pace-0179', SIMULATED_CHANNEL, new Date(base * 1000), new Date());
    assert.equal(sample.length, 96);
  });
});
