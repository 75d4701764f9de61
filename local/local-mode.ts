/**
 * Local mode: the whole pipeline on one machine. The platform (local/platform.ts) stands
 * in for AWS; each source simulator (gateways over MQTT, SMT servers, a READY sender) implements
 * LocalSource and feeds the real handlers' core code. While it runs, a progress block per source
 * is printed from the metrics the handlers publish; at the end every reading the simulators
 * produced is looked up in the store, and the run fails if one is lost or was stored twice.
 */
import { randomUUID } from 'node:crypto';
import type { MetricSource } from '../lambdas/core/metric-catalog.ts';
import type { Reading } from '../shared/reading.ts';
import { endProcesses, findMarkedProcesses, isRunning, runMarker, RUN_MARKER_VARIABLE } from './leftovers.ts';
import type { LocalPortName } from './defaults.ts';
import { LOCAL_BLOCK_TIME_ZONE } from './defaults.ts';
import { startLocalPlatform, type LocalPlatform } from './platform.ts';
import { checkLakeAgainstStore, localLakeFiles, type LakeCheck } from './lake.ts';
import { startQueryHttp } from './query-http.ts';
import {
  formatLatency,
  latencyFigures,
  matchLatencies,
  observerLag,
  type DisturbanceWindow,
  type LatencyFigures,
  type LatencyOrigin,
} from './latency.ts';
import { startStoreSightings, type StoreSightings } from './store-sightings.ts';
import {
  formatProgress,
  PROGRESS_METRICS,
  scanStoredReadings,
  tallyMetrics,
  verifySource,
  type ExpectedReading,
  type RateWindow,
  type SourceTally,
  type VerifyReport,
} from './progress.ts';

export interface LocalSource {
  source: MetricSource;
  /** Everything the simulator produced so far that must end up stored (latest value per reading). */
  expected(): ExpectedReading[];
  /** Subsets of expected() worth naming in the summary (e.g. SMT's LSE files), each checked on its own. */
  parts?(): Array<{ label: string; files: number; expected: ExpectedReading[] }>;
  /** Input produced but not yet stored (spooled readings, files on the server, deliveries in flight). */
  backlog(): number;
  /** Stop producing new input; what was produced must still be delivered. */
  quiesce(): Promise<void>;
  /** True once everything produced has been handed to the pipeline and processed. */
  drained(): Promise<boolean>;
  /** Outcomes besides the readings, checked before the stop while the platform runs (e.g. a forced certificate rotation). */
  checks?(): Promise<SourceCheck[]>;
  /** Every reading produced so far with the real time of its source event (poll, file landing, POST): the start of its latency. */
  origins?(): LatencyOrigin[];
  /** Lines telling an outside client how to join (mosquitto_pub, curl); printed at start. */
  joinHints(): string[];
  stop(): Promise<void>;
}

/** One outcome a source checks for the summary: its verdict and its summary lines. */
export interface SourceCheck {
  ok: boolean;
  lines: string[];
}

export type SourceFactory = (platform: LocalPlatform) => Promise<LocalSource>;

export interface OutagePlan {
  /** Milliseconds after the start when the broker goes down. */
  afterMs: number;
  /** How long it stays down. */
  forMs: number;
}

export interface LocalModeOptions {
  ports: Record<LocalPortName, number>;
  stateDir: string;
  sources: SourceFactory[];
  /** Run this long, then drain, verify and return; run until `signal` aborts when not given. */
  durationMs?: number;
  /**
   * Count `durationMs` from when the sources are up instead of from the call: a loaded machine can
   * take most of a short run to start, and the scheduled outage would then never happen (the
   * latency bench needs its backlog). @default false
   */
  durationAfterStartup?: boolean;
  brokerOutage?: OutagePlan;
  /** Extra actions at given times (e.g. SIGKILL of a gateway in the end-to-end test). */
  schedule?: { atMs: number; label: string; run(platform: LocalPlatform): Promise<void> }[];
  /** Longest wait for the backlog to drain after the run. @default 90000 */
  drainTimeoutMs?: number;
  progressIntervalMs?: number;
  signal?: AbortSignal;
  out(text: string): void;
  err(text: string): void;
}

