/**
 * Gateways in local mode: each simulated gateway is the real agent (gateway/) as its own child
 * process, polling its own simulated Modbus meters, spooling to disk and publishing over MQTT with
 * its own device certificate to the platform's broker. Time runs on a demo clock (one 15-minute
 * interval every few real seconds, starting days back so readings are never in the future).
 *
 * What was taken is known from each agent's own log line "poll committed" (written after the
 * spool's fsync): every committed interval of every meter must end up stored with the value the
 * simulated meter measured. A gateway can be SIGKILLed and restarted (`killGateway`), and made to
 * rotate its certificate (`rotateGateway`, ./iot-rotation.ts): its certificates are registered in
 * IoT's registry (moto) like every other, and the summary checks the rotation's outcome there.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import {
  demoClock,
  loadConfig,
  spawnGatewayAgent,
  startSimulatedMeters,
  SIMULATED_CHANNEL,
  type GatewayConfigInput,
  type GatewayStatus,
  type SimulatedMeters,
} from '../../gateway/src/index.ts';
import type { LocalSource } from '../local-mode.ts';
import type { ExpectedReading } from '../progress.ts';
import { originOf, type LatencyOrigin } from '../latency.ts';
import { queryEndpointFlag, type LocalPlatform } from '../platform.ts';
import { LOCAL_RULE_NAME } from '../defaults.ts';
import { telemetryTopic } from '../../shared/telemetry.ts';
import { requestRotation } from '../../gateway/src/rotation.ts';
import { checkForcedRotation, type ForcedRotation } from './iot-rotation.ts';

export interface IotSourceOptions {
  gateways: number;
  metersPerGateway: number;
  stateDir: string;
  /** First simulated meter server port; gateway g uses modbusBasePort + g. */
  modbusBasePort: number;
  /** Meter time runs this many times faster than real time. @default 300 (an interval every 3 s) */
  speedup?: number;
  /** Meter time starts this many days back. @default 14 */
  daysBack?: number;
  /**
   * The agents' `publish.holdSeconds` (meter time): how long a reading may wait to be published with
   * later ones in one block. @default the agent's own default (3600: hourly blocks)
   */
  holdSeconds?: number;
  /** Where gateways' own log lines go. @default dropped */
  onLog?: (thingName: string, line: string) => void;
}

export interface IotSource extends LocalSource {
  /** SIGKILLs gateway `index` (0-based) and starts it again after `restartAfterMs`. */
  killGateway(index: number, restartAfterMs?: number): Promise<void>;
  /** Asks gateway `index` (0-based) for a certificate rotation now, as `meterbridge-gateway rotate` does. */
  rotateGateway(index: number): Promise<void>;
  /** The rotations asked for so far, with the certificate each gateway now connects with. */
  rotations(): ForcedRotation[];
}

const INTERVAL_SECONDS = 900;

interface Gateway {
  thingName: string;
  configPath: string;
  spoolDirectory: string;
  sim: SimulatedMeters;
  child: ChildProcess | undefined;
  exited: Promise<void> | undefined;
  /** Interval starts (epoch s) committed with readings, across restarts, each with its commit time (epoch ms, the agent's log stamp). */
  committed: Map<number, number>;
  /**
   * Meters the agent logged a read error for in a committed interval (epoch s → meter ids): they
   * took no reading then (a read timeout on a loaded machine), so none is expected.
   */
  unread: Map<number, Set<string>>;
  /** The certificate it was provisioned with (registered ACTIVE at the start). */
  provisioned: { certificateId: string; certPath: string; keyPath: string };
  /** When local mode asked it to rotate (at most once a run). */
  rotationRequestedAt: Date | undefined;
}

