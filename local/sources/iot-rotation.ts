/**
 * The forced certificate rotation of local mode (docs/local-mode.md "Certificate rotation"): one
 * gateway is asked to rotate as `meterbridge-gateway rotate` asks it (the rotate-now file), the agent
 * renews over the broker's CreateCertificateFromCsr MQTT API, and the fleet function's core
 * activates the new certificate and retires the old one in the registry (moto). The summary then
 * checks the outcome where it lives: the registry's statuses and attachments, and a real CONNECT
 * with the old certificate.
 */
import { DescribeCertificateCommand } from '@aws-sdk/client-iot';
import { thingCertificateIds } from '../../lambdas/core/gateway-rotation.ts';
import { tryConnect } from '../mqtt-broker.ts';
import type { LocalPlatform } from '../platform.ts';

/** A rotation local mode asked for, and what it became. */
export interface ForcedRotation {
  thingName: string;
  requestedAt: Date;
  /** The certificate the gateway was provisioned with (still on disk under the state folder). */
  old: { certificateId: string; certPath: string; keyPath: string };
  /** The certificate the agent connects with once it is done (from its status.json). */
  newCertificateId: string | undefined;
}

export interface RotationCheck {
  ok: boolean;
  lines: string[];
  oldStatus: string | undefined;
  newStatus: string | undefined;
  /** Certificate ids attached to the thing. */
  attached: string[];
  /** The CONNECT with the old certificate: undefined if it connected, else the refusal as the client saw it. */
  oldConnectRefusal: string | undefined;
}

const short = (id: string | undefined) => (id ? `${id.slice(0, 12)}…` : '-');

async function statusOf(platform: LocalPlatform, certificateId: string | undefined): Promise<string | undefined> {
  if (!certificateId) return undefined;
  try {
    const { certificateDescription } = await platform.registry.iot.send(new DescribeCertificateCommand({ certificateId }));
    return certificateDescription?.status;
  } catch (error) {
    if ((error as Error).name === 'ResourceNotFoundException') return 'NOT REGISTERED';
    throw error;
  }
}

/**
 * Checks a forced rotation: new certificate ACTIVE and the only one attached to the thing, the old
 * one REVOKED and refused at CONNECT. The fleet function retires asynchronously after the agent's
 * `retire` notice, so the registry gets `settleMs` to show it.
 */
export async function checkForcedRotation(platform: LocalPlatform, rotation: ForcedRotation, settleMs = 20_000): Promise<RotationCheck> {
  const { thingName, old, newCertificateId } = rotation;
  const deadline = Date.now() + settleMs;
  let oldStatus: string | undefined;
  let newStatus: string | undefined;
  let attached: string[] = [];
  for (;;) {
    [oldStatus, newStatus] = await Promise.all([statusOf(platform, old.certificateId), statusOf(platform, newCertificateId)]);
    attached = [...(await thingCertificateIds(platform.registry.iot, thingName)).keys()];
    const settled = oldStatus === 'REVOKED' && newStatus === 'ACTIVE' && attached.length === 1 && attached[0] === newCertificateId;
    if (settled || Date.now() > deadline || newCertificateId === undefined || newCertificateId === old.certificateId) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const port = platform.broker()?.port;
  const attempt =
    port === undefined
      ? { connected: false as const, error: 'the broker is down' }
      : await tryConnect({ port, caPath: platform.ca.certPath, certPath: old.certPath, keyPath: old.keyPath, clientId: thingName });
  const oldConnectRefusal = attempt.connected ? undefined : attempt.error;
  const swapped = newCertificateId !== undefined && newCertificateId !== old.certificateId;
  const onlyNewAttached = attached.length === 1 && attached[0] === newCertificateId;
  const ok = swapped && newStatus === 'ACTIVE' && onlyNewAttached && oldStatus === 'REVOKED' && oldConnectRefusal !== undefined;
  const line =
    `       ${ok ? 'ok  ' : 'FAIL'} certificate rotation of ${thingName} (forced at ${rotation.requestedAt.toISOString()}): ` +
    `${short(old.certificateId)} → ${swapped ? short(newCertificateId) : 'not swapped'}; ` +
    `new ${newStatus ?? '-'}, ${onlyNewAttached ? 'the only one attached' : `attached: ${attached.map(short).join(', ') || 'none'}`}; ` +
    `old ${oldStatus ?? '-'}, CONNECT with it ${oldConnectRefusal === undefined ? 'ACCEPTED' : `refused (${oldConnectRefusal})`}`;
  return { ok, lines: [line], oldStatus, newStatus, attached, oldConnectRefusal };
}