export interface LocalModeSummary {
  ok: boolean;
  elapsedMs: number;
  perSource: Record<string, { report: VerifyReport; drained: boolean } & SourceTally>;
  /** The data lake (Parquet written by the readings feed) against the store; undefined when the feed did not catch up. */
  lake?: LakeCheck;
  /** Events the readings feed put on the local bus. */
  feedEvents: number;
  /** Source event → block stored, per source and phase (steady, backlog after the broker outage); see local/latency.ts. */
  latency: Array<LatencyFigures & { notStored: number }>;
  /** How long after each block's own write stamp the latency observer read it (ms): its figures are late by at most this. */
  observerLag?: { p50: number; p99: number };
  /** The broker outages that happened (epoch ms): under heavy load a run can end before its scheduled outage. */
  outages: DisturbanceWindow[];
  lines: string[];
}

/**
 * Resolves after `ms`, or at once when `signal` aborts. Takes its abort listener off again when the
 * timer fires: one listener left per call would pile up on the run's signal (one per progress tick)
 * until Node warns about a listener leak.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Ends what an earlier run on the same state folder left running (it ended uncleanly), or refuses
 * when that run is still alive. Then marks this process's environment, so every process this run
 * starts carries the marker (see leftovers.ts).
 */
async function claimStateDir(stateDir: string, runId: string, err: (text: string) => void): Promise<() => void> {
  const leftovers = (await findMarkedProcesses(stateDir)).filter((p) => p.runId !== runId);
  const owners = [...new Set(leftovers.map((p) => p.ownerPid))].filter((pid) => pid !== process.pid && isRunning(pid));
  if (owners.length > 0) {
    throw new Error(
      `another local mode (pid ${owners.join(', ')}) is running on ${stateDir}: stop it first, or give this one its own --state-dir and ports`,
    );
  }
  if (leftovers.length > 0) {
    err(
      `an earlier local mode on ${stateDir} did not end cleanly; stopping what it left running:\n${leftovers.map((p) => `  pid ${p.pid}: ${p.command.slice(0, 120)}`).join('\n')}\n`,
    );
    await endProcesses(leftovers.map((p) => p.pid));
  }
  const previous = process.env[RUN_MARKER_VARIABLE];
  process.env[RUN_MARKER_VARIABLE] = runMarker(stateDir, runId);
  return () => {
    if (previous === undefined) delete process.env[RUN_MARKER_VARIABLE];
    else process.env[RUN_MARKER_VARIABLE] = previous;
  };
}

/** Ends any process of this run still running after everything was stopped (nothing is left behind). */
async function endOwnProcesses(stateDir: string, runId: string, err: (text: string) => void): Promise<void> {
  const own = (await findMarkedProcesses(stateDir)).filter((p) => p.runId === runId);
  if (own.length === 0) return;
  err(`still running after the stop, ending: ${own.map((p) => `pid ${p.pid} (${p.command.slice(0, 80)})`).join(', ')}\n`);
  await endProcesses(own.map((p) => p.pid));
}

function memoize<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

/** The broker outage and scheduled actions the options ask for, as timers the run clears when it stops. */
function scheduleDisturbances(
  options: LocalModeOptions,
  platform: LocalPlatform,
  timers: NodeJS.Timeout[],
  outages: DisturbanceWindow[],
  err: (text: string) => void,
): void {
  if (options.brokerOutage) {
    const { afterMs, forMs } = options.brokerOutage;
    timers.push(
      setTimeout(() => {
        err(`[outage] IoT broker down for ${Math.round(forMs / 1000)} s\n`);
        const outage: DisturbanceWindow = { label: 'broker outage', from: Date.now() };
        outages.push(outage);
        void platform.stopBroker().then(() => {
          timers.push(
            setTimeout(() => {
              err('[outage] IoT broker back up\n');
              outage.to = Date.now();
              void platform.startBroker().catch((error: unknown) => err(`[outage] broker restart failed: ${String(error)}\n`));
            }, forMs),
          );
        });
      }, afterMs),
    );
  }
  for (const action of options.schedule ?? []) {
    timers.push(
      setTimeout(() => {
        err(`[${action.label}]\n`);
        void action.run(platform).catch((error: unknown) => err(`[${action.label}] failed: ${String(error)}\n`));
      }, action.atMs),
    );
  }
}

