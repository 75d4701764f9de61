/**
 * Latency end to end in local mode's stand-ins: from a reading's source event (its poll at a
 * gateway, its SMT file landing on the server, its READY POST) to the block write that stored it,
 * read off DynamoDB Local's stream (local/latency.ts, local/store-sightings.ts).
 *
 * Run 1 is local mode as `npm start` runs it (2 gateways × 5 meters, the SMT servers, READY for 10
 * meters) with a broker outage: steady figures, and the backlog the outage held in the gateways'
 * spools. Run 2 is the gateways alone with `publish.holdSeconds: 0`, which shows what the hold (the
 * gateway waiting to publish a reading with later ones, for fewer and fuller blocks) accounts for.
 *
 * Knobs: BENCH_LATENCY_SECONDS (run 1, default 90; run 2 is half of it).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runLocalMode, type LocalModeSummary, type OutagePlan, type SourceFactory } from '../local/local-mode.ts';
import { iotSource } from '../local/sources/iot.ts';
import { readySource } from '../local/sources/ready.ts';
import { smtSource } from '../local/sources/smt.ts';
import type { LocalPortName } from '../local/defaults.ts';
import { freeLocalPorts } from '../test/support/local-ports.ts';
import type { BenchSection } from './section.ts';

/** The demo clock of the gateways: meter time runs this many times faster (local mode's default). */
const SPEEDUP = 300;

interface Run {
  label: string;
  durationMs: number;
  outage?: OutagePlan;
  sources(ports: Record<LocalPortName, number>, stateDir: string): SourceFactory[];
}

async function runOnce(run: Run): Promise<LocalModeSummary> {
  const stateDir = await mkdtemp(join(tmpdir(), 'mb-latency-bench-'));
  try {
    const ports = await freeLocalPorts();
    const summary = await runLocalMode({
      ports,
      stateDir,
      sources: run.sources(ports, stateDir),
      durationMs: run.durationMs,
      durationAfterStartup: true,
      ...(run.outage ? { brokerOutage: run.outage } : {}),
      progressIntervalMs: 30_000,
      out: () => {},
      err: () => {},
    });
    if (!summary.ok || summary.latency.length === 0)
      process.stderr.write(`bench: latency run "${run.label}" did not verify or measured nothing:\n${summary.lines.join('\n')}\n`);
    return summary;
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
}

const FROM: Record<string, string> = {
  iot: 'gateway poll',
  smt: 'file on the SMT server',
  ready: 'READY POST',
};

const s = (ms: number) => (ms / 1000).toFixed(2);

export async function latencyLines(): Promise<string[]> {
  const seconds = Number(process.env.BENCH_LATENCY_SECONDS ?? 90);
  const outage: OutagePlan = { afterMs: Math.round(seconds * 250), forMs: Math.round(seconds * 170) };
  const runs: Run[] = [
    {
      label: 'local mode defaults, broker outage',
      durationMs: seconds * 1000,
      outage,
      sources: (ports, stateDir) => [
        (platform) => iotSource(platform, { gateways: 2, metersPerGateway: 5, stateDir, modbusBasePort: ports.modbus, speedup: SPEEDUP }),
        (platform) => smtSource(platform, { stateDir, ftpsPort: ports.ftps, sftpPort: ports.sftp }),
        (platform) => readySource(platform, { port: ports.ready, meters: 10 }),
      ],
    },
    {
      label: 'gateways with publish.holdSeconds 0',
      durationMs: (seconds * 1000) / 2,
      sources: (ports, stateDir) => [
        (platform) =>
          iotSource(platform, { gateways: 2, metersPerGateway: 5, stateDir, modbusBasePort: ports.modbus, speedup: SPEEDUP, holdSeconds: 0 }),
      ],
    },
  ];
  const lines = [
    `Local mode for ${seconds} s (2 gateways × 5 meters on a demo clock ${SPEEDUP}x real time, the SMT servers fetched every 5 s, READY for 10 meters every 3 s),`,
    `IoT broker down from ${s(outage.afterMs)} s for ${s(outage.forMs)} s; then the gateways alone with holdSeconds 0 for ${seconds / 2} s.`,
    'Latency = source event → the block write read off DynamoDB Local stream by an observer polling every 100 ms (how late it read, against the',
    "blocks' whole-second write stamps, is printed below the table). Backlog = polled during",
    'the outage, or after it until what it held back was stored. Real seconds; the gateways hold in meter time (÷ 300 here).',
    '',
    '| run | source (from) | phase | readings | p50 s | p95 s | p99 s | max s | not stored |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const lags: string[] = [];
  for (const run of runs) {
    process.stderr.write(`bench: latency, ${run.label}...\n`);
    const summary = await runOnce(run);
    if (summary.observerLag) lags.push(`${run.label}: p50 ${s(summary.observerLag.p50)} s, p99 ${s(summary.observerLag.p99)} s`);
    for (const f of summary.latency) {
      lines.push(
        `| ${run.label}${summary.ok ? '' : ' (did not verify)'} | ${f.source} (${FROM[f.source] ?? '?'}) | ${f.phase} | ${f.count} | ${s(f.p50)} | ${s(f.p95)} | ${s(f.p99)} | ${s(f.max)} | ${f.notStored} |`,
      );
    }
  }
  lines.push('', `Writes read off the stream after their whole-second write stamp (an upper bound on how late the figures are): ${lags.join('; ')}.`);
  lines.push(
    '',
    'What dominates (docs/performance.md, "Latency end to end"): IoT, the gateway hold (publish.holdSeconds, 3600 s of meter time = 12 s here, 1 h',
    'deployed); SMT, the fetch schedule (5 s here, rate(15 minutes) deployed) and the decrypt + parse of the file; READY, nothing (it is stored in the request).',
  );
  return lines;
}

export const latencyBench: BenchSection = {
  title: 'Latency end to end (local mode)',
  run: latencyLines,
};
