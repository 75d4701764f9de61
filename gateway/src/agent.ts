/**
 * The gateway agent: the poller fills the spool, the publisher drains it, and a status file
 * (status.json in the spool directory) tells an operator how far behind it is.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { consoleLog, type Log } from '../../shared/log.ts';
import { clockFor, type AgentClock } from './clock.ts';
import { assertTlsFilesReadable, type GatewayConfig } from './config.ts';
import { Poller, type PollerStats } from './poller.ts';
import type { ClockSyncCheck } from './clock-sync.ts';
import { Publisher, type PublisherFaultPoint, type PublisherStats } from './publisher.ts';
import { Spool, type SpoolFaultPoint, type SpoolStats } from './spool.ts';
import { CertificateRotator, type RotationStats } from './rotation.ts';
import { Signal } from './signal.ts';
import { GATEWAY_VERSION } from './version.ts';
import type { StatusReport } from '../../shared/gateway-events.ts';
import { gatewayEventTopic } from '../../shared/telemetry.ts';

export type FaultPoint = SpoolFaultPoint | PublisherFaultPoint;
export const FAULT_POINTS: readonly FaultPoint[] = ['append', 'outbox', 'publish', 'ack', 'state'];

export interface GatewayStatus {
  thingName: string;
  pid: number;
  startedAt: string;
  /** When this status was taken (wall clock). */
  updatedAt: string;
  spool: SpoolStats;
  /** The oldest reading not yet acknowledged by the cloud. */
  oldestUnsentReading: { meterId: string; channel: string; intervalStart: string } | null;
  poller: PollerStats;
  publisher: PublisherStats;
  /** Certificate in use and rotation progress (absent when rotation is disabled). */
  rotation?: RotationStats;
}

export interface GatewayAgent {
  status(): GatewayStatus;
  /** Starts a certificate rotation at the next check, whatever the certificate's age (as `meterbridge-gateway rotate`). */
  rotateNow(): void;
  /** Stops polling and publishing, persists the cursor and closes the spool. */
  stop(): Promise<void>;
}

export interface GatewayAgentOptions {
  /** @default consoleLog (JSON lines on stderr) */
  log?: Log;
  /** @default the wall clock, or the config's demoClock */
  clock?: AgentClock;
  /** @default Math.random */
  random?: () => number;
  /** Crash-test hook: called at each fault point (see faultInjectionFromEnv). */
  faultPoint?: (point: FaultPoint) => void;
  /** Milliseconds between ack and durable cursor write. @default 100 */
  persistDelayMs?: number;
  /** Whether the system clock is synchronized. @default timedatectl (clock-sync.ts) for the wall clock */
  clockSync?: ClockSyncCheck;
}

/**
 * Test-only: `METERBRIDGE_GATEWAY_CRASH_AT=<point>:<n>` kills the process with SIGKILL the n-th
 * time it passes `point` (append | outbox | publish | ack | state), so crash tests hit every
 * step of the commit protocol on purpose rather than by luck.
 */
export function faultInjectionFromEnv(env: NodeJS.ProcessEnv = process.env): ((point: FaultPoint) => void) | undefined {
  const spec = env.METERBRIDGE_GATEWAY_CRASH_AT;
  if (!spec) return undefined;
  const match = /^(append|outbox|publish|ack|state):(\d+)$/.exec(spec);
  if (!match) throw new Error(`METERBRIDGE_GATEWAY_CRASH_AT must be <${FAULT_POINTS.join('|')}>:<n>, got "${spec}"`);
  const target = match[1] as FaultPoint;
  let remaining = Number(match[2]);
  return (point) => {
    if (point === target && --remaining <= 0) process.kill(process.pid, 'SIGKILL');
  };
}

