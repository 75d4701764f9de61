/**
 * The cloud side of the gateway tests, all real and on loopback: the local IoT Core stand-in (aedes
 * behind mutual TLS, enforcing the device policy), the topic rule's SQS body, a LocalQueue feeding
 * the real ingest core, DynamoDB Local. Records what reached the broker (time, size, seq) so tests
 * can check order and pacing where IoT Core would measure them.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { ingestBatch, type MessageOutcome } from '../../lambdas/core/iot-ingest.ts';
import { Ledger } from '../../lambdas/core/ledger.ts';
import { silentLog } from '../../shared/log.ts';
import { Metrics } from '../../lambdas/core/metrics.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import type { Reading } from '../../shared/reading.ts';
import { SequenceTracker } from '../../lambdas/core/sequence-tracker.ts';
import { createDevCa, issueDeviceCert, issueServerCert, type DevCa, type IssuedCert } from '../../local/dev-ca.ts';
import { fleetRuleAction, LocalQueue, toRuleMessageBody, type Poller } from '../../local/iot-bridge.ts';
import { startLocalIotBroker, type LocalIotBroker } from '../../local/mqtt-broker.ts';
import type { GatewayConfigInput } from '../../gateway/src/config.ts';
import { startLocalCloudWatch, type LocalCloudWatch } from './cloudwatch.ts';
import type { GatewayEventOutcome } from '../../lambdas/core/gateway-fleet.ts';
import { createLocalIotRegistry, type LocalIotRegistry } from '../../local/iot-registry.ts';
import { gatewayEventFromTopic } from '../../shared/telemetry.ts';
import { freePort, startDynamoDbLocal, type LocalDynamo } from './dynamodb-local.ts';

export const RULE = 'meterbridge_local_telemetry';
export const THING = 'gw-test-0001';

export interface BrokerPublish {
  /** Epoch ms at the broker. */
  at: number;
  bytes: number;
  seq: number;
  /** SHA-256 of the payload: a re-sent seq must carry the same bytes. */
  digest: string;
  blocks: Array<{ meterId: string; start: string; values: Array<number | null> }>;
}

export interface GatewayHarness {
  dir: string;
  brokerPort: number;
  store: ReadingStore;
  /** Every publish the broker accepted, in arrival order (re-sends included). */
  published: BrokerPublish[];
  /** Every ingest outcome. */
  outcomes: MessageOutcome[];
  /** Most publishes handed to the rule at once (unacknowledged at the broker). */
  peakUnacknowledged: number;
  /** CloudWatch (moto) the ingest's metrics go to. */
  cloudwatch: LocalCloudWatch;
  startBroker(): Promise<void>;
  stopBroker(): Promise<void>;
  /** Delay before each PUBACK (the rule taking its time). */
  setAckDelayMs(ms: number): void;
  /** A gateway configuration (mTLS files, topic, fast backoff) to extend with meters and spool. */
  baseConfig(spoolDirectory: string): Omit<GatewayConfigInput, 'meters'>;
  writeConfig(config: GatewayConfigInput, name?: string): Promise<string>;
  /** Waits until the ingest queue is empty. */
  drained(): Promise<void>;
  readings(meterId: string, channel: string, from: Date, to: Date): Promise<Reading[]>;
  /** With `registry: true`: IoT's certificate registry in moto (the broker checks it at CONNECT and signs CSRs). */
  registry: LocalIotRegistry | undefined;
  /** What the fleet function made of each gateway event (rotation notices, status reports), in arrival order. */
  fleetOutcomes: GatewayEventOutcome[];
  /** Every certificate id a publish came over, in arrival order (telemetry and events). */
  publishedWith: string[];
  close(): Promise<void>;
}

