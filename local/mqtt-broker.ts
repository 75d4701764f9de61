/**
 * Local stand-in for the AWS IoT Core MQTT broker: aedes behind a mutual-TLS server, enforcing
 * what the device policy enforces in AWS (docs/design.md §3):
 *
 * - only certificates from the configured CA connect (TLS refuses the others before MQTT starts);
 * - the MQTT client id must equal the certificate's subject CN, which stands in for the thing name
 *   (`iot:Connect` on `client/${iot:Connection.Thing.ThingName}`);
 * - a device may publish only to its own Basic Ingest topic
 *   `$aws/rules/<ruleName>/gateways/<thingName>/telemetry`, QoS 0 or 1, at most 128 KB, and
 *   never with the RETAIN flag: the device policy grants `iot:Publish` only, not
 *   `iot:RetainPublish`, so IoT Core refuses a retained publish as unauthorized (and it retains
 *   nothing on Basic Ingest topics in any case). The stand-in refuses it the same way (the client
 *   is disconnected), so nothing is ever stored to be handed to a later subscriber;
 * - nobody can subscribe to anything: the device policy grants no `iot:Subscribe`. That also
 *   covers every filter that could reach ingest telemetry (`#`, `+/#`, `$aws/#`, `$aws/rules/...`),
 *   whatever aedes makes of MQTT's rule that wildcards do not match `$` topics.
 *
 * Accepted publishes go to `onPublish` (the "topic rule"); for QoS 1 the PUBACK is sent only after
 * `onPublish` resolves, so an acknowledged message has been handed over. aedes writes the PUBACK
 * *before* it publishes internally (lib/handlers/publish.js, `enqueuePublish`), and its `published`
 * hook runs after that, so the only hook that can hold back the PUBACK is `authorizePublish`: the
 * hand-off happens there, and aedes waits for its callback before acknowledging.
 *
 * What clients observe (aedes speaks MQTT 3.1.1; an MQTT 5 CONNECT is answered with return code 1):
 * - no certificate or another CA's certificate: the TLS handshake fails; no CONNACK ever arrives.
 *   With TLS 1.3 the client believes its handshake finished (client certificates are checked after
 *   it), sends CONNECT, and then sees, with mqtt.js 5 on Node 20: no certificate → an error
 *   `ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED` (alert 116) and a close; another CA's certificate →
 *   only a closed socket, no error event. With TLS 1.2: `EPROTO ... alert handshake failure` (no
 *   certificate) or `ECONNRESET ... disconnected before secure TLS connection was established`.
 * - client id ≠ certificate CN: CONNACK with return code 5 (not authorized), then the socket closes.
 * - publish to any other topic, QoS 2, or an oversized payload: aedes closes the connection (MQTT
 *   3.1.1 has no negative PUBACK). A QoS 1 publish is never acknowledged; a client that reconnects
 *   will resend it and be disconnected again. The message never reaches `onPublish`.
 * - `onPublish` throws: same as a refused publish (connection closed, no PUBACK), so the device
 *   resends after reconnecting — at-least-once, like IoT Core when a rule cannot take the message.
 * - a publish with the RETAIN flag (a Will included): refused like any unauthorized publish.
 * - any SUBSCRIBE: SUBACK with return code 0x80 (failure) for every filter; the connection stays.
 *   The exceptions are the two response topics of the CreateCertificateFromCsr MQTT API.
 *
 * With a certificate `registry` (local/iot-registry.ts, kept in moto's IoT control plane) the broker
 * also does what IoT Core does with its registry: a CONNECT whose certificate is not registered,
 * not ACTIVE (PENDING_ACTIVATION, INACTIVE, REVOKED) or not attached to the thing named by the
 * client id gets CONNACK 5; and a publish of `{"certificateSigningRequest": ...}` to
 * `$aws/certificates/create-from-csr/json` is answered on `.../accepted` (certificateId,
 * certificatePem, certificateOwnershipToken) or `.../rejected` (statusCode, errorCode,
 * errorMessage), to the requesting connection only, and only if it subscribed to that topic
 * first. Devices may also publish to their own gateway event topics (rotation notices, status),
 * which go to `onPublish` like telemetry.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import { connect } from 'mqtt';
import { CsrError } from '../shared/csr.ts';
import { silentLog, type Log } from '../shared/log.ts';
import {
  CREATE_FROM_CSR_ACCEPTED_TOPIC,
  CREATE_FROM_CSR_REJECTED_TOPIC,
  CREATE_FROM_CSR_TOPIC,
  gatewayEventFromTopic,
  gatewayEventTopic,
  MAX_MESSAGE_BYTES,
  RULE_NAME_PATTERN,
  telemetryTopic as basicIngestTopic,
} from '../shared/telemetry.ts';

/** One publish the broker accepted, as handed to the rule. */
export interface LocalIotPublish {
  /** The full topic, Basic Ingest prefix included (`$aws/rules/<rule>/gateways/<thing>/telemetry`). */
  topic: string;
  /** The exact bytes the device published. */
  payload: Buffer;
  /** MQTT client id, equal to the thing name. */
  clientId: string;
  /** Epoch milliseconds when the broker received the publish (the rule's `timestamp()`). */
  receivedAt: number;
  qos: 0 | 1;
  /** IoT id of the publisher's certificate (SHA-256 of its DER): the rule's `principal()`. */
  certificateId: string;
}

