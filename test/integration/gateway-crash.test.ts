/**
 * The gateway agent as a child process, killed with SIGKILL again and again: at each step of the
 * commit protocol on purpose (METERBRIDGE_GATEWAY_CRASH_AT: after a reading batch is fsync'd, after
 * messages are written to the outbox, right after a publish, between PUBACK and the cursor write,
 * right after the cursor write) and at random moments. After a final clean run has drained the
 * spool, every reading the agent reported as taken is in DynamoDB Local with the value the meter
 * measured, and nothing was stored twice.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { FAULT_POINTS, spawnGatewayAgent, type FaultPoint, type GatewayStatus } from '../../gateway/src/index.ts';
import { IOT_LIMITS, type GatewayConfigInput } from '../../gateway/src/config.ts';
import { demoClock } from '../../gateway/src/clock.ts';
import { peakRate } from '../../gateway/src/pacer.ts';
import { SIMULATED_CHANNEL, startSimulatedMeters, type SimulatedMeters } from '../../gateway/src/simulated-meter.ts';
import { demoClockConfig, startGatewayHarness, waitFor, type GatewayHarness } from '../support/gateway-harness.ts';

const INTERVAL = 900;
const SPEEDUP = 9000; // one 15-minute interval every 100 ms
const METERS = 3;

let harness: GatewayHarness;
let sim: SimulatedMeters;
const clockConfig = demoClockConfig(SPEEDUP, 12);

before(async () => {
  harness = await startGatewayHarness();
  const clock = demoClock(Date.parse(clockConfig.virtualStart), Date.parse(clockConfig.realStart), SPEEDUP);
  sim = await startSimulatedMeters({ count: METERS, clock, stepSeconds: INTERVAL, idPrefix: 'crash-' });
});

after(async () => {
  await sim?.stop();
  await harness?.close();
});

interface RunResult {
  signal: NodeJS.Signals | null;
  code: number | null;
  /** Interval starts (epoch s) of polls logged as committed with readings. */
  committed: number[];
  /** Whether the child killed itself at its fault point (rather than by our timer). */
  selfKilled: boolean;
}

/** Parses the child's JSON log lines: committed polls, and the moment the agent had started. */
function watchLog(child: ChildProcess, committed: number[], onStarted: () => void = () => {}): void {
  let buffered = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line) as { message?: string; intervalStart?: string; readings?: number };
      if (entry.message === 'gateway agent starting') onStarted();
      if (entry.message === 'poll committed' && (entry.readings ?? 0) > 0) committed.push(Date.parse(entry.intervalStart!) / 1000);
    }
  });
}

