/**
 * Meter polling against the simulated meters over real Modbus TCP on loopback: deltas of the
 * cumulative register, and every way a meter can fail becoming a counted read error.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLog } from '../../shared/log.ts';
import { parseConfig } from '../../gateway/src/config.ts';
import { ModbusMeterReader } from '../../gateway/src/modbus.ts';
import { Poller } from '../../gateway/src/poller.ts';
import { freePort, SIMULATED_CHANNEL, startSimulatedMeters, type SimulatedMeters } from '../../gateway/src/simulated-meter.ts';
import { Spool } from '../../gateway/src/spool.ts';
import type { AgentClock } from '../../gateway/src/clock.ts';

let sim: SimulatedMeters;
let now = Date.parse('2026-11-20T06:00:00Z');
const clock: AgentClock = { now: () => now, realDelay: (ms) => ms };
const dirs: string[] = [];

before(async () => {
  sim = await startSimulatedMeters({ count: 3, clock });
});
after(async () => {
  await sim?.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function pollerFor(meters: unknown[]): Promise<{ poller: Poller; spool: Spool }> {
  const directory = mkdtempSync(join(tmpdir(), 'mb-gwpoll-'));
  dirs.push(directory);
  const config = parseConfig({
    thingName: 'gw-0001',
    iot: { endpoint: '127.0.0.1', ruleName: 'r', certFile: 'c', keyFile: 'k', caFile: 'a' },
    meters,
    polling: { intervalSeconds: 900, timeoutMs: 200 },
    spool: { directory, maxBytes: '1MiB', segmentBytes: '64kB' },
  });
  const spool = Spool.open({ directory });
  return { poller: new Poller({ config, spool, clock, log: silentLog }), spool };
}

describe('Modbus TCP polling', () => {
  it('reports each interval as the difference of the cumulative register at its two ends', async () => {
    const { poller, spool } = await pollerFor(sim.meterConfigs());
    const first = now / 1000;
    assert.deepEqual(await poller.pollOnce(first), { taken: 0, errors: 0 }, 'the first read is the baseline');
    now += 900_000;
    assert.deepEqual(await poller.pollOnce(first + 900), { taken: 3, errors: 0 });
    const readings = spool.readForward(0, 10);
    assert.deepEqual(
      readings.map((r) => [r.meterId, r.start, r.value]),
      sim.meters.map((m, i) => [m.meterId, first, sim.intervalKwh(i, first, 900)]),
    );
    assert.ok(readings.every((r) => r.channel === SIMULATED_CHANNEL && r.unit === 'kWh' && r.value > 0));

    // A missed boundary leaves that interval out instead of folding two intervals into one.
    now += 2 * 900_000;
    assert.equal((await poller.pollOnce(first + 2700)).taken, 0);

    // A read long after its boundary: the interval it ends and the one it starts are estimates.
    now += 900_000 + 120_000;
    assert.equal((await poller.pollOnce(first + 3600)).taken, 3);
    now += 900_000 - 120_000;
    assert.equal((await poller.pollOnce(first + 4500)).taken, 3);
    assert.deepEqual(
      spool.readForward(3, 10).map((r) => r.quality),
      ['estimated', 'estimated', 'estimated', 'estimated', 'estimated', 'estimated'],
    );
    assert.equal(poller.stats().lateReads, 3);
    now += 900_000;
    await poller.pollOnce(first + 5400);
    assert.deepEqual(
      spool.readForward(9, 10).map((r) => r.quality),
      ['actual', 'actual', 'actual'],
      'on time again: actual',
    );
    await poller.stop();
    spool.close();
  });

  it('counts timeouts, Modbus exceptions, unknown unit ids and unreachable meters as read errors and keeps going', async () => {
    const deadPort = await freePort();
    const meters = [
      ...sim.meterConfigs(),
      {
        id: 'missing-unit',
        host: '127.0.0.1',
        port: sim.port,
        unitId: 99,
        registers: [{ channel: SIMULATED_CHANNEL, address: 0, type: 'uint32', unit: 'kWh', scale: 0.001 }],
      },
      {
        id: 'unreachable',
        host: '127.0.0.1',
        port: deadPort,
        registers: [{ channel: SIMULATED_CHANNEL, address: 0, type: 'uint32', unit: 'kWh', scale: 0.001 }],
      },
    ];
    const { poller, spool } = await pollerFor(meters);
    sim.setFault(0, 'timeout');
    sim.setFault(1, 'exception');
    try {
      const start = now / 1000;
      await poller.pollOnce(start);
      now += 900_000;
      const result = await poller.pollOnce(start + 900);
      assert.equal(result.taken, 1, 'the healthy meter still delivers');
      assert.equal(result.errors, 4);
      const stats = poller.stats();
      assert.equal(stats.readErrors, 8);
      assert.deepEqual(Object.keys(stats.readErrorsByMeter).sort(), ['missing-unit', 'sim-0001', 'sim-0002', 'unreachable']);

      // Healed meters deliver again once they have a fresh baseline.
      sim.setFault(0, undefined);
      sim.setFault(1, undefined);
      now += 900_000;
      await poller.pollOnce(start + 1800);
      now += 900_000;
      assert.equal((await poller.pollOnce(start + 2700)).taken, 3);
    } finally {
      sim.setFault(0, undefined);
      sim.setFault(1, undefined);
      await poller.stop();
      spool.close();
    }
  });

  it('a reader returns per-register errors and never throws', async () => {
    const reader = new ModbusMeterReader(
      {
        id: 'x',
        host: '127.0.0.1',
        port: sim.port,
        unitId: 1,
        registers: [
          { channel: 'a', address: 0, type: 'uint32', wordOrder: 'big', table: 'input', scale: 1, unit: 'Wh', mode: 'delta', quality: 'actual' },
        ],
      },
      200,
    );
    const read = await reader.read(); // the simulated meters have no input registers
    assert.equal(read.values.size, 0);
    assert.equal(read.errors.length, 1);
    reader.close();
  });
});