/** Stops the simulators producing, then waits (up to the deadline) until every source says what it produced is stored. */
async function drainSources(
  sources: LocalSource[],
  platform: LocalPlatform,
  timeoutMs: number,
  outages: DisturbanceWindow[],
): Promise<Map<LocalSource, boolean>> {
  for (const outage of outages) outage.to ??= Date.now();
  if (!platform.broker()) await platform.startBroker();
  await Promise.all(sources.map((source) => source.quiesce()));
  const drainDeadline = Date.now() + timeoutMs;
  const drained = new Map<LocalSource, boolean>();
  for (;;) {
    for (const source of sources) if (!drained.get(source)) drained.set(source, await source.drained());
    if ([...drained.values()].every(Boolean) || Date.now() > drainDeadline) break;
    await sleep(500);
  }
  await platform.iotQueue.whenEmpty();
  return drained;
}

/** Checks every source's readings against the store: the summary's lines and its verdict. */
async function summarize(
  sources: LocalSource[],
  platform: LocalPlatform,
  drained: Map<LocalSource, boolean>,
  elapsedMs: number,
  storedReadings: () => Promise<Reading[]>,
  { stateDir, err, sightings, outages }: { stateDir: string; err: (text: string) => void; sightings: StoreSightings; outages: DisturbanceWindow[] },
): Promise<LocalModeSummary> {
  const tallies = tallyMetrics(await platform.cloudwatch.totals(undefined, PROGRESS_METRICS));
  const summary: LocalModeSummary = { ok: true, elapsedMs, perSource: {}, feedEvents: 0, latency: [], outages, lines: [] };
  summary.lines.push('', `Summary after ${Math.round(summary.elapsedMs / 1000)} s:`);
  for (const source of sources) {
    const tally = tallies[source.source];
    const report = await verifySource(platform.store, source.expected(), tally, { source: source.source, storedReadings });
    const sourceDrained = drained.get(source) ?? false;
    const ok = report.lost.length === 0 && report.doubled === 0 && report.expected > 0 && sourceDrained;
    summary.ok &&= ok;
    summary.perSource[source.source] = { report, ...tally, drained: sourceDrained };
    summary.lines.push(
      `  ${ok ? 'ok  ' : 'FAIL'} ${source.source.padEnd(5)} produced ${report.expected} readings, found ${report.found} stored` +
        ` (stored ${tally.stored}, superseded ${tally.superseded}, duplicate readings ${tally.duplicate}, re-sent units absorbed ${tally.resent}, rejected ${tally.rejected});` +
        ` lost ${report.lost.length}, doubled ${report.doubled}${sourceDrained ? '' : ', NOT DRAINED'}${report.expected === 0 ? ', NOTHING PRODUCED' : ''}` +
        (report.outside.length > 0 ? `; outside readings ${report.outside.length} (not the simulators', not checked)` : ''),
    );
    for (const reading of report.outside.slice(0, 10)) {
      const at = reading.kind === 'interval' ? reading.start : reading.at;
      summary.lines.push(
        `       outside: ${reading.meterId} ${reading.channel} ${at.toISOString()} = ${reading.value} ${reading.unit} (from ${reading.source}:${reading.originId})`,
      );
    }
    if (report.outside.length > 10) summary.lines.push(`       outside: ... and ${report.outside.length - 10} more`);
    const parts = await verifyParts(platform.store, source, tally);
    summary.ok &&= parts.ok;
    summary.lines.push(...parts.lines);
    for (const check of (await source.checks?.()) ?? []) {
      summary.ok &&= check.ok;
      summary.lines.push(...check.lines);
    }
    for (const lost of report.lost.slice(0, 5))
      summary.lines.push(`       lost: ${lost.meterId} ${lost.channel} ${lost.at.toISOString()} = ${lost.value}`);
  }
  summary.lines.push(...(await checkFeed(platform, summary, storedReadings, stateDir, err)));
  summary.lines.push(...(await measureLatency(sources, sightings, outages, summary)));
  if (platform.iotDeadLetters.length)
    summary.lines.push(`  IoT dead-letter queue: ${platform.iotDeadLetters.length} message(s), first reason: ${platform.iotDeadLetters[0]!.reason}`);
  summary.lines.push(
    summary.ok
      ? 'Every simulated reading was stored exactly once.'
      : 'Some simulated readings were lost, doubled or not drained, or a check failed (see above).',
    '',
  );
  return summary;
}

/**
 * The query API over the platform's store, and beside it the page, whose counters are the running
 * pipeline's tallies (what the progress lines show). Prints the page's URL so it stands out.
 */
