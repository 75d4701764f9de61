/**
 * Clock discipline (issue 17). The agent: readings taken while the system clock is not
 * synchronized are stored as estimated and counted. The cloud: each message's skew (sentAt minus
 * the rule's receivedAt) becomes the GatewayClockSkew metric; a gateway whose clock is 5 minutes
 * fast drives it above its alarm threshold, a correct one stays near zero.
 */
import { after, before, describe, it } from 'node:test';
import { GetMetricDataCommand, ListMetricsCommand } from '@aws-sdk/client-cloudwatch';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLog } from '../../shared/log.ts';
import { METRIC_CATALOG } from '../../lambdas/core/metric-catalog.ts';
import { parseConfig, type GatewayConfigInput } from '../../gateway/src/config.ts';
import { startGatewayAgent } from '../../gateway/src/agent.ts';
import { Poller } from '../../gateway/src/poller.ts';
import { SIMULATED_CHANNEL, startSimulatedMeters, type SimulatedMeters } from '../../gateway/src/simulated-meter.ts';
import { Spool, type SpooledReading } from '../../gateway/src/spool.ts';
import type { AgentClock } from '../../gateway/src/clock.ts';
import type { ClockSyncState } from '../../gateway/src/clock-sync.ts';
import { startGatewayHarness, waitFor, type GatewayHarness } from '../support/gateway-harness.ts';

const INTERVAL = 900;
let harness: GatewayHarness;
let sim: SimulatedMeters;
let now = Date.parse('2026-11-20T06:00:00Z');
const fakeClock: AgentClock = { now: () => now, realDelay: (ms) => ms };
const dirs: string[] = [];

after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * The Maximum and Minimum of GatewayClockSkew as CloudWatch (moto) stored them since the last
 * reset, over every dimension set; empty when nothing arrived yet.
 */
async function skewValues(): Promise<number[]> {
  const client = harness.cloudwatch.client();
  const { Metrics = [] } = await client.send(new ListMetricsCommand({ Namespace: 'Meterbridge', MetricName: 'GatewayClockSkew' }));
  if (Metrics.length === 0) return [];
  const endTime = new Date(Date.now() + 3_600_000);
  const startTime = new Date(Date.now() - 3 * 86_400_000);
  const period = Math.ceil((endTime.getTime() - startTime.getTime()) / 1000);
  const queries = Metrics.flatMap((metric, i) =>
    (['Maximum', 'Minimum'] as const).map((stat) => ({
      Id: `m${i}${stat.toLowerCase()}`,
      MetricStat: { Metric: metric, Period: period, Stat: stat },
    })),
  );
  const answer = await client.send(new GetMetricDataCommand({ MetricDataQueries: queries, StartTime: startTime, EndTime: endTime }));
  return (answer.MetricDataResults ?? []).flatMap((result) => result.Values ?? []);
}

/** A day of readings of one meter, already in a spool: what the agent publishes is what the test is about. */
function spoolWith(directory: string, meterId: string): void {
  const base = Math.floor((Date.now() - 2 * 86_400_000) / 900_000) * 900;
  const readings: SpooledReading[] = Array.from({ length: 8 }, (_, i) => ({
    meterId,
    channel: SIMULATED_CHANNEL,
    start: base + i * INTERVAL,
    intervalSeconds: INTERVAL,
    value: i + 0.25,
    unit: 'kWh',
    quality: 'actual',
  }));
  const spool = Spool.open({ directory, segmentBytes: 64 * 1024, maxBytes: 1024 * 1024 });
  spool.append(readings);
  spool.close();
}