export interface GatewayHarnessOptions {
  /**
   * IoT Core's registry (moto) behind the broker: devices must be registered, ACTIVE and attached
   * to connect, the CreateCertificateFromCsr MQTT API works, and gateway events run the fleet core.
   */
  registry?: boolean;
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function startGatewayHarness(options: GatewayHarnessOptions = {}): Promise<GatewayHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'meterbridge-gateway-'));
  let dynamo: LocalDynamo | undefined;
  let cloudwatch: LocalCloudWatch | undefined;
  let broker: LocalIotBroker | undefined;
  let poller: Poller | undefined;
  try {
    [dynamo, cloudwatch] = await Promise.all([startDynamoDbLocal(), startLocalCloudWatch()]);
    const tables = await dynamo.freshTables();
    const ca: DevCa = await createDevCa(dir);
    const [server, device]: [IssuedCert, IssuedCert] = await Promise.all([issueServerCert(ca, dir), issueDeviceCert(ca, dir, THING)]);
    const store = new ReadingStore({ client: dynamo.client, tableName: tables.readings, blockTimeZone: 'America/Chicago' });
    const ledger = new Ledger({ client: dynamo.client, tableName: tables.ledger });
    const sequences = new SequenceTracker({ client: dynamo.client, tableName: tables.ledger });
    const queue = new LocalQueue();
    const published: BrokerPublish[] = [];
    const outcomes: MessageOutcome[] = [];
    const brokerPort = await freePort();
    let ackDelayMs = 0;
    let unacknowledged = 0;
    const harnessState = { peakUnacknowledged: 0 };
    const registry = options.registry ? await createLocalIotRegistry({ moto: cloudwatch.moto, ca, dir: join(dir, 'issued') }) : undefined;
    if (registry) await registry.registerDevice(THING, device.certPath);
    const fleetOutcomes: GatewayEventOutcome[] = [];
    const publishedWith: string[] = [];
    const fleetEvent = registry
      ? fleetRuleAction({
          iot: registry.iot,
          policyName: registry.policyName,
          metrics: () => new Metrics({ client: cloudwatch!.client(), log: silentLog }),
          log: silentLog,
          onOutcome: (outcome) => fleetOutcomes.push(outcome),
        })
      : undefined;

    poller = queue.startPolling(
      async (event) => {
        // One invocation as the Lambda entry runs it: the middleware flushes its metrics at the end.
        const metrics = new Metrics({ client: cloudwatch!.client(), log: silentLog });
        const response = await ingestBatch(event, {
          store,
          ledger,
          sequences,
          metrics,
          rejects: {
            reject: async (_body, reason) => {
              throw new Error(`the gateway sent a message the ingest rejected: ${reason}`);
            },
          },
          log: silentLog,
        }).finally(() => metrics.flush());
        outcomes.push(...response.outcomes);
        return response;
      },
      { batchSize: 10, visibilityTimeoutMs: 2000, maxReceiveCount: 5 },
    );

    const startBroker = async () => {
      broker = await startLocalIotBroker({
        port: brokerPort,
        caCertPath: ca.certPath,
        serverCertPath: server.certPath,
        serverKeyPath: server.keyPath,
        ruleName: RULE,
        ...(registry ? { registry } : {}),
        onPublish: async (publish) => {
          publishedWith.push(publish.certificateId);
          if (gatewayEventFromTopic(publish.topic)) {
            fleetEvent?.(publish);
            return;
          }
          unacknowledged++;
          harnessState.peakUnacknowledged = Math.max(harnessState.peakUnacknowledged, unacknowledged);
          try {
            const message = JSON.parse(publish.payload.toString('utf8')) as { seq: number; blocks: BrokerPublish['blocks'] };
            published.push({
              at: publish.receivedAt,
              bytes: publish.payload.length,
              seq: message.seq,
              digest: createHash('sha256').update(publish.payload).digest('hex'),
              blocks: message.blocks,
            });
            queue.send(toRuleMessageBody(publish));
            if (ackDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, ackDelayMs));
          } finally {
            unacknowledged--;
          }
        },
      });
    };
    await startBroker();

    return {
      dir,
      brokerPort,
      store,
      published,
      outcomes,
      get peakUnacknowledged() {
        return harnessState.peakUnacknowledged;
      },
      cloudwatch,
      startBroker,
      async stopBroker() {
        await broker?.close();
        broker = undefined;
      },
      setAckDelayMs(ms) {
        ackDelayMs = ms;
      },
      baseConfig: (spoolDirectory) => ({
        thingName: THING,
        iot: {
          endpoint: '127.0.0.1',
          port: brokerPort,
          ruleName: RULE,
          certFile: device.certPath,
          keyFile: device.keyPath,
          caFile: ca.certPath,
          protocolVersion: 4, // aedes speaks MQTT 3.1.1
          connectTimeoutSeconds: 3,
        },
        spool: { directory: spoolDirectory, maxBytes: '64MiB', segmentBytes: '64kB' },
        backoff: { initialSeconds: 0.05, maxSeconds: 0.4 },
        statusEverySeconds: 0.2,
      }),
      async writeConfig(config, name = 'gateway.yaml') {
        const path = join(dir, name);
        await writeFile(path, toYaml(config));
        return path;
      },
      drained: () => queue.whenEmpty(),
      readings: (meterId, channel, from, to) => store.query({ meterId, channel, from, to }),
      registry,
      fleetOutcomes,
      publishedWith,
      async close() {
        await poller?.stop();
        await broker?.close();
        registry?.close();
        await Promise.all([dynamo?.stop(), cloudwatch?.stop()]);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await poller?.stop();
    await broker?.close();
    await Promise.all([dynamo?.stop(), cloudwatch?.stop()]);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** A demo clock section starting `daysBack` days ago on an interval boundary, running `speedup` times real time. */
export function demoClockConfig(speedup: number, daysBack: number, intervalSeconds = 900): NonNullable<GatewayConfigInput['demoClock']> {
  const now = Date.now();
  const intervalMs = intervalSeconds * 1000;
  const virtualStart = Math.floor((now - daysBack * 86_400_000) / intervalMs) * intervalMs;
  return { virtualStart: new Date(virtualStart).toISOString(), realStart: new Date(now).toISOString(), speedup };
}
