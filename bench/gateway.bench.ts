/**
 * Gateway agent figures:
 * - spool append throughput, durable (each batch fsync'd before append returns), by batch size;
 * - the time to drain a 24-hour outage of 1,000 meters at 15-minute readings (96,000 readings)
 *   through the real agent (a child process) over MQTT with mutual TLS to the local broker, with the default
 *   pacing (under IoT Core's 100 publishes/s and 512 KiB/s per connection), measured at the broker.
 *
 * Run alone: `npx tsx bench/gateway.bench.ts`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { createDevCa, issueDeviceCert, issueServerCert } from '../local/dev-ca.ts';
import { startLocalIotBroker } from '../local/mqtt-broker.ts';
import type { GatewayStatus } from '../gateway/src/agent.ts';
import { spawnGatewayAgent } from '../gateway/src/index.ts';
import { IOT_LIMITS, parseConfig } from '../gateway/src/config.ts';
import { peakRate } from '../gateway/src/pacer.ts';
import { freePort } from '../gateway/src/simulated-meter.ts';
import { Spool, type SpooledReading } from '../gateway/src/spool.ts';
import type { BenchSection } from './section.ts';

const fmt = (value: number, digits = 0) => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const METERS = 1000;
const INTERVALS = 96;

function backlogReading(meter: number, interval: number, dayStart: number): SpooledReading {
  return {
    meterId: `meter-${String(meter).padStart(5, '0')}`,
    channel: 'energy.active.import',
    start: dayStart + interval * 900,
    intervalSeconds: 900,
    value: Math.round(((interval * 31 + meter) % 97) * 13.7) / 1000,
    unit: 'kWh',
    quality: 'actual',
    counter: 1_000_000 + meter * 1000 + interval,
  };
}

export interface GatewayBenchResult {
  append: Array<{ batch: number; readings: number; readingsPerSecond: number; fsyncsPerSecond: number }>;
  drain: Array<{
    drainWindowReadings: number;
    readings: number;
    seconds: number;
    messages: number;
    bytes: number;
    peakPublishesPerSecond: number;
    peakKiBPerSecond: number;
    averageKiBPerSecond: number;
    flatBytes: number;
  }>;
}

function measureAppend(batch: number, readings: number): GatewayBenchResult['append'][number] {
  const directory = mkdtempSync(join(tmpdir(), 'mb-bench-spool-'));
  try {
    const spool = Spool.open({ directory, maxBytes: 1024 ** 3, segmentBytes: 4 * 1024 ** 2 });
    const day = Math.floor(Date.now() / 86_400_000) * 86_400 - 86_400;
    const started = performance.now();
    for (let done = 0; done < readings; done += batch) {
      spool.append(Array.from({ length: batch }, (_, k) => backlogReading((done + k) % METERS, Math.floor((done + k) / METERS) % INTERVALS, day)));
    }
    const seconds = (performance.now() - started) / 1000;
    spool.close();
    return { batch, readings, readingsPerSecond: readings / seconds, fsyncsPerSecond: readings / batch / seconds };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

async function measureDrain(drainWindowReadings: number): Promise<GatewayBenchResult['drain'][number]> {
  const dir = mkdtempSync(join(tmpdir(), 'mb-bench-gw-'));
  try {
    const ca = await createDevCa(dir);
    const [server, device] = await Promise.all([issueServerCert(ca, dir), issueDeviceCert(ca, dir, 'gw-bench')]);
    const received: Array<{ at: number; bytes: number }> = [];
    const broker = await startLocalIotBroker({
      caCertPath: ca.certPath,
      serverCertPath: server.certPath,
      serverKeyPath: server.keyPath,
      ruleName: 'meterbridge_bench_telemetry',
      onPublish: (publish) => void received.push({ at: publish.receivedAt, bytes: publish.payload.length }),
    });
    const spoolDirectory = join(dir, 'spool');
    const spool = Spool.open({ directory: spoolDirectory, maxBytes: 512 * 1024 ** 2 });
    const day = Math.floor(Date.now() / 86_400_000) * 86_400 - 2 * 86_400;
    // Poll order, as the outage left it: every meter for interval 0, then interval 1, ...
    for (let interval = 0; interval < INTERVALS; interval++) spool.append(Array.from({ length: METERS }, (_, m) => backlogReading(m, interval, day)));
    spool.close();

    const flatBytes = Array.from({ length: METERS * INTERVALS }, (_, i) => {
      const r = backlogReading(i % METERS, Math.floor(i / METERS), day);
      const start = new Date(r.start * 1000).toISOString();
      const end = new Date((r.start + 900) * 1000).toISOString();
      return JSON.stringify({ meterId: r.meterId, channel: r.channel, start, end, value: r.value, unit: r.unit, quality: r.quality }).length + 1;
    }).reduce((a, b) => a + b, 0);

    const config = {
      thingName: 'gw-bench',
      iot: {
        endpoint: '127.0.0.1',
        port: broker.port,
        ruleName: 'meterbridge_bench_telemetry',
        certFile: device.certPath,
        keyFile: device.keyPath,
        caFile: ca.certPath,
        protocolVersion: 4,
      },
      // A meter nobody answers for: the bench is about the backlog.
      meters: [
        {
          id: 'meter-none',
          host: '127.0.0.1',
          port: await freePort(),
          registers: [{ channel: 'energy.active.import', address: 0, type: 'uint32', unit: 'kWh', scale: 0.001 }],
        },
      ],
      spool: { directory: spoolDirectory },
      publish: { holdSeconds: 0, drainStartDelayMaxSeconds: 0, drainWindowReadings },
      statusEverySeconds: 0.1,
    };
    parseConfig(config);
    const configPath = join(dir, 'gateway.yaml');
    writeFileSync(configPath, toYaml(config));
    // The agent in its own process, as in the field: the broker's clock is not held up by the agent's work.
    const child = spawnGatewayAgent(configPath, { stdio: ['ignore', 'ignore', 'ignore'] });
    const statusPath = join(spoolDirectory, 'status.json');
    const status = (): GatewayStatus | undefined => {
      try {
        return JSON.parse(readFileSync(statusPath, 'utf8')) as GatewayStatus;
      } catch {
        return undefined;
      }
    };
    let started: number | undefined;
    for (;;) {
      const s = status();
      if (s !== undefined && s.pid === child.pid) {
        started ??= Date.parse(s.startedAt);
        if (s.spool.depth === 0) break;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // From the agent's start to the last PUBACK (the broker acknowledges as it receives).
    const seconds = (Math.max(...received.map((r) => r.at)) - started!) / 1000;
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    await broker.close();
    const peak = peakRate(received, 1000);
    const bytes = received.reduce((sum, r) => sum + r.bytes, 0);
    return {
      drainWindowReadings,
      readings: METERS * INTERVALS,
      seconds,
      messages: received.length,
      bytes,
      peakPublishesPerSecond: peak.publishes,
      peakKiBPerSecond: peak.bytes / 1024,
      averageKiBPerSecond: bytes / 1024 / seconds,
      flatBytes,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runGatewayBench(): Promise<GatewayBenchResult> {
  const append = [measureAppend(1, 2_000), measureAppend(100, 100_000), measureAppend(1000, 200_000)];
  // The default window regroups the whole backlog per meter; a window of one poll cycle shows what
  // regrouping saves (one-value blocks) and puts the pacing under real load.
  return { append, drain: [await measureDrain(100_000), await measureDrain(METERS)] };
}

export const gatewayBench: BenchSection = {
  title: 'Gateway agent (spool and backlog drain)',
  async run() {
    const result = await runGatewayBench();
    const lines = [
      'Spool append, durable (one write + fsync per batch; a poll cycle of N meters is one batch):',
      '',
      '| batch (readings per fsync) | readings | readings/s | fsyncs/s |',
      '| ---: | ---: | ---: | ---: |',
      ...result.append.map((a) => `| ${fmt(a.batch)} | ${fmt(a.readings)} | ${fmt(a.readingsPerSecond)} | ${fmt(a.fsyncsPerSecond)} |`),
      '',
      `Backlog drain: a 24-hour outage of ${fmt(METERS)} meters at 15-minute readings (${fmt(METERS * INTERVALS)} readings) through the agent over MQTT with mTLS to the local broker, default pacing (90 publishes/s and 460 KiB/s over every 1.25 s window, 50 in flight, 120 KiB messages); measured at the broker over sliding 1 s windows. Goal: under 15 s.`,
      '',
      `| figure | ${result.drain.map((d) => `drainWindowReadings ${fmt(d.drainWindowReadings)}${d.drainWindowReadings >= METERS * INTERVALS ? ' (default: whole backlog regrouped per meter)' : ' (one poll cycle per window)'}`).join(' | ')} |`,
      `| --- | ${result.drain.map(() => '---:').join(' | ')} |`,
      `| time to drain (agent start to last PUBACK) | ${result.drain.map((d) => `${fmt(d.seconds, 2)} s`).join(' | ')} |`,
      `| messages | ${result.drain.map((d) => fmt(d.messages)).join(' | ')} |`,
      `| bytes published (per reading) | ${result.drain.map((d) => `${fmt(d.bytes)} (${fmt(d.bytes / d.readings, 1)})`).join(' | ')} |`,
      `| peak publishes/s (limit ${IOT_LIMITS.publishesPerSecond}) | ${result.drain.map((d) => fmt(d.peakPublishesPerSecond)).join(' | ')} |`,
      `| peak KiB/s (limit ${IOT_LIMITS.bytesPerSecond / 1024}) | ${result.drain.map((d) => fmt(d.peakKiBPerSecond, 1)).join(' | ')} |`,
      `| average KiB/s | ${result.drain.map((d) => fmt(d.averageKiBPerSecond, 1)).join(' | ')} |`,
      '',
      `The same readings as flat JSON readings would be ${fmt(result.drain[0]!.flatBytes)} bytes: at least ${fmt(result.drain[0]!.flatBytes / IOT_LIMITS.bytesPerSecond, 1)} s at 512 KiB/s.`,
    ];
    return lines;
  },
};

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${(await gatewayBench.run()).join('\n')}\n`);
}
