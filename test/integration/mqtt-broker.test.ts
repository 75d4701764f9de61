import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, X509Certificate } from 'node:crypto';
import { execFile } from 'node:child_process';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { SQSEvent } from 'aws-lambda';
import { createDevCa, issueDeviceCert, issueServerCert, type IssuedCert } from '../../local/dev-ca.ts';
import { startLocalIotBroker, type LocalIotBroker, type LocalIotPublish } from '../../local/mqtt-broker.ts';
import { LocalQueue, toRuleMessageBody, toSqsEvent, type LocalQueueMessage, type RuleMessage } from '../../local/iot-bridge.ts';

const RULE = 'meterbridge_telemetry';
const topicOf = (thing: string): string => `$aws/rules/${RULE}/gateways/${thing}/telemetry`;

let dir: string;
let caPem: Buffer;
let caPath: string;
let devices: { gw1: IssuedCert; gw2: IssuedCert; foreign: IssuedCert };
let broker: LocalIotBroker;
const clients: MqttClient[] = [];

/** What the test's broker does with a publish; tests swap it. */
let onPublish: (publish: LocalIotPublish) => Promise<void> = async () => {};
const received: LocalIotPublish[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meterbridge-mqtt-'));
  const [ca, otherCa] = await Promise.all([createDevCa(dir), createDevCa(dir, { name: 'other-ca', commonName: 'someone else CA' })]);
  const [server, gw1, gw2, foreign] = await Promise.all([
    issueServerCert(ca, dir),
    issueDeviceCert(ca, dir, 'gw-0001'),
    issueDeviceCert(ca, dir, 'gw-0002'),
    // Same thing name, but signed by a CA the broker does not trust.
    issueDeviceCert(otherCa, join(dir, 'other'), 'gw-0001'),
  ]);
  devices = { gw1, gw2, foreign };
  caPem = await readFile(ca.certPath);
  caPath = ca.certPath;
  broker = await startLocalIotBroker({
    caCertPath: ca.certPath,
    serverCertPath: server.certPath,
    serverKeyPath: server.keyPath,
    ruleName: RULE,
    onPublish: async (publish) => {
      await onPublish(publish);
      received.push(publish);
    },
  });
});

after(async () => {
  for (const client of clients) client.end(true);
  await broker?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  received.length = 0;
  onPublish = async () => {};
});

async function options(device: IssuedCert | undefined, clientId: string, extra: IClientOptions = {}): Promise<IClientOptions> {
  const identity = device ? { cert: await readFile(device.certPath), key: await readFile(device.keyPath) } : {};
  return {
    ...identity,
    ca: caPem,
    rejectUnauthorized: true,
    clientId,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 3000,
    ...extra,
  };
}

/** Connects and reports what the client saw: a CONNACK (and its code) or an error and a close. */
async function attempt(
  opts: IClientOptions,
): Promise<{ connected: boolean; connackCode?: number; error?: string; closed: boolean; client: MqttClient }> {
  const client = connect(`mqtts://127.0.0.1:${broker.port}`, opts);
  clients.push(client);
  return new Promise((resolve) => {
    let error: string | undefined;
    let connackCode: number | undefined;
    client.on('error', (e: Error & { code?: unknown }) => {
      error ??= e.message;
      if (typeof e.code === 'number') connackCode = e.code;
    });
    client.once('connect', (connack) => resolve({ connected: true, connackCode: connack.returnCode ?? 0, closed: false, client }));
    client.once('close', () => resolve({ connected: false, connackCode, error, closed: true, client }));
  });
}

async function connected(device: IssuedCert, clientId: string, extra: IClientOptions = {}): Promise<MqttClient> {
  const outcome = await attempt(await options(device, clientId, extra));
  assert.equal(outcome.connected, true, `expected ${clientId} to connect, got ${outcome.error}`);
  return outcome.client;
}

/** Runs an outside program to its end (never rejects): exit code and output. */
function tool(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Resolves with how a QoS 1 publish ended: 'acked', or 'closed' when the broker hung up first. */
function publishOutcome(client: MqttClient, topic: string, payload: Buffer): Promise<'acked' | 'closed' | `error: ${string}`> {
  return new Promise((resolve) => {
    client.once('close', () => resolve('closed'));
    client.publish(topic, payload, { qos: 1 }, (error) => resolve(error ? `error: ${error.message}` : 'acked'));
  });
}

describe('dev CA', () => {
  it('issues a device certificate with CN = thing name, signed by the CA, and a key readable only by its owner', async () => {
    const cert = new X509Certificate(await readFile(devices.gw1.certPath));
    const ca = new X509Certificate(caPem);

    assert.equal(cert.subject, 'CN=gw-0001');
    assert.equal(ca.subject, 'CN=meterbridge dev CA');
    assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'signed by the dev CA');
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal((await stat(devices.gw1.keyPath)).mode & 0o777, 0o600);
  });
});