export interface LocalIotBrokerOptions {
  /**
   * TCP port on 127.0.0.1.
   * @default 0 (a free port, see the returned `port`)
   */
  port?: number;
  /**
   * Interface to listen on. Loopback only: this is a development broker.
   * @default '127.0.0.1'
   */
  host?: string;
  /** PEM file of the CA whose device certificates are accepted (the registered CA in IoT Core). */
  caCertPath: string;
  /** PEM server certificate (its subjectAltName must match the host clients connect to). */
  serverCertPath: string;
  /** PEM key of the server certificate. */
  serverKeyPath: string;
  /** Topic rule name: devices publish to `$aws/rules/<ruleName>/gateways/<thingName>/telemetry`. */
  ruleName: string;
  /**
   * Receives each accepted publish. For QoS 1 the PUBACK waits for the returned promise; a
   * rejection means "not handed over": no PUBACK, the connection is closed, the device resends.
   */
  onPublish: (publish: LocalIotPublish) => Promise<void> | void;
  /**
   * Largest accepted payload in bytes (IoT Core's message size limit).
   * @default 131072 (128 KB)
   */
  maxPayloadBytes?: number;
  /**
   * How long a TLS-connected client may take to send CONNECT.
   * @default 5000
   */
  connectTimeoutMs?: number;
  /**
   * IoT Core's certificate registry (local/iot-registry.ts): checked at CONNECT, and answers the
   * CreateCertificateFromCsr MQTT API. Without it, any certificate of the CA connects and that API is refused.
   */
  registry?: LocalCertificateRegistry;
  /**
   * Where refusals and hand-off failures are logged.
   * @default silentLog
   */
  log?: Log;
}

/** Counters for tests and the local mode's status output. */
export interface LocalIotBrokerStats {
  /** TLS handshakes refused (no certificate, unknown CA, protocol errors). */
  tlsRefused: number;
  /** MQTT sessions that received CONNACK 0. */
  connected: number;
  /** CONNECTs refused with a CONNACK error (client id ≠ certificate CN). */
  connectRefused: number;
  /** Publishes handed to onPublish and resolved. */
  publishAccepted: number;
  /** Publishes refused by policy (topic, QoS, size, RETAIN); the client was disconnected. */
  publishRefused: number;
  /** Publishes whose onPublish rejected; the client was disconnected without a PUBACK. */
  handOffFailed: number;
  /** Subscriptions refused with SUBACK 0x80. */
  subscribeRefused: number;
  /** Certificates signed through the CreateCertificateFromCsr MQTT API. */
  certificatesCreated: number;
}

export interface LocalIotBroker {
  /** The port actually listened on. */
  port: number;
  host: string;
  stats: LocalIotBrokerStats;
  /** The topic `thingName` may publish to. */
  telemetryTopic(thingName: string): string;
  /** Stops accepting, disconnects every client and closes the broker. */
  close(): Promise<void>;
}

