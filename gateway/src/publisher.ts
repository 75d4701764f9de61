/**
 * Drains the spool to AWS IoT Core over MQTT with mutual TLS (the device certificate), QoS 1.
 *
 * - Messages are built from the spool (message-builder.ts), written to the outbox with their seq
 *   and only then published; after a reconnect or restart the unacknowledged ones are re-sent
 *   byte for byte, so the cloud ledger sees the same (gatewayId, seq) with the same content.
 * - The cursor moves on PUBACK only, over an unbroken run from the oldest message.
 * - Publishes are paced under the per-connection limits (count and bytes per second, sliding
 *   window) with at most `maxInFlight` messages and one second's byte budget unacknowledged.
 * - Connection failures back off exponentially with full jitter; after a (re)connect with a
 *   backlog the drain starts after a random delay, so a fleet coming back from a network outage
 *   does not hit the endpoint in the same second.
 * - Readings are held until the oldest unpublished one is `holdSeconds` old (fewer, longer
 *   blocks), or a full drain window has accumulated.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { Log } from '../../shared/log.ts';
import type { AgentClock } from './clock.ts';
import { telemetryTopic, type GatewayConfig } from './config.ts';
import { buildMessages } from './message-builder.ts';
import { Pacer, RateMeter } from './pacer.ts';
import { type CertificateRotator, type Credentials } from './rotation.ts';
import { Signal } from './signal.ts';
import type { Spool } from './spool.ts';

export type PublisherFaultPoint = 'publish' | 'ack';

export interface PublisherOptions {
  config: GatewayConfig;
  spool: Spool;
  clock: AgentClock;
  log: Log;
  /** @default Math.random */
  random?: () => number;
  faultPoint?: (point: PublisherFaultPoint) => void;
  /** Milliseconds between acknowledgement and the durable cursor write (coalesces fsyncs). @default 100 */
  persistDelayMs?: number;
  /** Certificate rotation: the pair to connect with, told of every connect and connect failure. */
  rotator?: CertificateRotator;
}

export interface PublisherStats {
  connected: boolean;
  connects: number;
  connectFailures: number;
  disconnects: number;
  messagesBuilt: number;
  messagesPublished: number;
  messagesAcked: number;
  readingsAcked: number;
  bytesPublished: number;
  inFlight: number;
  lastPublishAt: string | undefined;
  lastAckAt: string | undefined;
  lastError: string | undefined;
  /** The most publishes and bytes this publisher sent in any 1 s window (sender side of the pacing). */
  peakSendRate: { publishes: number; bytes: number };
}

export class Publisher {
  private readonly config: GatewayConfig;
  private readonly spool: Spool;
  private readonly clock: AgentClock;
  private readonly log: Log;
  private readonly random: () => number;
  private readonly faultPoint: ((point: PublisherFaultPoint) => void) | undefined;
  private readonly persistDelayMs: number;
  private readonly rotator: CertificateRotator | undefined;
  private readonly topic: string;
  private readonly signal = new Signal();
  private running = false;
  private loop: Promise<void> | undefined;
  private client: MqttClient | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  /** One pacer for the publisher's life: a quick reconnect does not reset the budget. */
  private readonly pacer: Pacer;
  /** Publishes and bytes sent in the last second, and the peak, as the sender saw them. */
  private readonly sendRate = new RateMeter();
  private readonly counters: Omit<PublisherStats, 'peakSendRate'> = {
    connected: false,
    connects: 0,
    connectFailures: 0,
    disconnects: 0,
    messagesBuilt: 0,
    messagesPublished: 0,
    messagesAcked: 0,
    readingsAcked: 0,
    bytesPublished: 0,
    inFlight: 0,
    lastPublishAt: undefined,
    lastAckAt: undefined,
    lastError: undefined,
  };

