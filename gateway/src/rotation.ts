/**
 * Certificate rotation without admin credentials on the device (docs/gateway.md "Certificate
 * rotation"). When the certificate is `rotation.intervalDays` old (or `meterbridge-gateway rotate`
 * asked for it), on the live MQTT connection:
 *
 *   1. a new EC P-256 key is born in a new generation folder (keygen.ts, 0600) with its CSR;
 *   2. CreateCertificateFromCsr MQTT API: subscribe to `.../accepted` and `.../rejected`, publish the
 *      CSR; the accepted certificate is written beside the key (IoT leaves it PENDING_ACTIVATION);
 *   3. an `activate` notice over the OLD certificate asks the cloud to activate and attach it;
 *   4. after `activationWaitSeconds`, `current.json` is replaced (rename: key and certificate swap
 *      together) and the connection is closed; the publisher reconnects with the new pair;
 *   5. connected with the new certificate, a `retire` notice asks the cloud to revoke the old one.
 *
 * The spool is not touched: messages in flight at the reconnect stay in the outbox and are re-sent
 * byte for byte with their seq, so the cloud's ledger stores every reading once.
 *
 * If the new certificate does not connect `maxConnectFailures` times in a row, `current.json` goes
 * back to the old pair and steps 3-4 are tried again later (at most 5 times, then the rotation is
 * dropped and starts over with a new key at the next check). A crash between steps resumes from
 * `pending.json`; a crash during step 2 drops that request (IoT deletes a certificate left
 * PENDING_ACTIVATION after an hour).
 */
import { X509Certificate, createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import type { RotationNotice } from '../../shared/gateway-events.ts';
import type { Log } from '../../shared/log.ts';
import { CREATE_FROM_CSR_ACCEPTED_TOPIC, CREATE_FROM_CSR_REJECTED_TOPIC, CREATE_FROM_CSR_TOPIC, gatewayEventTopic } from '../../shared/telemetry.ts';
import { credentialsDirectory, type GatewayConfig } from './config.ts';
import { generateDeviceKey } from './keygen.ts';

/** A key and its certificate, with the certificate's IoT id (SHA-256 of the DER). */
export interface Credentials {
  certFile: string;
  keyFile: string;
  certificateId: string;
}

interface PendingRotation {
  phase: 'requested' | 'accepted' | 'switched';
  directory: string;
  next?: Credentials;
  previous: Credentials;
  connectFailures: number;
  rollbacks: number;
}

export interface RotationStats {
  certificateId: string;
  certificateNotBefore: string;
  certificateNotAfter: string;
  certificateAgeDays: number;
  /** Where a rotation in progress is. */
  phase: 'idle' | PendingRotation['phase'];
  rotationsCompleted: number;
  rotationsFailed: number;
  lastRotatedAt: string | undefined;
  lastError: string | undefined;
}

/** The file `meterbridge-gateway rotate` drops into the credentials folder. */
export const ROTATE_NOW_FILE = 'rotate-now';
const MAX_ROLLBACKS = 5;
const DAY_MS = 86_400_000;

/**
 * Asks a running agent for a rotation whatever its certificate's age: drops the rotate-now file into
 * its credentials folder, which the rotation check (every `rotation.checkEverySeconds`) picks up and
 * removes once the rotation is complete. What `meterbridge-gateway rotate` and local mode do. Returns the file.
 */
export function requestRotation(config: Pick<GatewayConfig, 'rotation' | 'spool'>): string {
  const directory = credentialsDirectory(config);
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const file = join(directory, ROTATE_NOW_FILE);
  writeFileSync(file, `${new Date().toISOString()}\n`);
  return file;
}

export function certificateIdOfFile(certFile: string): string {
  return createHash('sha256')
    .update(new X509Certificate(readFileSync(certFile)).raw)
    .digest('hex');
}

/** Writes `file` so that it is either the old or the new content, never a mix (tmp, fsync, rename). */
function writeAtomically(file: string, content: string, mode = 0o600): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, content, { mode });
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, file);
}