export async function startLocalQueryApi(
  platform: LocalPlatform,
  options: { port: number; out(text: string): void; pageRefreshMs?: number },
): Promise<{ url: string; pageUrl: string; stop(): Promise<void> }> {
  const queryApi = await startQueryHttp({
    store: platform.store,
    timeZone: LOCAL_BLOCK_TIME_ZONE,
    port: options.port,
    counters: async () => tallyMetrics(await platform.cloudwatch.totals(undefined, PROGRESS_METRICS)),
    ...(options.pageRefreshMs !== undefined ? { pageRefreshMs: options.pageRefreshMs } : {}),
  });
  const rule = '='.repeat(78);
  options.out(
    `\n${rule}\n  Open the page: ${queryApi.pageUrl}\n  (meters, a day or a week of readings with estimates and revisions marked, live counters)\n${rule}\n\n` +
      `Query API (the deployed API's handler, no SigV4 on loopback): ${queryApi.url}/meters\n` +
      `  e.g. curl '${queryApi.url}/meters/<meterId>/readings?from=<YYYY-MM-DD>&format=csv'  (format json, csv or espi)\n`,
  );
  return queryApi;
}

export async function runLocalMode(options: LocalModeOptions): Promise<LocalModeSummary> {
  const started = Date.now();
  const { out, err } = options;
  const runId = randomUUID();
  const releaseStateDir = await claimStateDir(options.stateDir, runId, err);
  let platform: LocalPlatform;
  try {
    err(`starting the local platform (DynamoDB Local, metrics sink, S3, IoT broker) under ${options.stateDir} ...\n`);
    platform = await startLocalPlatform({ ports: options.ports, stateDir: options.stateDir });
  } catch (error) {
    await endOwnProcesses(options.stateDir, runId, err);
    releaseStateDir();
    throw error;
  }
  const sources: LocalSource[] = [];
  const timers: NodeJS.Timeout[] = [];
  const outages: DisturbanceWindow[] = [];
  let sightings: StoreSightings | undefined;
  let queryApi: { url: string; stop(): Promise<void> } | undefined;
  try {
    queryApi = await startLocalQueryApi(platform, { port: options.ports.query, out });
    // Before any source starts, so the observer reads the stream from its first write.
    sightings = await startStoreSightings(platform);
    for (const factory of options.sources) sources.push(await factory(platform));
    const storedReadings = memoize(() => scanStoredReadings(platform.dynamo.client, platform.tables.readings));
    const hints = sources.flatMap((source) => source.joinHints());
    if (hints.length) out(`${['', 'Join from outside:', ...hints, ''].join('\n')}\n`);

    scheduleDisturbances(options, platform, timers, outages, err);
    const interval = options.progressIntervalMs ?? 5000;
    let window: RateWindow | undefined;
    const progress = async () => {
      const backlog = Object.fromEntries(sources.map((s) => [s.source, s.backlog()]));
      const shown = formatProgress(tallyMetrics(await platform.cloudwatch.totals(undefined, PROGRESS_METRICS)), window, Date.now(), backlog);
      window = shown.window;
      err(`[${Math.round((Date.now() - started) / 1000)} s]\n${shown.lines.map((line) => `  ${line}`).join('\n')}\n`);
    };
    const runFrom = options.durationAfterStartup ? Date.now() : started;
    const deadline = options.durationMs === undefined ? Number.POSITIVE_INFINITY : runFrom + options.durationMs;
    while (Date.now() < deadline && !options.signal?.aborted) {
      await sleep(Math.min(interval, deadline - Date.now()), options.signal);
      await progress();
    }

    err('stopping the simulators and draining what they produced ...\n');
    for (const timer of timers) clearTimeout(timer);
    const drained = await drainSources(sources, platform, options.drainTimeoutMs ?? 90_000, outages);
    await progress();

    const summary = await summarize(sources, platform, drained, Date.now() - started, storedReadings, {
      stateDir: options.stateDir,
      err,
      sightings,
      outages,
    });
    out(summary.lines.join('\n'));
    return summary;
  } finally {
    for (const timer of timers) clearTimeout(timer);
    for (const source of sources.reverse()) await source.stop().catch((error: unknown) => err(`stopping ${source.source}: ${String(error)}\n`));
    await queryApi?.stop();
    await sightings?.stop();
    await platform.stop();
    await endOwnProcesses(options.stateDir, runId, err);
    releaseStateDir();
  }
}