/** CONNACK return code 5 in MQTT 3.1.1. */
const NOT_AUTHORIZED = 5;

/** The answer of the CreateCertificateFromCsr MQTT API (its `/accepted` payload). */
export interface CreatedFromCsr {
  certificateId: string;
  certificatePem: string;
  certificateOwnershipToken: string;
}

/** What the broker needs of IoT Core's certificate registry. */
export interface LocalCertificateRegistry {
  /** Why this certificate may not connect as `clientId` (undefined: it may). */
  connectRefusal(certificateDer: Buffer, clientId: string): Promise<string | undefined>;
  /** Signs the CSR for `thingName`; the certificate is registered PENDING_ACTIVATION. Throws CsrError for a bad CSR. */
  createFromCsr(thingName: string, csrPem: string): Promise<CreatedFromCsr>;
}

/** What the hooks share: options with their defaults, the server's files and the counters. */
interface BrokerContext {
  ruleName: string;
  onPublish: LocalIotBrokerOptions['onPublish'];
  maxPayloadBytes: number;
  connectTimeoutMs: number;
  log: Log;
  registry: LocalCertificateRegistry | undefined;
  stats: LocalIotBrokerStats;
  telemetryTopic(thingName: string): string;
}

const CSR_RESPONSE_TOPICS: readonly string[] = [CREATE_FROM_CSR_ACCEPTED_TOPIC, CREATE_FROM_CSR_REJECTED_TOPIC];

export async function startLocalIotBroker(options: LocalIotBrokerOptions): Promise<LocalIotBroker> {
  const { port = 0, host = '127.0.0.1', ruleName } = options;
  if (!RULE_NAME_PATTERN.test(ruleName)) throw new Error(`'${ruleName}' is not a valid topic rule name ([a-zA-Z0-9_])`);
  const [ca, cert, key] = await Promise.all([readFile(options.caCertPath), readFile(options.serverCertPath), readFile(options.serverKeyPath)]);
  const context: BrokerContext = {
    ruleName,
    onPublish: options.onPublish,
    maxPayloadBytes: options.maxPayloadBytes ?? MAX_MESSAGE_BYTES,
    connectTimeoutMs: options.connectTimeoutMs ?? 5000,
    log: options.log ?? silentLog,
    registry: options.registry,
    stats: {
      tlsRefused: 0,
      connected: 0,
      connectRefused: 0,
      publishAccepted: 0,
      publishRefused: 0,
      handOffFailed: 0,
      subscribeRefused: 0,
      certificatesCreated: 0,
    },
    telemetryTopic: (thingName) => basicIngestTopic(ruleName, thingName),
  };
  const broker = await createBroker(context);
  const { server, sockets } = createTlsServer(context, broker, { ca, cert, key });
  server.listen(port, host);
  await once(server, 'listening');

  return {
    port: (server.address() as AddressInfo).port,
    host,
    stats: context.stats,
    telemetryTopic: context.telemetryTopic,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await closed;
    },
  };
}

async function createBroker(context: BrokerContext): Promise<Aedes> {
  const { stats, log } = context;
  const broker = await Aedes.createBroker({
    connectTimeout: context.connectTimeoutMs,
    // Thing names may be up to 128 characters; aedes' default (23) is the MQTT 3.1 limit.
    maxClientsIdLength: 128,
    authenticate: (client, _username, _password, done) => {
      void connectRefusal(context, client).then(
        (refusal) => {
          if (refusal === undefined) return done(null, true);
          stats.connectRefused++;
          log.warn('local IoT broker: CONNECT refused', { clientId: client.id, reason: refusal });
          const error = new Error(refusal) as AuthenticateError;
          // aedes declares the codes as an ambient const enum, which isolatedModules cannot reference.
          error.returnCode = NOT_AUTHORIZED as AuthenticateError['returnCode'];
          done(error, false);
        },
        (error: unknown) => {
          const failure = new Error(`certificate registry unavailable: ${String(error)}`) as AuthenticateError;
          failure.returnCode = NOT_AUTHORIZED as AuthenticateError['returnCode'];
          done(failure, false);
        },
      );
    },
    authorizePublish: (client, packet, callback) => authorizePublish(context, client, packet, callback),
    authorizeSubscribe(client, subscription, callback) {
      // The device policy grants iot:Subscribe on the CreateCertificateFromCsr response topics only:
      // every other filter is refused, so no filter syntax can reach another device's telemetry.
      if (context.registry && CSR_RESPONSE_TOPICS.includes(subscription.topic)) return callback(null, subscription);
      stats.subscribeRefused++;
      log.warn('local IoT broker: SUBSCRIBE refused (not allowed by the device policy)', { clientId: client.id, topic: subscription.topic });
      // A null subscription makes aedes answer SUBACK 0x80 for this filter and keep the connection.
      callback(null, null);
    },
  });
  broker.on('clientReady', () => {
    stats.connected++;
  });
  // aedes reports refused publishes and dropped sockets here; without a listener they would vanish.
  broker.on('clientError', (client, error) =>
    log.debug('local IoT broker: client connection ended with an error', { clientId: client.id, error: error.message }),
  );
  return broker;
}