export async function iotSource(platform: LocalPlatform, options: IotSourceOptions): Promise<IotSource> {
  const speedup = options.speedup ?? 300;
  const intervalMs = INTERVAL_SECONDS * 1000;
  const realStart = Date.now();
  const virtualStart = Math.floor((realStart - (options.daysBack ?? 14) * 86_400_000) / intervalMs) * intervalMs;
  const clock = demoClock(virtualStart, realStart, speedup);
  const clockConfig = { virtualStart: new Date(virtualStart).toISOString(), realStart: new Date(realStart).toISOString(), speedup };
  const brokerPort = platform.broker()?.port;
  if (brokerPort === undefined) throw new Error('the IoT broker is not running');

  const gateways: Gateway[] = [];
  let stopped = false;
  const start = (gateway: Gateway) => startGateway(gateway, options.onLog);

  try {
    for (let g = 0; g < options.gateways; g += 1) {
      const gateway = await prepareGateway(platform, options, g, { clock, clockConfig, brokerPort });
      gateways.push(gateway);
      start(gateway);
    }
  } catch (error) {
    for (const gateway of gateways) {
      gateway.child?.kill('SIGKILL');
      await gateway.sim.stop();
    }
    throw error;
  }

  const stopChild = async (gateway: Gateway, signal: NodeJS.Signals) => {
    const { child, exited } = gateway;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await exited;
  };

  // The outside client of the join hint gets its own thing and certificate: borrowing a
  // gateway's client id would take over that gateway's MQTT session.
  const outsideThing = 'local-cli';
  const outside = await platform.issueDevice(outsideThing);
  const rotations = (): ForcedRotation[] => gateways.flatMap(forcedRotation);
  return {
    source: 'iot',
    expected() {
      const expected: ExpectedReading[] = [];
      for (const gateway of gateways) {
        for (const start of gateway.committed.keys()) {
          gateway.sim.meters.forEach((meter, index) => {
            if (gateway.unread.get(start)?.has(meter.meterId)) return;
            expected.push({
              meterId: meter.meterId,
              channel: SIMULATED_CHANNEL,
              at: new Date(start * 1000),
              value: gateway.sim.intervalKwh(index, start, INTERVAL_SECONDS),
            });
          });
        }
      }
      return expected;
    },
    origins: () => pollOrigins(gateways),
    backlog: () => gateways.reduce((sum, gateway) => sum + (statusOf(gateway)?.spool.depth ?? 0), 0),
    async quiesce() {
      // The meters stop answering: nothing new is taken, the agents go on draining their spools.
      for (const gateway of gateways) for (let i = 0; i < gateway.sim.meters.length; i += 1) gateway.sim.setFault(i, 'exception');
    },
    async drained() {
      return gateways.every((gateway) => {
        const status = statusOf(gateway);
        return status !== undefined && status.spool.depth === 0 && gateway.child?.exitCode === null && rotated(gateway);
      });
    },
    joinHints: () => [
      `  MQTT (IoT Core stand-in) on 127.0.0.1:${brokerPort}, mTLS with the dev CA; a device certificate for thing ${outsideThing} is ready:`,
      `    mosquitto_pub -h localhost -p ${brokerPort} --cafile ${platform.ca.certPath} \\`,
      `      --cert ${outside.certPath} --key ${outside.keyPath} \\`,
      `      -i ${outsideThing} -q 1 -t '${telemetryTopic(LOCAL_RULE_NAME, outsideThing)}' \\`,
      `      -m '{"v":1,"gatewayId":"${outsideThing}","seq":1,"sentAt":"${new Date().toISOString()}","readings":[{"meterId":"cli-meter","channel":"energy.active.import","start":"${new Date(virtualStart).toISOString()}","end":"${new Date(virtualStart + intervalMs).toISOString()}","value":1.25,"unit":"kWh"}]}'`,
      `    then: npx tsx bin/meterbridge.ts readings query --meter cli-meter --from ${new Date(virtualStart).toISOString().slice(0, 10)}${queryEndpointFlag(platform)}`,
    ],
    async killGateway(index, restartAfterMs = 1000) {
      const gateway = gateways[index];
      if (!gateway) throw new Error(`no gateway ${index}`);
      await stopChild(gateway, 'SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, restartAfterMs));
      if (!stopped) start(gateway);
    },
    async rotateGateway(index) {
      const gateway = gateways[index];
      if (!gateway) throw new Error(`no gateway ${index}`);
      if (gateway.rotationRequestedAt) throw new Error(`${gateway.thingName} was already asked to rotate in this run`);
      requestRotation(loadConfig(gateway.configPath));
      gateway.rotationRequestedAt = new Date();
    },
    rotations,
    async checks() {
      return Promise.all(rotations().map((rotation) => checkForcedRotation(platform, rotation)));
    },
    async stop() {
      stopped = true;
      for (const gateway of gateways) await stopChild(gateway, 'SIGTERM');
      for (const gateway of gateways) await gateway.sim.stop();
    },
  };
}

function statusOf(gateway: Gateway): GatewayStatus | undefined {
  try {
    return JSON.parse(readFileSync(join(gateway.spoolDirectory, 'status.json'), 'utf8')) as GatewayStatus;
  } catch {
    return undefined; // not written yet, or being replaced
  }
}

function forcedRotation(gateway: Gateway): ForcedRotation[] {
  if (!gateway.rotationRequestedAt) return [];
  const newCertificateId = statusOf(gateway)?.rotation?.certificateId;
  return [{ thingName: gateway.thingName, requestedAt: gateway.rotationRequestedAt, old: gateway.provisioned, newCertificateId }];
}

/** A rotation asked for is part of what must be done before the end: the agent is done and connects with its new certificate. */
function rotated(gateway: Gateway): boolean {
  if (!gateway.rotationRequestedAt) return true;
  const rotation = statusOf(gateway)?.rotation;
  return rotation !== undefined && rotation.phase === 'idle' && rotation.certificateId !== gateway.provisioned.certificateId;
}

/** Every committed reading with its poll's time: the agent's "poll committed" stamp (after the spool's fsync). */
function pollOrigins(gateways: readonly Gateway[]): LatencyOrigin[] {
  const origins: LatencyOrigin[] = [];
  for (const gateway of gateways) {
    for (const [start, at] of gateway.committed) {
      gateway.sim.meters.forEach((meter, index) => {
        if (gateway.unread.get(start)?.has(meter.meterId)) return;
        const value = gateway.sim.intervalKwh(index, start, INTERVAL_SECONDS);
        origins.push(originOf({ meterId: meter.meterId, channel: SIMULATED_CHANNEL, at: new Date(start * 1000), value }, at));
      });
    }
  }
  return origins;
}

/** Runs the gateway's agent as a child process; its "poll committed" log lines say what was taken. */
function startGateway(gateway: Gateway, onLog: IotSourceOptions['onLog']): void {
  const child = spawnGatewayAgent(gateway.configPath);
  gateway.child = child;
  gateway.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  let buffered = '';
  // Read errors are logged before their cycle's "poll committed" line.
  let failedThisCycle = new Set<string>();
  child.stderr?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      onLog?.(gateway.thingName, line);
      if (!line.startsWith('{')) continue;
      try {
        const entry = JSON.parse(line) as { message?: string; intervalStart?: string; readings?: number; timestamp?: string; meterId?: string };
        if (entry.message === 'poller: read error' && entry.meterId) failedThisCycle.add(entry.meterId);
        if (entry.message === 'poll committed') {
          const failed = failedThisCycle;
          failedThisCycle = new Set();
          if (!((entry.readings ?? 0) > 0 && entry.intervalStart)) continue;
          const start = Date.parse(entry.intervalStart) / 1000;
          if (failed.size > 0 && !gateway.committed.has(start)) gateway.unread.set(start, failed);
          // The agent logs in real time (its demo clock only moves the meters' time).
          if (!gateway.committed.has(start)) gateway.committed.set(start, entry.timestamp ? Date.parse(entry.timestamp) : Date.now());
        }
      } catch {
        // not one of the agent's JSON lines
      }
    }
  });
  child.stdout?.resume();
}

