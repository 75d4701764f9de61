/**
 * The AWS side of local mode on loopback: DynamoDB Local (tables as in the stack), moto's server
 * as CloudWatch (the metrics sink, read back for the progress lines), s3rver for the archive buckets, and the IoT path (the
 * mTLS broker standing in for IoT Core, the topic rule's SQS body, a LocalQueue with the ingest
 * Lambda's settings feeding the real ingest core; IoT's certificate registry in moto, checked at
 * CONNECT, and the fleet rule's gateway events on the fleet function's core), and the readings feed on DynamoDB Local's stream
 * (events to moto's EventBridge, Parquet lake files into s3rver: local/readings-feed.ts). The source simulators (gateways, SMT servers,
 * READY sender) run on top of it; see bin/commands/local.ts.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateEventBusCommand, EventBridgeClient, ResourceAlreadyExistsException } from '@aws-sdk/client-eventbridge';
import { EventBridgeSink } from '../lambdas/core/feed/aws-sinks.ts';
import { ingestBatch } from '../lambdas/core/iot-ingest.ts';
import { Metrics } from '../lambdas/core/metrics.ts';
import type { Ledger } from '../lambdas/core/ledger.ts';
import { silentLog, type Log } from '../shared/log.ts';
import type { MetricSource } from '../lambdas/core/metric-catalog.ts';
import type { ReadingStore } from '../lambdas/core/reading-store.ts';
import { SequenceTracker } from '../lambdas/core/sequence-tracker.ts';
import { wireSource, withInvocationMetrics, type SourceWiring } from '../lambdas/core/wiring.ts';
import { createLocalTables } from './tables.ts';
import { startLocalCloudWatch, type LocalCloudWatch } from './cloudwatch.ts';
import {
  LOCAL_BLOCK_TIME_ZONE,
  LOCAL_EVENT_BUS,
  LOCAL_LAKE_BUCKET,
  LOCAL_PORTS,
  LOCAL_RULE_NAME,
  LOCAL_STAGE,
  LOCAL_TABLES,
  type LocalPortName,
} from './defaults.ts';
import { createDevCa, issueDeviceCert, issueServerCert, type DevCa, type IssuedCert } from './dev-ca.ts';
import { startDynamoDbLocal, type LocalDynamo } from './dynamodb-local.ts';
import { fleetRuleAction, LocalQueue, toRuleMessageBody, type LocalQueueMessage, type Poller } from './iot-bridge.ts';
import { createLocalIotRegistry, type LocalIotRegistry } from './iot-registry.ts';
import type { GatewayEventOutcome } from '../lambdas/core/gateway-fleet.ts';
import { startLocalIotBroker, type LocalIotBroker } from './mqtt-broker.ts';
import { gatewayEventFromTopic } from '../shared/telemetry.ts';
import { LocalParquetLake, localS3Directory } from './lake.ts';
import { startLocalFeed, type LocalFeed } from './readings-feed.ts';
import { startLocalS3, type LocalS3 } from './s3-server.ts';

export const LOCAL_BUCKETS = {
  smtArchive: 'meterbridge-local-smt-archive',
  readyArchive: 'meterbridge-local-ready-archive',
  lake: LOCAL_LAKE_BUCKET,
} as const;

export interface PlatformOptions {
  ports: Record<LocalPortName, number>;
  /** Certificates and other generated state go here. */
  stateDir: string;
  log?: Log;
}

export interface LocalPlatform {
  dynamo: LocalDynamo;
  cloudwatch: LocalCloudWatch;
  s3: LocalS3;
  store: ReadingStore;
  ledger: Ledger;
  tables: typeof LOCAL_TABLES;
  /** The dev CA and the broker's server certificate (devices trust `ca.certPath`). */
  ca: DevCa;
  /** Issues (or re-issues) a device certificate for a thing under the state folder and registers it ACTIVE, attached to the thing. */
  issueDevice(thingName: string): Promise<IssuedCert & { certificateId: string }>;
  /** IoT Core's certificate registry in moto: the broker checks it at CONNECT; the fleet core rotates through it. */
  registry: LocalIotRegistry;
  /** What the fleet function made of each gateway event (rotation notices, status reports), in arrival order. */
  fleetOutcomes: GatewayEventOutcome[];
  /** The IoT Core stand-in; undefined while an injected outage has it down. */
  broker(): LocalIotBroker | undefined;
  /** Stops the broker (an outage): devices lose their connection and must buffer. */
  stopBroker(): Promise<void>;
  /** Starts the broker again on the same port with the same certificates. */
  startBroker(): Promise<void>;
  /** The queue between the topic rule and the ingest Lambda. */
  iotQueue: LocalQueue;
  /** Messages the ingest core rejected to the dead-letter queue, with their reason. */
  iotDeadLetters: { reason: string; body: string }[];
  /** The wiring of `source` on the local stand-ins (DynamoDB Local, the local metrics sink), as the Lambda entries build it. */
  wiringFor(source: MetricSource): SourceWiring;
  /** The readings feed on DynamoDB Local's stream: events on moto's bus LOCAL_EVENT_BUS, Parquet into the lake bucket. */
  feed: LocalFeed;
  stop(): Promise<void>;
}