/** Client id = certificate CN (the thing), and with a registry: registered, ACTIVE, attached to that thing. */
async function connectRefusal(context: BrokerContext, client: Client): Promise<string | undefined> {
  const thingName = certificateCommonName(client);
  if (thingName === undefined || client.id !== thingName) return `client id '${client.id}' does not match the certificate (CN '${thingName ?? '-'}')`;
  const der = peerCertificateDer(client);
  if (!context.registry || !der) return undefined;
  return context.registry.connectRefusal(der, client.id);
}

function authorizePublish(context: BrokerContext, client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void {
  const { stats, log } = context;
  const refusal = client === null ? 'publishes without a client are not allowed' : publishRefusal(context, client, packet);
  if (refusal !== undefined) {
    stats.publishRefused++;
    log.warn('local IoT broker: PUBLISH refused, disconnecting', { clientId: client?.id, topic: packet.topic, reason: refusal });
    callback(new Error(refusal));
    return;
  }
  // Copied: the parser's buffer may be a slice of a larger, reused chunk.
  const payload = Buffer.from(packet.payload);
  if (packet.topic === CREATE_FROM_CSR_TOPIC) {
    callback(null);
    void answerCreateFromCsr(context, client!, payload);
    return;
  }
  const der = peerCertificateDer(client!);
  const certificateId = der ? createHash('sha256').update(der).digest('hex') : '';
  const publish: LocalIotPublish = {
    topic: packet.topic,
    payload,
    clientId: client!.id,
    receivedAt: Date.now(),
    qos: packet.qos as 0 | 1,
    certificateId,
  };
  // aedes waits for this callback before it writes the PUBACK (QoS 1): ack = handed over.
  Promise.resolve()
    .then(() => context.onPublish(publish))
    .then(
      () => {
        stats.publishAccepted++;
        callback(null);
      },
      (error: unknown) => {
        stats.handOffFailed++;
        log.error('local IoT broker: onPublish failed, not acknowledging', {
          clientId: publish.clientId,
          topic: publish.topic,
          error: String(error),
        });
        callback(error instanceof Error ? error : new Error(String(error)));
      },
    );
}

function publishRefusal(context: BrokerContext, client: Client, packet: PublishPacket): string | undefined {
  // Its own telemetry and gateway event topics (IoT policy variable: the thing name), and the CSR API.
  const event = gatewayEventFromTopic(packet.topic);
  const allowed =
    packet.topic === context.telemetryTopic(client.id) ||
    (event !== undefined && packet.topic === gatewayEventTopic(context.ruleName, client.id, event.kind)) ||
    (packet.topic === CREATE_FROM_CSR_TOPIC && context.registry !== undefined);
  if (!allowed) return `not authorized to publish to '${packet.topic}'`;
  if (packet.qos === 2) return 'QoS 2 is not supported';
  // Checked before aedes stores anything: it keeps a retained message only after this hook allowed it.
  if (packet.retain) return 'not authorized to publish retained messages (no iot:RetainPublish)';
  const size = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
  if (size > context.maxPayloadBytes) return `payload of ${size} bytes exceeds ${context.maxPayloadBytes}`;
  return undefined;
}

/** CreateCertificateFromCsr: signs (via the registry) and answers the requesting connection only. */
async function answerCreateFromCsr(context: BrokerContext, client: Client, payload: Buffer): Promise<void> {
  let topic = CREATE_FROM_CSR_ACCEPTED_TOPIC;
  let answer: object;
  try {
    const request = JSON.parse(payload.toString('utf8')) as { certificateSigningRequest?: unknown };
    if (typeof request.certificateSigningRequest !== 'string') throw new CsrError('certificateSigningRequest is missing');
    answer = await context.registry!.createFromCsr(client.id, request.certificateSigningRequest);
    context.stats.certificatesCreated++;
  } catch (error) {
    const invalid = error instanceof CsrError || error instanceof SyntaxError;
    topic = CREATE_FROM_CSR_REJECTED_TOPIC;
    answer = {
      statusCode: invalid ? 400 : 500,
      errorCode: invalid ? 'InvalidPayload' : 'InternalFailure',
      errorMessage: String((error as Error).message ?? error),
    };
    context.log.warn('local IoT broker: CreateCertificateFromCsr rejected', { clientId: client.id, error: String(error) });
  }
  // IoT Core answers on the connection that asked, and only if it subscribed to the answer's topic.
  // aedes' Client type declares neither `subscriptions` nor deliver0, its per-connection delivery (lib/client.js).
  const connection = client as unknown as { subscriptions: Record<string, unknown>; deliver0(packet: object, done: () => void): void };
  if (!(topic in connection.subscriptions)) return;
  const packet = { cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(answer)), qos: 0, retain: false, dup: false } as const;
  connection.deliver0(packet, () => undefined);
}