/** Gateway `g`: a fresh folder, its device certificate, its simulated meters and its configuration file. */
async function prepareGateway(
  platform: LocalPlatform,
  options: IotSourceOptions,
  g: number,
  time: { clock: ReturnType<typeof demoClock>; clockConfig: NonNullable<GatewayConfigInput['demoClock']>; brokerPort: number },
): Promise<Gateway> {
  const { clock, clockConfig, brokerPort } = time;
  const thingName = `gw-local-${String(g + 1).padStart(3, '0')}`;
  const dir = join(options.stateDir, 'gateways', thingName);
  const spoolDirectory = join(dir, 'spool');
  // Fresh each run: a spool left from an earlier run would replay readings of its own clock.
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const device = await platform.issueDevice(thingName);
  const sim = await startSimulatedMeters({
    count: options.metersPerGateway,
    port: options.modbusBasePort + g,
    clock,
    stepSeconds: INTERVAL_SECONDS,
    idPrefix: `${thingName}-m`,
  });
  const config: GatewayConfigInput = {
    thingName,
    iot: {
      endpoint: '127.0.0.1',
      port: brokerPort,
      ruleName: LOCAL_RULE_NAME,
      certFile: device.certPath,
      keyFile: device.keyPath,
      caFile: platform.ca.certPath,
      protocolVersion: 4, // the local broker (aedes) speaks MQTT 3.1.1
      connectTimeoutSeconds: 3,
    },
    meters: sim.meterConfigs(),
    polling: { intervalSeconds: INTERVAL_SECONDS, timeoutMs: 1000 },
    spool: { directory: spoolDirectory, maxBytes: '64MiB', segmentBytes: '1MiB' },
    // Reconnect fast and drain soon after an outage: a demo, not a fleet.
    backoff: { initialSeconds: 0.2, maxSeconds: 2 },
    publish: { drainStartDelayMaxSeconds: 1, ...(options.holdSeconds === undefined ? {} : { holdSeconds: options.holdSeconds }) },
    statusEverySeconds: 0.5,
    // A forced rotation (rotateGateway) starts within a second and switches a second after the activate notice.
    rotation: { checkEverySeconds: 1, activationWaitSeconds: 1 },
    health: { reportEverySeconds: 5 },
    demoClock: clockConfig,
  };
  const configPath = join(dir, 'gateway.yaml');
  await writeFile(configPath, toYaml(config));
  const gateway: Gateway = {
    thingName,
    configPath,
    spoolDirectory,
    sim,
    child: undefined,
    exited: undefined,
    committed: new Map(),
    unread: new Map(),
    provisioned: { certificateId: device.certificateId, certPath: device.certPath, keyPath: device.keyPath },
    rotationRequestedAt: undefined,
  };
  return gateway;
}
