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
}

export interface GatewayAgent {
  status(): GatewayStatus;
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

  const publisher = new Publisher({
    config,
    spool,
    clock,
    log,
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
  statusTimer.unref();

  publisher.start();
  poller.start();
  writeStatus();

  let stopped: Promise<void> | undefined;
  return {
    status,
    stop() {
      stopped ??= (async () => {
        clearInterval(statusTimer);
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