describe('local IoT broker', () => {
  it('hands a device publish on its own topic to onPublish byte for byte, and PUBACKs only after the hand-off', async () => {
    const client = await connected(devices.gw1, 'gw-0001');
    // Not valid UTF-8 on purpose: the broker must pass bytes, not strings.
    const payload = Buffer.from([0x00, 0xff, 0xfe, 0x7b, 0x22, 0x0a, 0x80]);
    let release!: () => void;
    const handedOver = new Promise<void>((resolve) => (release = resolve));
    let started = false;
    onPublish = async () => {
      started = true;
      await handedOver;
    };
    let acked = false;

    const outcome = publishOutcome(client, topicOf('gw-0001'), payload).then((o) => ((acked = true), o));
    while (!started) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(acked, false, 'no PUBACK while onPublish has not resolved');
    release();

    assert.equal(await outcome, 'acked');
    assert.equal(received.length, 1);
    assert.deepEqual(received[0]!.payload, payload);
    assert.equal(received[0]!.topic, topicOf('gw-0001'));
    assert.equal(received[0]!.clientId, 'gw-0001');
    assert.equal(received[0]!.qos, 1);
    assert.ok(Math.abs(received[0]!.receivedAt - Date.now()) < 5000);
    client.end(true);
  });

  it('refuses a client without a certificate: TLS fails and no CONNACK ever arrives', async () => {
    const before = broker.stats.tlsRefused;

    const outcome = await attempt(await options(undefined, 'gw-0001'));

    assert.equal(outcome.connected, false);
    assert.equal(outcome.connackCode, undefined);
    // TLS 1.3: the client's handshake completes, then the server's alert arrives.
    assert.match(outcome.error ?? '', /certificate required|handshake failure/i, `client saw: ${outcome.error}`);
    assert.equal(broker.stats.tlsRefused, before + 1);
  });

  it('refuses a certificate from another CA, even with the right thing name: TLS fails, no CONNACK', async () => {
    const before = broker.stats.tlsRefused;

    const outcome = await attempt(await options(devices.foreign, 'gw-0001'));

    assert.equal(outcome.connected, false);
    assert.equal(outcome.connackCode, undefined);
    // With TLS 1.3 mqtt.js reports no error here at all, only the closed socket.
    assert.equal(outcome.closed, true);
    assert.equal(broker.stats.tlsRefused, before + 1);
  });

  it('refuses a client id other than the certificate CN with CONNACK 5 (not authorized)', async () => {
    const before = broker.stats.connectRefused;

    const outcome = await attempt(await options(devices.gw2, 'gw-0001'));

    assert.equal(outcome.connected, false);
    assert.equal(outcome.connackCode, 5);
    assert.match(outcome.error ?? '', /not authorized/i);
    assert.equal(broker.stats.connectRefused, before + 1);
  });

  it("disconnects a device publishing to another device's topic; the message never reaches onPublish and is never acknowledged", async () => {
    const client = await connected(devices.gw1, 'gw-0001');
    const before = broker.stats.publishRefused;

    const outcome = await publishOutcome(client, topicOf('gw-0002'), Buffer.from('{"spoofed":true}'));

    assert.equal(outcome, 'closed');
    assert.equal(received.length, 0);
    assert.equal(broker.stats.publishRefused, before + 1);
  });

  it('disconnects a device publishing outside Basic Ingest, even under its own name', async () => {
    const client = await connected(devices.gw1, 'gw-0001');

    const outcome = await publishOutcome(client, 'gateways/gw-0001/telemetry', Buffer.from('{}'));

    assert.equal(outcome, 'closed');
    assert.equal(received.length, 0);
  });

  it('refuses subscriptions to Basic Ingest topics with SUBACK 0x80 and keeps the connection', async () => {
    const client = await connected(devices.gw1, 'gw-0001');
    const before = broker.stats.subscribeRefused;

    for (const filter of [topicOf('gw-0001'), `$aws/rules/${RULE}/#`, '$aws/#', '$aws/+/+/gateways/+/telemetry']) {
      await assert.rejects(
        client.subscribeAsync(filter, { qos: 1 }),
        (error: Error & { packet?: { granted?: number[] } }) => error.packet?.granted?.[0] === 128,
        filter,
      );
    }

    assert.equal(broker.stats.subscribeRefused, before + 4);
    assert.equal(client.connected, true);
    client.end(true);
  });

  it(
    'never hands ingest telemetry back out: refuses a retained publish (mosquitto_pub -r) and every subscription (mosquitto_sub -t "#" ...)',
    { timeout: 60_000 },
    async (t) => {
      const hasMosquitto = await tool('sh', ['-c', 'command -v mosquitto_pub && command -v mosquitto_sub']).then((r) => r.code === 0);
      if (!hasMosquitto) {
        t.skip('mosquitto-clients is not installed (scripts/setup.sh installs it)');
        return;
      }
      const as = (device: IssuedCert, id: string) => [
        '-h',
        '127.0.0.1',
        '-p',
        String(broker.port),
        '--cafile',
        caPath,
        '--cert',
        device.certPath,
        '--key',
        device.keyPath,
        '-i',
        id,
        '-V',
        'mqttv311',
      ];
      const before = { ...broker.stats };

      // A device publishes to its own ingest topic with the retain flag: refused, nothing kept.
      const retained = await tool('mosquitto_pub', [
        ...as(devices.gw1, 'gw-0001'),
        '-q',
        '1',
        '-r',
        '-t',
        topicOf('gw-0001'),
        '-m',
        '{"retained":true}',
      ]);
      assert.notEqual(retained.code, 0, `mosquitto_pub -r must fail: ${retained.stdout}${retained.stderr}`);
      assert.equal(broker.stats.publishRefused, before.publishRefused + 1);
      assert.equal(received.length, 0, 'the retained publish never reached the rule');
      // The same message without the flag is telemetry as usual.
      const plain = await tool('mosquitto_pub', [...as(devices.gw1, 'gw-0001'), '-q', '1', '-t', topicOf('gw-0001'), '-m', '{"retained":false}']);
      assert.equal(plain.code, 0, plain.stderr);
      assert.deepEqual(
        received.map((p) => p.payload.toString()),
        ['{"retained":false}'],
      );

      // Another device tries every filter that could reach it: each one refused, nothing delivered.
      const filters = ['#', '+/#', '$aws/#', '$aws/+/#', `$aws/rules/${RULE}/#`, '$aws/rules/+/gateways/+/telemetry', 'gateways/#'];
      const sub = await tool('mosquitto_sub', [...as(devices.gw2, 'gw-0002'), '-v', '-W', '5', ...filters.flatMap((f) => ['-t', f])]);
      assert.equal(sub.stdout, '', 'no message was handed out');
      assert.match(sub.stderr, /denied/i, `mosquitto_sub saw: ${sub.stderr}`);
      assert.equal(broker.stats.subscribeRefused, before.subscribeRefused + filters.length);
    },
  );

  it('does not acknowledge when onPublish fails; the device resends after reconnecting and gets its PUBACK then', async () => {
    const client = await connected(devices.gw1, 'gw-0001', { reconnectPeriod: 100 });
    let attempts = 0;
    onPublish = async () => {
      attempts++;
      if (attempts === 1) throw new Error('queue unavailable');
    };
    let closes = 0;
    client.on('close', () => closes++);

    await client.publishAsync(topicOf('gw-0001'), Buffer.from('{"seq":7}'), { qos: 1 });

    assert.equal(attempts, 2, 'handed over twice: the first attempt failed, the resend succeeded');
    assert.equal(closes, 1, 'the failed hand-off closed the connection once');
    assert.equal(received.length, 1);
    assert.equal(received[0]!.payload.toString(), '{"seq":7}');
    client.end(true);
  });
});