function createTlsServer(
  context: BrokerContext,
  broker: Aedes,
  files: { ca: Buffer; cert: Buffer; key: Buffer },
): { server: tls.Server; sockets: Set<Socket> } {
  const sockets = new Set<Socket>();
  const server = tls.createServer({ ...files, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' }, (socket) => {
    broker.handle(socket);
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', (error, socket) => {
    context.stats.tlsRefused++;
    context.log.warn('local IoT broker: TLS handshake refused', { error: error.message, remote: socket.remoteAddress });
  });
  return { server, sockets };
}

/** The DER of the client's verified certificate. */
function peerCertificateDer(client: Client): Buffer | undefined {
  const conn = client.conn;
  return conn instanceof tls.TLSSocket ? conn.getPeerCertificate().raw : undefined;
}

/** The subject CN of the client's verified certificate, or undefined when there is none. */
function certificateCommonName(client: Client): string | undefined {
  const conn = client.conn;
  if (!(conn instanceof tls.TLSSocket)) return undefined;
  const cn = conn.getPeerCertificate().subject?.CN;
  // A certificate with several CN attributes is ambiguous: treat it as having none.
  return typeof cn === 'string' ? cn : undefined;
}

/**
 * One CONNECT with a certificate and key, as a device makes it: 'connected' on a CONNACK that
 * accepts, or the refusal as the client saw it (CONNACK return code, TLS or socket error). The
 * connection is closed again at once. Local mode's summary and the tests ask it whether a retired
 * certificate is really refused.
 */
export async function tryConnect(options: {
  port: number;
  caPath: string;
  certPath: string;
  keyPath: string;
  clientId: string;
  timeoutMs?: number;
}): Promise<{ connected: true } | { connected: false; error: string }> {
  const [ca, cert, key] = await Promise.all([readFile(options.caPath), readFile(options.certPath), readFile(options.keyPath)]);
  return new Promise((resolve) => {
    const client = connect({
      host: '127.0.0.1',
      port: options.port,
      protocol: 'mqtts',
      ca,
      cert,
      key,
      clientId: options.clientId,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: options.timeoutMs ?? 10_000,
    });
    let settled = false;
    const done = (outcome: { connected: true } | { connected: false; error: string }) => {
      if (settled) return;
      settled = true;
      client.end(true);
      resolve(outcome);
    };
    client.once('connect', () => done({ connected: true }));
    client.once('error', (error) => done({ connected: false, error: error.message }));
    client.once('close', () => done({ connected: false, error: 'connection closed before a CONNACK' }));
  });
}