describe('clock discipline: agent', () => {
  before(async () => {
    sim = await startSimulatedMeters({ count: 2, clock: fakeClock, idPrefix: 'clk-' });
  });
  after(async () => {
    await sim?.stop();
  });

  it('agent: readings taken while the system clock is unsynchronized are stored as estimated and counted', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'mb-gwclock-'));
    dirs.push(directory);
    const config = parseConfig({
      thingName: 'gw-0001',
      iot: { endpoint: '127.0.0.1', ruleName: 'r', certFile: 'c', keyFile: 'k', caFile: 'a' },
      meters: sim.meterConfigs(),
      polling: { intervalSeconds: INTERVAL, timeoutMs: 500 },
      spool: { directory, maxBytes: '1MiB', segmentBytes: '64kB' },
      clock: { checkEverySeconds: 3600 },
    } satisfies GatewayConfigInput);
    let state: ClockSyncState = 'synchronized';
    let checks = 0;
    const spool = Spool.open({ directory });
    const poller = new Poller({ config, spool, clock: fakeClock, log: silentLog, clockSync: async () => (checks++, state) });
    const first = now / 1000;
    const poll = async (end: number) => {
      now = end * 1000;
      return poller.pollOnce(end);
    };
    await poll(first);
    await poll(first + INTERVAL);
    assert.equal(poller.stats().clock, 'synchronized');
    state = 'unsynchronized';
    assert.equal(await poller.checkClock(true), 'unsynchronized');
    await poll(first + 2 * INTERVAL);
    // Synchronized again: the next interval began at a read taken unsynchronized, so it is an estimate too.
    state = 'synchronized';
    await poller.checkClock(true);
    await poll(first + 3 * INTERVAL);
    await poll(first + 4 * INTERVAL);
    const qualities = spool.readForward(0, 20).map((r) => `${r.meterId}@${r.start - first}:${r.quality}`);
    assert.deepEqual(qualities, [
      'clk-0001@0:actual',
      'clk-0002@0:actual',
      'clk-0001@900:estimated',
      'clk-0002@900:estimated',
      'clk-0001@1800:estimated',
      'clk-0002@1800:estimated',
      'clk-0001@2700:actual',
      'clk-0002@2700:actual',
    ]);
    const stats = poller.stats();
    assert.equal(stats.unsyncedReadings, 2);
    assert.equal(stats.clock, 'synchronized');
    assert.ok(checks >= 3 && checks <= 4, `checked at most every checkEverySeconds (${checks} checks)`);
    await poller.stop();
    spool.close();
  });
});

describe('clock discipline: cloud', () => {
  before(async () => {
    harness = await startGatewayHarness();
  });
  after(async () => {
    await harness?.close();
  });

  it('cloud: a gateway whose clock is 5 minutes fast produces GatewayClockSkew above the alarm threshold; a correct clock stays near zero', async () => {
    const alarm = METRIC_CATALOG.GatewayClockSkew.alarm;
    assert.equal(alarm.statistic, 'Maximum');
    const run = async (name: string, offsetMs: number): Promise<number[]> => {
      const directory = join(harness.dir, `spool-${name}`);
      spoolWith(directory, `skew-${name}`);
      await harness.cloudwatch.reset();
      const config = parseConfig({
        ...harness.baseConfig(directory),
        meters: [
          {
            id: `skew-${name}`,
            host: '127.0.0.1',
            port: 1,
            registers: [{ channel: SIMULATED_CHANNEL, address: 0, type: 'uint32', unit: 'kWh', scale: 0.001 }],
          },
        ],
        polling: { intervalSeconds: INTERVAL, timeoutMs: 100 },
        publish: { holdSeconds: 0, drainStartDelayMaxSeconds: 0 },
      } satisfies GatewayConfigInput);
      const clock: AgentClock = { now: () => Date.now() + offsetMs, realDelay: (ms) => ms };
      const agent = await startGatewayAgent(config, { log: silentLog, clock, clockSync: async () => 'synchronized' });
      try {
        await waitFor(() => agent.status().spool.depth === 0, 30_000, `${name}: the spool to drain`);
      } finally {
        await agent.stop();
      }
      await harness.drained();
      await waitFor(async () => (await skewValues()).length > 0, 30_000, `${name}: GatewayClockSkew stored in CloudWatch`);
      return skewValues();
    };

    const correct = await run('correct', 0);
    assert.ok(Math.max(...correct) < 10 && Math.max(...correct) > -60, `a synchronized gateway: skew ${correct.join(', ')} s`);
    assert.ok(Math.max(...correct) < alarm.threshold);

    const fast = await run('fast', 5 * 60_000);
    const peak = Math.max(...fast);
    assert.ok(peak >= 290 && peak <= 305, `5 minutes fast: skew ${fast.join(', ')} s`);
    assert.ok(peak >= alarm.threshold, `the alarm (Maximum >= ${alarm.threshold} s) fires for ${peak} s`);
    // What the alarm reads: CloudWatch holds the fast gateway's values (reset before each run).
    assert.ok((await harness.cloudwatch.sum('GatewayClockSkew')) >= (290 * fast.length) / 2);
  });
});