export class CertificateRotator {
  private readonly directory: string;
  private readonly currentFile: string;
  private readonly pendingFile: string;
  private busy = false;
  private stopped = false;
  private connectedWith: string | undefined;
  private counters = {
    rotationsCompleted: 0,
    rotationsFailed: 0,
    lastRotatedAt: undefined as string | undefined,
    lastError: undefined as string | undefined,
  };

  constructor(
    private readonly options: {
      config: GatewayConfig;
      log: Log;
      /** Closes the connection so the publisher reconnects with `credentials()`. */
      reconnect: () => void;
      /** Waits that stop() cuts short. */
      sleep: (ms: number) => Promise<void>;
    },
  ) {
    this.directory = credentialsDirectory(options.config);
    this.currentFile = join(this.directory, 'current.json');
    this.pendingFile = join(this.directory, 'pending.json');
    mkdirSync(this.directory, { recursive: true, mode: 0o700 });
    const pending = this.pending();
    if (pending?.phase === 'requested') {
      // Interrupted while asking: that request's certificate (if any) was never written; IoT deletes it.
      options.log.warn('rotation: dropping a request interrupted by a restart', { directory: pending.directory });
      this.drop(pending);
    }
  }

  /** The pair to connect with now. */
  credentials(): Credentials {
    if (existsSync(this.currentFile)) return JSON.parse(readFileSync(this.currentFile, 'utf8')) as Credentials;
    const { certFile, keyFile } = this.options.config.iot;
    return { certFile, keyFile, certificateId: certificateIdOfFile(certFile) };
  }

  /** Asks for a rotation at the next step, whatever the certificate's age. */
  requestNow(): void {
    requestRotation(this.options.config);
  }

  stats(): RotationStats {
    const { certFile, certificateId } = this.credentials();
    const certificate = new X509Certificate(readFileSync(certFile));
    const notBefore = new Date(certificate.validFrom);
    return {
      certificateId,
      certificateNotBefore: notBefore.toISOString(),
      certificateNotAfter: new Date(certificate.validTo).toISOString(),
      certificateAgeDays: Math.round(((Date.now() - notBefore.getTime()) / DAY_MS) * 100) / 100,
      phase: this.pending()?.phase ?? 'idle',
      ...this.counters,
    };
  }

  stop(): void {
    this.stopped = true;
  }

  /** The publisher connected with `credentials`: carry on with whatever step is due. */
  onConnected(client: MqttClient, credentials: Credentials): void {
    this.connectedWith = credentials.certificateId;
    const pending = this.pending();
    if (pending?.phase === 'switched' && pending.next?.certificateId === credentials.certificateId && pending.connectFailures > 0) {
      this.savePending({ ...pending, connectFailures: 0 });
    }
    this.step(client);
  }

  /** A connect failed: if it was the new certificate's, count it and go back to the old one after too many. */
  onConnectFailed(credentials: Credentials, error: string): void {
    const pending = this.pending();
    if (pending?.phase !== 'switched' || pending.next?.certificateId !== credentials.certificateId) return;
    const failures = pending.connectFailures + 1;
    if (failures < this.options.config.rotation.maxConnectFailures) {
      this.savePending({ ...pending, connectFailures: failures });
      return;
    }
    this.options.log.warn('rotation: the new certificate does not connect; back to the old one', { certificateId: credentials.certificateId, error });
    writeAtomically(this.currentFile, `${JSON.stringify(pending.previous)}\n`);
    if (pending.rollbacks + 1 >= MAX_ROLLBACKS) {
      this.fail(pending, `the new certificate ${credentials.certificateId} never connected (${MAX_ROLLBACKS} tries)`);
      return;
    }
    this.savePending({ ...pending, phase: 'accepted', connectFailures: 0, rollbacks: pending.rollbacks + 1 });
  }