export async function startGatewayAgent(config: GatewayConfig, options: GatewayAgentOptions = {}): Promise<GatewayAgent> {
  const log = options.log ?? consoleLog;
  assertTlsFilesReadable(config);
  const clock = options.clock ?? clockFor(config);
  const startedAt = new Date().toISOString();
  const spool = Spool.open({
    directory: config.spool.directory,
    maxBytes: config.spool.maxBytes,
    segmentBytes: config.spool.segmentBytes,
    whenFull: config.spool.whenFull,
    warnAtPercent: config.spool.warnAtPercent,
    log,
    ...(options.faultPoint ? { faultPoint: options.faultPoint } : {}),
  });
  const opened = spool.stats();
  log.info('gateway agent starting', {
    thingName: config.thingName,
    meters: config.meters.length,
    spoolDepth: opened.depth,
    pendingMessages: opened.pendingMessages,
    nextSeq: opened.nextSeq,
    tornRecordsDropped: opened.tornRecordsDropped,
  });

  const stopping = new Signal();
  const rotator = config.rotation.enabled
    ? new CertificateRotator({ config, log, reconnect: () => publisher.reconnect(), sleep: (ms) => stopping.wait(ms) })
    : undefined;
  const publisher = new Publisher({
    config,
    spool,
    clock,
    log,
    ...(rotator ? { rotator } : {}),
    ...(options.random ? { random: options.random } : {}),
    ...(options.faultPoint ? { faultPoint: options.faultPoint } : {}),
    ...(options.persistDelayMs !== undefined ? { persistDelayMs: options.persistDelayMs } : {}),
  });
  const poller = new Poller({
    config,
    spool,
    clock,
    log,
    onCommitted: () => publisher.wake(),
    ...(options.clockSync ? { clockSync: options.clockSync } : {}),
  });

  const status = (): GatewayStatus => {
    const oldest = spool.oldestUnsent();
    return {
      thingName: config.thingName,
      pid: process.pid,
      startedAt,
      updatedAt: new Date().toISOString(),
      spool: spool.stats(),
      oldestUnsentReading: oldest
        ? { meterId: oldest.meterId, channel: oldest.channel, intervalStart: new Date(oldest.start * 1000).toISOString() }
        : null,
      poller: poller.stats(),
      publisher: publisher.stats(),
      ...(rotator ? { rotation: rotator.stats() } : {}),
    };
  };
  const statusPath = join(config.spool.directory, 'status.json');
  const writeStatus = () => {
    try {
      writeFileSync(`${statusPath}.tmp`, `${JSON.stringify(status(), null, 2)}\n`);
      renameSync(`${statusPath}.tmp`, statusPath);
    } catch (error) {
      log.warn('could not write status.json', { error: String(error) });
    }
  };
  const stopTimers = startTimers(config, { status, writeStatus, log, clock, rotator, publisher });

  publisher.start();
  poller.start();
  writeStatus();

  let stopped: Promise<void> | undefined;
  return {
    status,
    rotateNow() {
      if (!rotator) throw new Error('certificate rotation is disabled (rotation.enabled: false)');
      rotator.requestNow();
      rotator.check(publisher.connection());
    },
    stop() {
      stopped ??= (async () => {
        stopTimers();
        rotator?.stop();
        stopping.notify();
        await poller.stop();
        await publisher.stop();
        writeStatus();
        spool.close();
        log.info('gateway agent stopped', { spoolDepth: spool.stats().depth });
      })();
      return stopped;
    },
  };
}

/** The agent's periodic work: status.json and its log line, the rotation check, the status report to the cloud. Returns their stop. */
function startTimers(
  config: GatewayConfig,
  parts: {
    status: () => GatewayStatus;
    writeStatus: () => void;
    log: Log;
    clock: AgentClock;
    rotator: CertificateRotator | undefined;
    publisher: Publisher;
  },
): () => void {
  const { status, writeStatus, log, clock, rotator, publisher } = parts;
  const statusTimer = setInterval(() => {
    writeStatus();
    const s = status();
    log.info('gateway status', {
      spoolDepth: s.spool.depth,
      oldestUnsent: s.oldestUnsentReading?.intervalStart,
      lastPublishAt: s.publisher.lastPublishAt,
      connected: s.publisher.connected,
      readErrors: s.poller.readErrors,
      droppedReadings: s.spool.droppedReadings,
    });
  }, config.statusEverySeconds * 1000);
  const rotationTimer = setInterval(() => rotator?.check(publisher.connection()), config.rotation.checkEverySeconds * 1000);
  const health = healthReporter(config, status, clock, (body) =>
    publisher.publishEvent(gatewayEventTopic(config.iot.ruleName, config.thingName, 'status'), body),
  );
  const healthTimer = setInterval(() => void health(), config.health.reportEverySeconds * 1000);
  const timers = [statusTimer, rotationTimer, healthTimer];
  for (const timer of timers) timer.unref();
  return () => timers.forEach((timer) => clearInterval(timer));
}

/**
 * The status report (shared/gateway-events.ts) sent every `health.reportEverySeconds` on the fleet
 * rule's `status` topic; skipped while disconnected (the cloud sees silence, which is the news).
 */
function healthReporter(
  config: GatewayConfig,
  status: () => GatewayStatus,
  clock: AgentClock,
  publish: (body: string) => Promise<boolean>,
): () => Promise<void> {
  let readErrorsReported = 0;
  return async () => {
    const s = status();
    if (!s.rotation || !s.publisher.connected) return;
    const oldest = s.oldestUnsentReading ? Date.parse(s.oldestUnsentReading.intervalStart) : undefined;
    const report: StatusReport = {
      v: 1,
      gatewayId: config.thingName,
      sentAt: new Date().toISOString(),
      version: GATEWAY_VERSION,
      spoolDepth: s.spool.depth,
      oldestUnsentSeconds: oldest === undefined ? 0 : Math.max(0, Math.round((clock.now() - oldest) / 1000)),
      readErrors: Math.max(0, s.poller.readErrors - readErrorsReported),
      clock: s.poller.clock,
      certificate: { id: s.rotation.certificateId, notBefore: s.rotation.certificateNotBefore, notAfter: s.rotation.certificateNotAfter },
    };
    if (await publish(JSON.stringify(report))) readErrorsReported = s.poller.readErrors;
  };
}