  constructor(options: PublisherOptions) {
    this.config = options.config;
    this.spool = options.spool;
    this.clock = options.clock;
    this.log = options.log;
    this.random = options.random ?? Math.random;
    this.faultPoint = options.faultPoint;
    this.persistDelayMs = options.persistDelayMs ?? 100;
    this.rotator = options.rotator;
    this.topic = telemetryTopic(this.config);
    const { maxPublishesPerSecond, maxBytesPerSecond, rateWindowSeconds } = this.config.publish;
    this.pacer = new Pacer(maxPublishesPerSecond, maxBytesPerSecond, rateWindowSeconds * 1000);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** New readings are in the spool. */
  wake(): void {
    this.signal.notify();
  }

  /** Ends the connection; the publisher reconnects (with the rotator's current pair) after a short jittered wait. */
  reconnect(): void {
    this.client?.end(true);
  }

  /** Publishes a gateway event (QoS 1) if connected; false when not connected or not acknowledged. */
  publishEvent(topic: string, body: string): Promise<boolean> {
    const client = this.client;
    if (!client?.connected) return Promise.resolve(false);
    return new Promise((resolve) => client.publish(topic, body, { qos: 1 }, (error) => resolve(!error)));
  }

  /** The live connection, if any (the rotator's periodic check). */
  connection(): MqttClient | undefined {
    return this.client?.connected ? this.client : undefined;
  }

  stats(): PublisherStats {
    return { ...this.counters, peakSendRate: this.sendRate.peak() };
  }

  async stop(): Promise<void> {
    this.running = false;
    this.signal.notify();
    this.client?.end(true);
    await this.loop;
    if (this.persistTimer) clearTimeout(this.persistTimer);
    this.spool.persistState();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      let client: MqttClient;
      const credentials = this.credentials();
      try {
        client = await this.connect(credentials);
      } catch (error) {
        failures++;
        this.counters.connectFailures++;
        this.counters.lastError = String(error instanceof Error ? error.message : error);
        this.rotator?.onConnectFailed(credentials, this.counters.lastError);
        const ceiling = Math.min(this.config.backoff.maxSeconds, this.config.backoff.initialSeconds * 2 ** (failures - 1));
        const delay = this.random() * ceiling * 1000; // full jitter
        this.log.warn('mqtt: connect failed, backing off', { attempt: failures, retryInMs: Math.round(delay), error: this.counters.lastError });
        await this.signal.wait(delay);
        continue;
      }
      const afterOutage = failures > 0 || this.counters.connects === 0;
      failures = 0;
      this.counters.connects++;
      this.counters.connected = true;
      this.log.info('mqtt: connected', {
        endpoint: this.config.iot.endpoint,
        port: this.config.iot.port,
        backlogReadings: this.spool.stats().depth,
        certificateId: credentials.certificateId,
      });
      this.rotator?.onConnected(client, credentials);
      try {
        await this.session(client, afterOutage);
      } finally {
        this.counters.connected = false;
        this.counters.inFlight = 0;
        client.end(true);
        this.client = undefined;
      }
      if (this.running) {
        this.counters.disconnects++;
        failures = 1; // the next connect attempt is after a (short, jittered) wait too
        const delay = this.random() * this.config.backoff.initialSeconds * 1000;
        this.log.warn('mqtt: connection lost', { retryInMs: Math.round(delay), error: this.counters.lastError });
        await this.signal.wait(delay);
      }
    }
  }

  private credentials(): Credentials {
    if (this.rotator) return this.rotator.credentials();
    const { certFile, keyFile } = this.config.iot;
    return { certFile, keyFile, certificateId: '' };
  }

  private connect(credentials: Credentials): Promise<MqttClient> {
    const { iot, thingName } = this.config;
    const options: IClientOptions & { minVersion: 'TLSv1.2' } = {
      // Passed through to tls.connect; IoT Core requires TLS 1.2 or later.
      minVersion: 'TLSv1.2',
      host: iot.endpoint,
      port: iot.port,
      protocol: 'mqtts',
      // SNI carries the ATS endpoint name; an IP address (a local broker) must not be sent as SNI.
      ...(isIP(iot.endpoint) === 0 ? { servername: iot.endpoint } : {}),
      // Read at every connect: a rotation swaps the pair between two connections.
      cert: readFileSync(credentials.certFile),
      key: readFileSync(credentials.keyFile),
      ca: readFileSync(iot.caFile),
      rejectUnauthorized: true,
      clientId: thingName,
      protocolVersion: iot.protocolVersion,
      keepalive: iot.keepaliveSeconds,
      connectTimeout: iot.connectTimeoutSeconds * 1000,
      clean: true,
      // Reconnecting is ours (backoff with jitter, outbox re-send), not mqtt.js's.
      reconnectPeriod: 0,
      ...(iot.port === 443 ? { ALPNProtocols: ['x-amzn-mqtt-ca'] } : {}),
    };
    return new Promise((resolve, reject) => {
      const client = connect(options);
      this.client = client;
      const fail = (error: Error) => {
        cleanup();
        client.end(true);
        reject(error);
      };
      const onClose = () => fail(new Error('connection closed before CONNACK'));
      const onConnect = () => {
        cleanup();
        resolve(client);
      };
      const cleanup = () => {
        client.off('error', fail);
        client.off('close', onClose);
        client.off('connect', onConnect);
      };
      client.on('error', fail);
      client.on('close', onClose);
      client.on('connect', onConnect);
    });
  }