  /** Periodic check on the live connection (age, forced rotation, a step left to do). */
  check(client: MqttClient | undefined): void {
    if (client?.connected) this.step(client);
  }

  private step(client: MqttClient): void {
    if (this.busy || this.stopped || !this.options.config.rotation.enabled) return;
    this.busy = true;
    this.advance(client)
      .catch((error: unknown) => {
        this.counters.lastError = error instanceof Error ? error.message : String(error);
        this.options.log.warn('rotation: step failed; retrying at the next check', { error: this.counters.lastError });
      })
      .finally(() => {
        this.busy = false;
      });
  }

  private async advance(client: MqttClient): Promise<void> {
    let pending = this.pending();
    if (!pending) {
      if (!this.due()) return;
      pending = await this.request(client);
      if (!pending) return;
    }
    if (pending.phase === 'accepted') {
      await this.notify(client, 'activate', pending.next!.certificateId);
      await this.options.sleep(this.options.config.rotation.activationWaitSeconds * 1000);
      if (this.stopped || !client.connected) return;
      writeAtomically(this.currentFile, `${JSON.stringify(pending.next)}\n`);
      this.savePending({ ...pending, phase: 'switched', connectFailures: 0 });
      this.options.log.info('rotation: switching to the new certificate', { certificateId: pending.next!.certificateId });
      this.options.reconnect();
      return;
    }
    if (pending.phase === 'switched' && this.connectedWith === pending.next?.certificateId) {
      await this.notify(client, 'retire', pending.previous.certificateId);
      this.complete(pending);
    }
  }

  private due(): boolean {
    if (existsSync(join(this.directory, ROTATE_NOW_FILE))) return true;
    const { certFile } = this.credentials();
    const notBefore = Date.parse(new X509Certificate(readFileSync(certFile)).validFrom);
    return Date.now() - notBefore >= this.options.config.rotation.intervalDays * DAY_MS;
  }

  /** Steps 1-2: a new key, its CSR through the MQTT API, the certificate written beside the key. */
  private async request(client: MqttClient): Promise<PendingRotation | undefined> {
    const { config, log } = this.options;
    const directory = join(this.directory, `gen-${Date.now()}`);
    const previous = this.credentials();
    const keys = generateDeviceKey({ thingName: config.thingName, outDir: directory });
    const pending: PendingRotation = { phase: 'requested', directory, previous, connectFailures: 0, rollbacks: 0 };
    this.savePending(pending);
    log.info('rotation: requesting a certificate for a new key', { previousCertificateId: previous.certificateId });
    let answer: { certificateId?: unknown; certificatePem?: unknown; errorMessage?: unknown };
    let accepted: boolean;
    try {
      ({ accepted, answer } = await this.createFromCsr(client, keys.csrPem));
    } catch (error) {
      this.fail(pending, `CreateCertificateFromCsr: ${error instanceof Error ? error.message : String(error)}`);
      return undefined;
    }
    if (!accepted || typeof answer.certificatePem !== 'string' || typeof answer.certificateId !== 'string') {
      this.fail(pending, `CreateCertificateFromCsr rejected: ${String(answer.errorMessage ?? JSON.stringify(answer))}`);
      return undefined;
    }
    const certFile = join(directory, 'device.cert.pem');
    writeAtomically(certFile, answer.certificatePem, 0o644);
    const next = { certFile, keyFile: keys.keyPath, certificateId: certificateIdOfFile(certFile) };
    if (next.certificateId !== answer.certificateId) {
      this.fail(pending, `the certificate's id ${next.certificateId} is not the id IoT answered (${answer.certificateId})`);
      return undefined;
    }
    const accepting: PendingRotation = { ...pending, phase: 'accepted', next };
    this.savePending(accepting);
    rmSync(keys.csrPath, { force: true });
    return accepting;
  }