/** Runs the agent until it kills itself at its fault point, or until `killAfterMs` after it started (module loading on a busy machine takes seconds). */
async function runUntilKilled(configPath: string, crashAt: string | undefined, killAfterMs: number): Promise<RunResult> {
  const committed: number[] = [];
  const child = spawnGatewayAgent(configPath, { env: crashAt ? { METERBRIDGE_GATEWAY_CRASH_AT: crashAt } : {} });
  let killedByUs = false;
  let timer: NodeJS.Timeout | undefined;
  const kill = () => {
    killedByUs = true;
    child.kill('SIGKILL');
  };
  watchLog(child, committed, () => {
    timer ??= setTimeout(kill, killAfterMs);
  });
  const startupGuard = setTimeout(kill, 20_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  clearTimeout(startupGuard);
  return { code, signal, committed, selfKilled: !killedByUs && signal === 'SIGKILL' };
}

describe('gateway agent killed with SIGKILL at random moments', () => {
  it('loses nothing and stores nothing twice across 22 kills at append, outbox, publish, ack and cursor update', async () => {
    const spoolDirectory = join(harness.dir, 'spool-crash');
    const config: GatewayConfigInput = {
      ...harness.baseConfig(spoolDirectory),
      meters: sim.meterConfigs(),
      // The simulated index moves in 900 s steps: a read up to 850 s late still sees its boundary's value.
      polling: { intervalSeconds: INTERVAL, timeoutMs: 80, maxReadDelaySeconds: 850 },
      // Small segments: rotation and deletion of delivered segments happen during the test too.
      spool: { directory: spoolDirectory, maxBytes: '1MiB', segmentBytes: '2kB' },
      publish: { holdSeconds: 1800, drainStartDelayMaxSeconds: 0.05 },
      demoClock: clockConfig,
    };
    const configPath = await harness.writeConfig(config, 'crash.yaml');

    const random = (n: number) => Math.floor(Math.random() * n);
    const trials: Array<{ crashAt?: string; killAfterMs: number }> = [];
    for (const point of FAULT_POINTS) for (let k = 0; k < 2; k++) trials.push({ crashAt: `${point}:${1 + random(3)}`, killAfterMs: 2500 });
    for (let k = 0; k < 12; k++) trials.push({ killAfterMs: 100 + random(900) });

    const committed = new Set<number>();
    const hits = new Map<FaultPoint, number>();
    for (const trial of trials) {
      const result = await runUntilKilled(configPath, trial.crashAt, trial.killAfterMs);
      assert.equal(result.signal, 'SIGKILL', `the agent was killed, it did not exit on its own (code ${result.code})`);
      for (const start of result.committed) committed.add(start);
      if (trial.crashAt && result.selfKilled) {
        const point = trial.crashAt.split(':')[0] as FaultPoint;
        hits.set(point, (hits.get(point) ?? 0) + 1);
      }
    }

    // A clean run drains what is left; then the meters go quiet so the backlog can reach zero.
    const finalCommitted: number[] = [];
    const child = spawnGatewayAgent(configPath);
    watchLog(child, finalCommitted);
    const statusPath = join(spoolDirectory, 'status.json');
    const readStatus = (): GatewayStatus | undefined =>
      existsSync(statusPath) ? (JSON.parse(readFileSync(statusPath, 'utf8')) as GatewayStatus) : undefined;
    try {
      await waitFor(() => readStatus()?.pid === child.pid && (readStatus()?.poller.cycles ?? 0) >= 3, 10_000, 'the final run to poll');
      for (let i = 0; i < METERS; i++) sim.setFault(i, 'exception');
      await waitFor(
        () => {
          const s = readStatus();
          return s !== undefined && s.pid === child.pid && s.poller.readErrors > 0 && s.spool.depth === 0 && s.spool.pendingMessages === 0;
        },
        20_000,
        'the final run to drain the spool',
      );
    } finally {
      child.kill('SIGTERM');
      const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      assert.equal(exitCode, 0, 'SIGTERM stops the agent cleanly');
      for (let i = 0; i < METERS; i++) sim.setFault(i, undefined);
    }
    for (const start of finalCommitted) committed.add(start);
    await harness.drained();

    assert.ok(committed.size >= 20, `enough readings taken across the trials (${committed.size} intervals)`);
    let storedTotal = 0;
    for (const [index, meter] of sim.meters.entries()) {
      const stored = await harness.readings(meter.meterId, SIMULATED_CHANNEL, new Date(Date.parse(clockConfig.virtualStart)), new Date());
      storedTotal += stored.length;
      const starts = new Set(stored.map((r) => (r.kind === 'interval' ? r.start.getTime() / 1000 : NaN)));
      const missing = [...committed].filter((start) => !starts.has(start));
      assert.deepEqual(
        missing.map((s) => new Date(s * 1000).toISOString()),
        [],
        `${meter.meterId}: every reading logged as taken was delivered`,
      );
      for (const reading of stored) {
        if (reading.kind !== 'interval') assert.fail('interval readings only');
        if (reading.quality === 'estimated') continue; // read late on a busy machine: flagged, not exact
        assert.equal(
          reading.value,
          sim.intervalKwh(index, reading.start.getTime() / 1000, INTERVAL),
          `${meter.meterId} ${reading.start.toISOString()}`,
        );
      }
    }

    const counts = harness.outcomes.reduce(
      (sum, o) => (o.status === 'stored' ? { stored: sum.stored + o.counts.stored, conflict: sum.conflict + o.counts.conflict } : sum),
      { stored: 0, conflict: 0 },
    );
    assert.equal(counts.stored, storedTotal, 'each stored reading was written exactly once');
    assert.equal(counts.conflict, 0, 'no reading arrived with two different values');
    assert.equal(harness.outcomes.filter((o) => o.status === 'rejected').length, 0);

    // A seq re-sent after a crash carries exactly the bytes it carried the first time.
    const bySeq = new Map<number, string>();
    for (const publish of harness.published) {
      const known = bySeq.get(publish.seq);
      if (known) assert.equal(publish.digest, known, `seq ${publish.seq} was re-sent with the same content`);
      else bySeq.set(publish.seq, publish.digest);
    }
    for (const point of FAULT_POINTS)
      assert.ok((hits.get(point) ?? 0) >= 1, `a crash happened at ${point} (hits: ${JSON.stringify(Object.fromEntries(hits))})`);
    const peak = peakRate(harness.published, 1000);
    assert.ok(
      peak.publishes <= IOT_LIMITS.publishesPerSecond && peak.bytes <= IOT_LIMITS.bytesPerSecond,
      `within IoT Core's per-connection limits (${JSON.stringify(peak)})`,
    );
  });
});