  /** Publishes until the connection closes or the publisher stops. */
  private async session(client: MqttClient, afterOutage: boolean): Promise<void> {
    let open = true;
    client.on('close', () => {
      open = false;
      this.signal.notify();
    });
    client.on('error', (error) => {
      this.counters.lastError = error.message;
    });

    const backlog = this.spool.stats().depth;
    if (afterOutage && backlog > 0 && this.config.publish.drainStartDelayMaxSeconds > 0) {
      const delay = this.random() * this.config.publish.drainStartDelayMaxSeconds * 1000;
      this.log.info('publish: backlog after reconnect, waiting a random delay before draining', {
        backlogReadings: backlog,
        delayMs: Math.round(delay),
      });
      const until = Date.now() + delay;
      while (open && this.running && Date.now() < until) await this.signal.wait(until - Date.now());
    }

    const { maxBytesPerSecond, maxInFlight } = this.config.publish;
    const pacer = this.pacer;
    let lastSentSeq = 0;
    let inFlight = 0;
    let inFlightBytes = 0;

    while (open && this.running) {
      const next = this.spool.pendingMessages().find((m) => m.seq > lastSentSeq);
      if (next) {
        const bytes = Buffer.byteLength(next.body);
        // Unacknowledged bytes are capped at one second's budget too: whatever a network stall
        // holds back and then releases at once stays within what the broker allows in a second.
        if (inFlight >= maxInFlight || (inFlight > 0 && inFlightBytes + bytes > maxBytesPerSecond)) {
          await this.signal.wait(1000);
          continue;
        }
        const delay = pacer.delayFor(bytes);
        if (delay > 0) {
          await this.signal.wait(delay);
          continue;
        }
        pacer.record(bytes);
        this.sendRate.record(bytes);
        lastSentSeq = next.seq;
        inFlight++;
        inFlightBytes += bytes;
        this.counters.inFlight = inFlight;
        const { seq, readings } = next;
        client.publish(this.topic, next.body, { qos: 1 }, (error) => {
          inFlight--;
          inFlightBytes -= bytes;
          this.counters.inFlight = inFlight;
          if (error) {
            // Not acknowledged (MQTT 5 negative PUBACK, or the connection went): it stays in the
            // outbox and is re-sent after a reconnect.
            this.counters.lastError = `publish seq ${seq}: ${error.message}`;
            if (open) this.log.warn('publish: not acknowledged, reconnecting', { seq, error: error.message });
            client.end(true);
          } else {
            this.acknowledged(seq, readings);
          }
          this.signal.notify();
        });
        this.counters.messagesPublished++;
        this.counters.bytesPublished += bytes;
        this.counters.lastPublishAt = new Date().toISOString();
        this.faultPoint?.('publish');
        continue;
      }
      try {
        if (this.buildNext()) continue;
      } catch (error) {
        // The outbox could not be written (disk full, I/O error): nothing was published; try again.
        this.counters.lastError = `building messages: ${String(error)}`;
        this.log.error('publish: could not write built messages to the outbox; retrying', { error: String(error) });
        await this.signal.wait(5000);
        continue;
      }
      await this.signal.wait(this.holdRemainingMs());
    }
  }

  private acknowledged(seq: number, readings: number): void {
    this.counters.messagesAcked++;
    this.counters.readingsAcked += readings;
    this.counters.lastAckAt = new Date().toISOString();
    this.spool.acknowledge(seq);
    this.faultPoint?.('ack');
    if (!this.persistTimer) {
      this.persistTimer = setTimeout(() => {
        this.persistTimer = undefined;
        try {
          this.spool.persistState();
        } catch (error) {
          // Not persisted yet: after a crash these messages are re-sent (duplicates, never losses).
          this.log.error('publish: could not persist the cursor', { error: String(error) });
        }
      }, this.persistDelayMs);
    }
  }

  /** Milliseconds until the oldest unbuilt reading reaches its hold time (capped at 1 s of real time). */
  private holdRemainingMs(): number {
    const oldest = this.spool.readForward(this.spool.buildFrom, 1)[0];
    if (!oldest) return 1000;
    const dueAt = (oldest.start + oldest.intervalSeconds + this.config.publish.holdSeconds) * 1000;
    return Math.min(1000, Math.max(1, this.clock.realDelay(dueAt - this.clock.now())));
  }

  /** Builds the next window of readings into outbox messages, if it is due. */
  private buildNext(): boolean {
    const { holdSeconds, drainWindowReadings, maxMessageBytes } = this.config.publish;
    const unbuilt = this.spool.nextIndex - this.spool.buildFrom;
    if (unbuilt <= 0) return false;
    const oldest = this.spool.readForward(this.spool.buildFrom, 1)[0];
    if (!oldest) return false;
    const due = (oldest.start + oldest.intervalSeconds + holdSeconds) * 1000 <= this.clock.now();
    if (!due && unbuilt < drainWindowReadings) return false;

    const readings = this.spool.readForward(this.spool.buildFrom, drainWindowReadings);
    const windowStart = this.spool.buildFrom;
    const windowEnd = readings.at(-1)!.index + 1;
    const messages = buildMessages(readings, {
      gatewayId: this.config.thingName,
      maxMessageBytes,
      sentAt: new Date(this.clock.now()).toISOString(),
      allocateSeq: () => this.spool.allocateSeq(),
    });
    // The cursor may pass the window only when its last message is acknowledged.
    this.spool.addMessages(
      messages.map((m, i) => ({ seq: m.seq, body: m.body, readings: m.readings, cursorAfter: i === messages.length - 1 ? windowEnd : windowStart })),
      windowEnd,
    );
    this.counters.messagesBuilt += messages.length;
    this.log.debug('publish: built messages', { messages: messages.length, readings: readings.length, firstSeq: messages[0]?.seq });
    return true;
  }
}