  private createFromCsr(client: MqttClient, csrPem: string): Promise<{ accepted: boolean; answer: Record<string, unknown> }> {
    const timeoutMs = this.options.config.rotation.responseTimeoutSeconds * 1000;
    return new Promise((resolve, reject) => {
      const done = (error: Error | undefined, result?: { accepted: boolean; answer: Record<string, unknown> }) => {
        clearTimeout(timer);
        client.off('message', onMessage);
        client.off('close', onClose);
        client.unsubscribe([CREATE_FROM_CSR_ACCEPTED_TOPIC, CREATE_FROM_CSR_REJECTED_TOPIC], () => undefined);
        if (error) reject(error);
        else resolve(result!);
      };
      const onMessage = (topic: string, payload: Buffer) => {
        if (topic !== CREATE_FROM_CSR_ACCEPTED_TOPIC && topic !== CREATE_FROM_CSR_REJECTED_TOPIC) return;
        try {
          done(undefined, {
            accepted: topic === CREATE_FROM_CSR_ACCEPTED_TOPIC,
            answer: JSON.parse(payload.toString('utf8')) as Record<string, unknown>,
          });
        } catch (error) {
          done(new Error(`unreadable answer on ${topic}: ${String(error)}`));
        }
      };
      const onClose = () => done(new Error('connection closed before the answer'));
      const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      client.on('message', onMessage);
      client.once('close', onClose);
      // Subscribe first: IoT Core answers only subscribers, on this connection only.
      client.subscribe([CREATE_FROM_CSR_ACCEPTED_TOPIC, CREATE_FROM_CSR_REJECTED_TOPIC], { qos: 1 }, (error, granted) => {
        if (error) return done(error);
        if (granted?.some((grant) => grant.qos > 2))
          return done(new Error('the broker refused the subscription to the CreateCertificateFromCsr answers'));
        client.publish(CREATE_FROM_CSR_TOPIC, JSON.stringify({ certificateSigningRequest: csrPem }), { qos: 1 }, (publishError) => {
          if (publishError) done(publishError);
        });
      });
    });
  }

  private notify(client: MqttClient, phase: RotationNotice['phase'], certificateId: string): Promise<void> {
    const { config } = this.options;
    const notice: RotationNotice = { v: 1, gatewayId: config.thingName, sentAt: new Date().toISOString(), phase, certificateId };
    const topic = gatewayEventTopic(config.iot.ruleName, config.thingName, 'rotation');
    return new Promise((resolve, reject) =>
      client.publish(topic, JSON.stringify(notice), { qos: 1 }, (error) => (error ? reject(error) : resolve())),
    );
  }

  private complete(pending: PendingRotation): void {
    rmSync(this.pendingFile, { force: true });
    rmSync(join(this.directory, ROTATE_NOW_FILE), { force: true });
    // The old pair: remove it if it was one of ours (the provisioning pair in /etc is not the agent's to delete).
    if (pending.previous.certFile.startsWith(`${this.directory}/`)) rmSync(join(pending.previous.certFile, '..'), { recursive: true, force: true });
    this.counters.rotationsCompleted++;
    this.counters.lastRotatedAt = new Date().toISOString();
    this.options.log.info('rotation: complete; the old certificate is being retired', {
      certificateId: pending.next?.certificateId,
      retiredCertificateId: pending.previous.certificateId,
    });
  }

  private fail(pending: PendingRotation, reason: string): void {
    this.counters.rotationsFailed++;
    this.counters.lastError = reason;
    this.options.log.error('rotation: failed; trying again at the next check', { reason });
    this.drop(pending);
  }

  private drop(pending: PendingRotation): void {
    rmSync(pending.directory, { recursive: true, force: true });
    rmSync(this.pendingFile, { force: true });
  }

  private pending(): PendingRotation | undefined {
    return existsSync(this.pendingFile) ? (JSON.parse(readFileSync(this.pendingFile, 'utf8')) as PendingRotation) : undefined;
  }

  private savePending(pending: PendingRotation): void {
    writeAtomically(this.pendingFile, `${JSON.stringify(pending)}\n`);
  }
}