/** ` --endpoint <url>` for a printed `readings query` line when DynamoDB Local is not on its default port. */
export function queryEndpointFlag(platform: LocalPlatform): string {
  return platform.dynamo.endpoint === `http://127.0.0.1:${LOCAL_PORTS.dynamodb}` ? '' : ` --endpoint ${platform.dynamo.endpoint}`;
}

export async function startLocalPlatform(options: PlatformOptions): Promise<LocalPlatform> {
  const log = options.log ?? silentLog;
  const certDir = join(options.stateDir, 'certs');
  await mkdir(certDir, { recursive: true });
  const started: { stop(): Promise<void> }[] = [];
  const stopAll = async () => {
    for (const part of started.reverse()) await part.stop().catch(() => undefined);
  };
  try {
    const dynamo = await startDynamoDbLocal({ port: options.ports.dynamodb });
    started.push(dynamo);
    await createLocalTables(dynamo.client, LOCAL_TABLES);
    const cloudwatch = await startLocalCloudWatch({ port: options.ports.cloudwatch });
    started.push(cloudwatch);
    const s3 = await startPlatformS3(options.stateDir, options.ports.s3);
    started.push(s3);

    const ca = await createDevCa(certDir);
    const server = await issueServerCert(ca, certDir);
    const cloudwatchClient = cloudwatch.client();
    const wiringFor = (source: MetricSource) =>
      wireSource({
        source,
        dynamodb: dynamo.client,
        cloudwatch: cloudwatchClient,
        tables: LOCAL_TABLES,
        blockTimeZone: LOCAL_BLOCK_TIME_ZONE,
        stage: LOCAL_STAGE,
        log,
      });
    const feed = await startPlatformFeed(dynamo, s3, cloudwatch, log, started);
    const iot = wiringFor('iot');
    const store = iot.store();
    const ledger = iot.ledger;
    const sequences = new SequenceTracker({ client: dynamo.client, tableName: LOCAL_TABLES.ledger });

    // The ingest Lambda's event source mapping: batches of up to 50, 2 s window, 5 receives then DLQ.
    const iotQueue = new LocalQueue();
    const iotDeadLetters: { reason: string; body: string }[] = [];
    const poller: Poller = iotQueue.startPolling(
      (event) =>
        withInvocationMetrics(iot, (metrics) =>
          ingestBatch(event, {
            store,
            ledger,
            sequences,
            metrics,
            rejects: { reject: async (body, reason) => void iotDeadLetters.push({ body, reason }) },
            log,
          }),
        ),
      {
        batchSize: 50,
        batchWindowMs: 200,
        visibilityTimeoutMs: 2000,
        maxReceiveCount: 5,
        onDeadLetter: (message: LocalQueueMessage) => void iotDeadLetters.push({ body: message.body, reason: 'maxReceiveCount exceeded' }),
      },
    );
    started.push({ stop: () => poller.stop() });

    const { registry, fleetOutcomes, fleetEvent } = await startPlatformRegistry(cloudwatch, ca, certDir, iot, log, started);
    const { broker, startBroker, stopBroker } = platformBroker({
      port: options.ports.mqtt,
      ca,
      server,
      registry,
      log,
      // Gateway events (rotation notices, status reports) take the fleet rule, telemetry the ingest queue.
      onPublish: (publish) => void (gatewayEventFromTopic(publish.topic) ? fleetEvent(publish) : iotQueue.send(toRuleMessageBody(publish))),
    });
    await startBroker();
    started.push({ stop: stopBroker });

    return {
      dynamo,
      cloudwatch,
      s3,
      store,
      ledger,
      tables: LOCAL_TABLES,
      ca,
      async issueDevice(thingName) {
        const issued = await issueDeviceCert(ca, join(certDir, 'devices'), thingName);
        const { certificateId } = await registry.registerDevice(thingName, issued.certPath);
        return { ...issued, certificateId };
      },
      registry,
      fleetOutcomes,
      broker,
      stopBroker,
      startBroker,
      iotQueue,
      iotDeadLetters,
      wiringFor,
      feed,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** IoT Core's registry in moto (already running as the metrics sink): CONNECT checks it, and the fleet rule's function (the Lambda's core) rotates through it. */
async function startPlatformRegistry(
  cloudwatch: LocalCloudWatch,
  ca: DevCa,
  certDir: string,
  iot: SourceWiring,
  log: Log,
  started: { stop(): Promise<void> }[],
): Promise<{ registry: LocalIotRegistry; fleetOutcomes: GatewayEventOutcome[]; fleetEvent: ReturnType<typeof fleetRuleAction> }> {
  const registry = await createLocalIotRegistry({
    moto: cloudwatch.moto,
    ca,
    dir: join(certDir, 'issued'),
    policyName: `meterbridge-${LOCAL_STAGE}-gateway`,
  });
  started.push({ stop: async () => registry.close() });
  const fleetOutcomes: GatewayEventOutcome[] = [];
  const fleetEvent = fleetRuleAction({
    iot: registry.iot,
    policyName: registry.policyName,
    metrics: () => iot.metrics(),
    log,
    onOutcome: (outcome) => void fleetOutcomes.push(outcome),
  });
  return { registry, fleetOutcomes, fleetEvent };
}

/** The IoT Core stand-in, stoppable and restartable on the same port with the same certificates (outages). */
function platformBroker(options: {
  port: number;
  ca: DevCa;
  server: IssuedCert;
  registry: LocalIotRegistry;
  log: Log;
  onPublish: Parameters<typeof startLocalIotBroker>[0]['onPublish'];
}): { broker(): LocalIotBroker | undefined; startBroker(): Promise<void>; stopBroker(): Promise<void> } {
  let broker: LocalIotBroker | undefined;
  return {
    broker: () => broker,
    async startBroker() {
      if (broker) return;
      broker = await startLocalIotBroker({
        port: options.port,
        caCertPath: options.ca.certPath,
        serverCertPath: options.server.certPath,
        serverKeyPath: options.server.keyPath,
        ruleName: LOCAL_RULE_NAME,
        registry: options.registry,
        onPublish: options.onPublish,
        log: options.log,
      });
    },
    async stopBroker() {
      const closing = broker;
      broker = undefined;
      await closing?.close();
    },
  };
}

/** The feed as the stack runs it, on the local stand-ins: the bus on moto, Parquet into s3rver, metrics to moto's CloudWatch. */
async function startPlatformFeed(
  dynamo: LocalDynamo,
  s3: LocalS3,
  cloudwatch: LocalCloudWatch,
  log: Log,
  started: { stop(): Promise<void> }[],
): Promise<LocalFeed> {
  const { moto } = cloudwatch;
  const events = new EventBridgeClient({ endpoint: moto.endpoint, region: moto.region, credentials: moto.credentials });
  try {
    await events.send(new CreateEventBusCommand({ Name: LOCAL_EVENT_BUS }));
  } catch (error) {
    if (!(error instanceof ResourceAlreadyExistsException)) throw error;
  }
  const feed = await startLocalFeed({
    endpoint: dynamo.endpoint,
    dynamodb: dynamo.client,
    tableName: LOCAL_TABLES.readings,
    events: new EventBridgeSink(events, LOCAL_EVENT_BUS),
    lake: new LocalParquetLake(s3.client, LOCAL_BUCKETS.lake),
    metrics: () => new Metrics({ client: cloudwatch.client(), defaultDimensions: { Stage: LOCAL_STAGE }, log }),
    log,
  });
  const platformFeed = {
    ...feed,
    async stop() {
      await feed.stop();
      events.destroy();
    },
  };
  started.push(platformFeed);
  return platformFeed;
}

async function startPlatformS3(stateDir: string, port: number): Promise<LocalS3> {
  // Fresh each run, like DynamoDB Local's in-memory tables: buckets left by an earlier run (one that
  // ended uncleanly keeps them) would make creating them fail, and their objects belong to that run.
  const s3Directory = localS3Directory(stateDir);
  await rm(s3Directory, { recursive: true, force: true });
  return startLocalS3({ port, buckets: Object.values(LOCAL_BUCKETS), directory: s3Directory });
}