describe('IoT rule and SQS bridge', () => {
  it('turns a publish into the rule body the SQS action would send, and the payload round-trips', async () => {
    const client = await connected(devices.gw2, 'gw-0002');
    const payload = Buffer.from(JSON.stringify({ seq: 1, readings: [{ meterId: 'm-1', value: 1.25 }] }) + '\u00e9\u0000');
    await client.publishAsync(topicOf('gw-0002'), payload, { qos: 1 });
    client.end(true);

    const body = toRuleMessageBody(received[0]!);
    const message = JSON.parse(body) as RuleMessage;

    assert.deepEqual(Object.keys(message).sort(), ['payload', 'receivedAt', 'topic']);
    assert.deepEqual(Buffer.from(message.payload, 'base64'), payload);
    // topic() does not see the Basic Ingest prefix.
    assert.equal(message.topic, 'gateways/gw-0002/telemetry');
    assert.equal(message.receivedAt, received[0]!.receivedAt);
  });

  it('wraps bodies into an SQS Lambda event', () => {
    const event = toSqsEvent(['{"a":1}', '{"b":2}'], { now: () => 1_764_000_000_000 });

    assert.equal(event.Records.length, 2);
    const [record] = event.Records;
    assert.match(record!.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(record!.messageId, event.Records[1]!.messageId);
    assert.equal(record!.body, '{"a":1}');
    assert.equal(record!.eventSource, 'aws:sqs');
    assert.equal(record!.eventSourceARN, 'arn:aws:sqs:us-east-1:000000000000:meterbridge-local-iot-ingest');
    assert.equal(record!.awsRegion, 'us-east-1');
    assert.equal(record!.attributes.ApproximateReceiveCount, '1');
    assert.equal(record!.attributes.SentTimestamp, '1764000000000');
    assert.equal(record!.md5OfBody, createHash('md5').update('{"a":1}').digest('hex'));
    assert.ok(record!.receiptHandle.length > 100);
  });
});

describe('LocalQueue', () => {
  it('redelivers only the failed item, with a growing receive count, and dead-letters it after maxReceiveCount', async () => {
    const queue = new LocalQueue();
    const ids = { a: queue.send('A'), b: queue.send('B'), c: queue.send('C') };
    const deliveries: { body: string; count: string; handle: string }[] = [];
    const dead: LocalQueueMessage[] = [];

    const poller = queue.startPolling(
      async (event: SQSEvent) => {
        for (const r of event.Records) deliveries.push({ body: r.body, count: r.attributes.ApproximateReceiveCount, handle: r.receiptHandle });
        return { batchItemFailures: event.Records.filter((r) => r.body === 'B').map((r) => ({ itemIdentifier: r.messageId })) };
      },
      { batchSize: 10, visibilityTimeoutMs: 60, maxReceiveCount: 3, onDeadLetter: (m) => void dead.push(m) },
    );
    await queue.whenEmpty();
    await poller.stop();

    assert.deepEqual(
      deliveries
        .filter((d) => d.body !== 'B')
        .map((d) => d.body)
        .sort(),
      ['A', 'C'],
      'succeeded items are not redelivered',
    );
    assert.deepEqual(
      deliveries.filter((d) => d.body === 'B').map((d) => d.count),
      ['1', '2', '3'],
    );
    assert.equal(new Set(deliveries.map((d) => d.handle)).size, deliveries.length, 'a new receipt handle per receive');
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.messageId, ids.b);
    assert.equal(dead[0]!.body, 'B');
    assert.equal(dead[0]!.receiveCount, 3);
    assert.ok(ids.a && ids.c);
  });

  it('treats a handler that throws as a failure of the whole batch', async () => {
    const queue = new LocalQueue();
    queue.send('x');
    queue.send('y');
    const counts: string[][] = [];
    let calls = 0;

    const poller = queue.startPolling(
      async (event) => {
        counts.push(event.Records.map((r) => `${r.body}${r.attributes.ApproximateReceiveCount}`));
        if (++calls === 1) throw new Error('boom');
        return { batchItemFailures: [] };
      },
      { visibilityTimeoutMs: 50 },
    );
    await queue.whenEmpty();
    await poller.stop();

    assert.deepEqual(counts, [
      ['x1', 'y1'],
      ['x2', 'y2'],
    ]);
  });

  it('carries broker publishes through the rule body and the queue to the handler', async () => {
    const queue = new LocalQueue();
    onPublish = async (publish) => void queue.send(toRuleMessageBody(publish));
    const bodies: RuleMessage[] = [];
    const poller = queue.startPolling(async (event) => {
      for (const r of event.Records) bodies.push(JSON.parse(r.body) as RuleMessage);
      return { batchItemFailures: [] };
    });
    const client = await connected(devices.gw1, 'gw-0001');

    await client.publishAsync(topicOf('gw-0001'), Buffer.from('{"seq":42}'), { qos: 1 });
    client.end(true);
    await queue.whenEmpty();
    await poller.stop();

    assert.equal(bodies.length, 1);
    assert.equal(Buffer.from(bodies[0]!.payload, 'base64').toString(), '{"seq":42}');
    assert.equal(bodies[0]!.topic, 'gateways/gw-0001/telemetry');
  });
});