/** What each source's latency is measured from, for the summary. */
const LATENCY_FROM: Record<string, string> = {
  iot: '(gateway poll → block stored)',
  smt: '(file on the SMT server → block stored)',
  ready: '(READY POST → block stored)',
};

/**
 * Latency end to end per source (local/latency.ts): each reading's source event against the first
 * time the table's stream showed it stored. The broker outage's backlog is its own phase (IoT only:
 * the outage holds back nothing else).
 */
async function measureLatency(
  sources: LocalSource[],
  sightings: StoreSightings,
  outages: DisturbanceWindow[],
  summary: LocalModeSummary,
): Promise<string[]> {
  try {
    await sightings.caughtUp(60_000);
  } catch (error) {
    return [`  latency: not measured (${error instanceof Error ? error.message : String(error)})`];
  }
  const lag = observerLag(sightings.sightings());
  if (lag.count > 0) summary.observerLag = { p50: lag.p50, p99: lag.p99 };
  const outageText = outages.map((o) => `${Math.round(((o.to ?? o.from) - o.from) / 1000)} s broker outage`).join(', ') || 'no broker outage';
  const lines = [
    `  Latency end to end (source event → block write read off the table stream; ${outageText}):`,
    ...(lag.count > 0
      ? [
          `    (writes read off the stream p50 ${(lag.p50 / 1000).toFixed(2)} s, p99 ${(lag.p99 / 1000).toFixed(2)} s after their whole-second write stamp: figures are late by at most that)`,
        ]
      : []),
  ];
  for (const source of sources) {
    const origins: LatencyOrigin[] = source.origins?.() ?? [];
    if (origins.length === 0) continue;
    const { matched, notStored } = matchLatencies(origins, sightings.sightings());
    const figures = latencyFigures(source.source, matched, source.source === 'iot' ? outages : []);
    for (const f of figures) {
      summary.latency.push({ ...f, notStored: f.phase === 'steady' ? notStored.length : 0 });
      lines.push(`    ${formatLatency(f, f.phase === 'steady' ? notStored.length : 0, LATENCY_FROM[source.source] ?? '')}`);
    }
  }
  return lines;
}

/** The source's named subsets (e.g. SMT's LSE files), each checked on its own: every reading found. */
async function verifyParts(store: LocalPlatform['store'], source: LocalSource, tally: SourceTally): Promise<{ ok: boolean; lines: string[] }> {
  let ok = true;
  const lines: string[] = [];
  for (const part of source.parts?.() ?? []) {
    const report = await verifySource(store, part.expected, { ...tally, stored: 0 });
    const partOk = report.lost.length === 0 && report.expected > 0;
    ok &&= partOk;
    lines.push(
      `       ${partOk ? 'ok  ' : 'FAIL'} ${part.label}: ${part.files} file(s), produced ${report.expected} readings, found ${report.found} stored, lost ${report.lost.length}`,
    );
  }
  return { ok, lines };
}

/** Waits for the readings feed to deliver what the store holds, then checks the lake against the store (summary lines). */
async function checkFeed(
  platform: LocalPlatform,
  summary: LocalModeSummary,
  storedReadings: () => Promise<Reading[]>,
  stateDir: string,
  err: (text: string) => void,
): Promise<string[]> {
  try {
    await platform.feed.caughtUp(120_000);
  } catch (error) {
    summary.ok = false;
    const { lastError, ...stats } = platform.feed.stats();
    return [`  FAIL feed  ${error instanceof Error ? error.message : String(error)} (${JSON.stringify(stats)}; last error: ${lastError ?? 'none'})`];
  }
  summary.feedEvents = platform.feed.stats().events;
  const stored = await storedReadings();
  const lake = await checkLakeAgainstStore(localLakeFiles(stateDir), stored);
  summary.lake = lake;
  summary.ok &&= lake.ok;
  if (!lake.ok) err(`lake and store differ: ${JSON.stringify(lake.perSource)}\n`);
  const sums = Object.entries(lake.perSource)
    .map(
      ([source, { store, lake: inLake }]) =>
        `${source} ${inLake.count}/${store.count} readings, sum ${inLake.sum.toFixed(3)}/${store.sum.toFixed(3)}`,
    )
    .join('; ');
  return [
    `  ${lake.ok ? 'ok  ' : 'FAIL'} feed  ${summary.feedEvents} events on the bus; lake ${lake.rows} rows, latest revision per interval ${lake.latest} = store ${lake.storeReadings} readings (lake/store: ${sums})`,
  ];
}
