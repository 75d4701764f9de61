/**
 * The IoT path end to end on loopback: a device with a CA-signed certificate publishes over MQTT
 * with mTLS to the local IoT Core stand-in, the bridge turns each accepted publish into the topic
 * rule's SQS body, a LocalQueue feeds the real ingest core in SQS-shaped batches, and readings land
 * in DynamoDB Local.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { ingestBatch } from '../../lambdas/core/iot-ingest.ts';
import { Ledger } from '../../lambdas/core/ledger.ts';
import { silentLog } from '../../shared/log.ts';
import { Metrics } from '../../lambdas/core/metrics.ts';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { SequenceTracker } from '../../lambdas/core/sequence-tracker.ts';
import { createDevCa, issueDeviceCert, issueServerCert, type IssuedCert } from '../../local/dev-ca.ts';
import { LocalQueue, toRuleMessageBody, type Poller } from '../../local/iot-bridge.ts';
import { startLocalIotBroker, type LocalIotBroker } from '../../local/mqtt-broker.ts';
import { startLocalCloudWatch, sumOf, type LocalCloudWatch } from '../support/cloudwatch.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';

const RULE = 'meterbridge_local_telemetry';
let dir: string;
let dynamo: LocalDynamo;
let cloudwatch: LocalCloudWatch;
let broker: LocalIotBroker;
let poller: Poller;
let store: ReadingStore;
let caPem: Buffer;
let device: IssuedCert;
let strangerDevice: IssuedCert;
const queue = new LocalQueue();
const rejected: string[] = [];
const clients: MqttClient[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meterbridge-e2e-'));
  [dynamo, cloudwatch] = await Promise.all([startDynamoDbLocal(), startLocalCloudWatch()]);
  const tables = await dynamo.freshTables();
  const [ca, otherCa] = await Promise.all([createDevCa(dir), createDevCa(dir, { name: 'other-ca', commonName: 'not our CA' })]);
  const [server, gw] = await Promise.all([issueServerCert(ca, dir), issueDeviceCert(ca, dir, 'gw-0001')]);
  device = gw;
  strangerDevice = await issueDeviceCert(otherCa, join(dir, 'other'), 'gw-0001');
  caPem = await readFile(ca.certPath);

  store = new ReadingStore({ client: dynamo.client, tableName: tables.readings, blockTimeZone: 'America/Chicago' });
  const ledger = new Ledger({ client: dynamo.client, tableName: tables.ledger });
  const sequences = new SequenceTracker({ client: dynamo.client, tableName: tables.ledger });
  broker = await startLocalIotBroker({
    caCertPath: ca.certPath,
    serverCertPath: server.certPath,
    serverKeyPath: server.keyPath,
    ruleName: RULE,
    onPublish: (publish) => {
      queue.send(toRuleMessageBody(publish));
    },
  });
  poller = queue.startPolling(
    // One invocation as the Lambda entry runs it: the middleware flushes its metrics at the end.
    async (event) => {
      const metrics = new Metrics({ client: cloudwatch.client(), log: silentLog });
      try {
        return await ingestBatch(event, {
          store,
          ledger,
          sequences,
          metrics,
          rejects: { reject: async (body, reason) => void rejected.push(`${reason} :: ${body}`) },
          log: silentLog,
        });
      } finally {
        await metrics.flush();
      }
    },
    { batchSize: 10, visibilityTimeoutMs: 500, maxReceiveCount: 5 },
  );
});

after(async () => {
  for (const client of clients) client.end(true);
  poller?.stop();
  await broker?.close();
  await Promise.all([dynamo?.stop(), cloudwatch?.stop()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function connectAs(identity: IssuedCert | undefined, clientId: string): Promise<{ client: MqttClient; connected: boolean }> {
  const client = connect(`mqtts://127.0.0.1:${broker.port}`, {
    ...(identity ? { cert: await readFile(identity.certPath), key: await readFile(identity.keyPath) } : {}),
    ca: caPem,
    rejectUnauthorized: true,
    clientId,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 3000,
  });
  clients.push(client);
  const connected = await new Promise<boolean>((resolve) => {
    client.once('connect', () => resolve(true));
    client.once('close', () => resolve(false));
    client.on('error', () => undefined);
  });
  return { client, connected };
}

const publish = (client: MqttClient, payload: unknown) =>
  client.publishAsync(`$aws/rules/${RULE}/gateways/gw-0001/telemetry`, JSON.stringify(payload), { qos: 1 });

const telemetry = (seq: number, gatewayId = 'gw-0001') => ({
  v: 1,
  gatewayId,
  seq,
  sentAt: new Date().toISOString(),
  blocks: [
    {
      meterId: `meter-${seq}`,
      channel: 'energy.active.import',
      start: '2026-11-22T06:00:00Z',
      intervalSeconds: 900,
      unit: 'kWh',
      values: [1, 2, 3, 4],
    },
  ],
});

const storedFor = (meterId: string) =>
  store.query({ meterId, channel: 'energy.active.import', from: new Date('2026-11-22T00:00:00Z'), to: new Date('2026-11-23T00:00:00Z') });

describe('IoT path end to end: MQTT with mTLS -> rule body -> queue -> ingest -> DynamoDB Local', () => {
  it('stores the readings of a provisioned device, and a message published 10 times once', async () => {
    const { client, connected } = await connectAs(device, 'gw-0001');
    assert.equal(connected, true);

    for (let i = 0; i < 10; i++) await publish(client, telemetry(1));
    await publish(client, telemetry(2));
    await queue.whenEmpty();

    assert.deepEqual(
      (await storedFor('meter-1')).map((r) => r.value),
      [1, 2, 3, 4],
    );
    assert.equal((await storedFor('meter-2')).length, 4);
    const totals = await cloudwatch.totals();
    const total = (name: string) => sumOf(totals, name);
    assert.equal(total('ReadingsStored'), 8);
    assert.equal(total('MessagesDuplicate'), 9);
  });

  it('rejects, with its reason, a message in which the device claims another gateway', async () => {
    const { client } = await connectAs(device, 'gw-0001');

    await publish(client, telemetry(3, 'gw-0002'));
    await queue.whenEmpty();

    assert.equal(rejected.length, 1);
    assert.match(rejected[0]!, /gatewayId "gw-0002" does not match the thing name "gw-0001"/);
    assert.equal((await storedFor('meter-3')).length, 0);
  });

  it('refuses a device whose certificate comes from another CA, and one without a certificate', async () => {
    assert.equal((await connectAs(strangerDevice, 'gw-0001')).connected, false);
    assert.equal((await connectAs(undefined, 'gw-0001')).connected, false);
  });
});
