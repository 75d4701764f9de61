/**
 * The cloud side of certificate rotation (docs/gateway.md "Certificate rotation"). The gateway gets
 * its new certificate over MQTT (CreateCertificateFromCsr API); IoT Core leaves it
 * PENDING_ACTIVATION and attached to nothing, and deletes it after an hour unless it is activated
 * and attached. The gateway's rotation notices (shared/gateway-events.ts) drive the rest:
 *
 *   activate <new id>  sent over the OLD certificate: ACTIVE, attach the gateway policy, attach to the thing
 *   retire <old id>    sent over the NEW certificate: REVOKED (never re-activatable), detach policies and thing
 *
 * `principal` is the topic rule's `principal()`: the id of the certificate the notice came over. A
 * notice acts only if that certificate is attached to the thing named by the topic, and only on a
 * certificate that is unattached (activate) or attached to that same thing (retire): a gateway can
 * never touch another gateway's certificates. Every step is idempotent (IoT delivers at least once).
 */
import {
  AttachPolicyCommand,
  AttachThingPrincipalCommand,
  DescribeCertificateCommand,
  DetachPolicyCommand,
  DetachThingPrincipalCommand,
  ListAttachedPoliciesCommand,
  ListPrincipalThingsCommand,
  ListThingPrincipalsCommand,
  UpdateCertificateCommand,
  type IoTClient,
} from '@aws-sdk/client-iot';
import type { RotationNotice } from '../../shared/gateway-events.ts';
import type { Log } from '../../shared/log.ts';

export interface RotationDeps {
  iot: IoTClient;
  /** The gateway policy attached to every gateway certificate (`meterbridge-<stage>-gateway`). */
  policyName: string;
  log: Log;
}

export type RotationOutcome =
  { ok: true; action: 'activated' | 'retired' | 'already-done'; certificateId: string } | { ok: false; reason: string; certificateId: string };

/** Certificate ids attached to a thing (from their ARNs). */
export async function thingCertificateIds(iot: IoTClient, thingName: string): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  let nextToken: string | undefined;
  do {
    const page = await iot.send(new ListThingPrincipalsCommand({ thingName, nextToken }));
    for (const arn of page.principals ?? []) {
      const id = /:cert\/([0-9a-f]{64})$/.exec(arn)?.[1];
      if (id) ids.set(id, arn);
    }
    nextToken = page.nextToken;
  } while (nextToken);
  return ids;
}

export async function handleRotationNotice(
  notice: RotationNotice,
  from: { thingName: string; principal: string },
  deps: RotationDeps,
): Promise<RotationOutcome> {
  const { certificateId } = notice;
  const attached = await thingCertificateIds(deps.iot, from.thingName).catch((error: unknown) => {
    if ((error as Error).name === 'ResourceNotFoundException') return new Map<string, string>();
    throw error;
  });
  if (!attached.has(from.principal))
    return { ok: false, certificateId, reason: `the sending certificate ${from.principal} is not attached to thing ${from.thingName}` };
  return notice.phase === 'activate' ? activate(certificateId, from, attached, deps) : retire(certificateId, from, attached, deps);
}

async function activate(
  certificateId: string,
  from: { thingName: string },
  attached: Map<string, string>,
  deps: RotationDeps,
): Promise<RotationOutcome> {
  const { iot, policyName, log } = deps;
  const description = await describe(iot, certificateId);
  if (!description) return { ok: false, certificateId, reason: `certificate ${certificateId} does not exist (expired unactivated after an hour?)` };
  const { status, arn } = description;
  if (attached.has(certificateId) && status === 'ACTIVE') return { ok: true, action: 'already-done', certificateId };
  if (status !== 'PENDING_ACTIVATION' && status !== 'ACTIVE')
    return { ok: false, certificateId, reason: `certificate ${certificateId} is ${status}` };
  const { things = [] } = await iot.send(new ListPrincipalThingsCommand({ principal: arn }));
  if (things.some((thing) => thing !== from.thingName))
    return { ok: false, certificateId, reason: `certificate ${certificateId} belongs to another thing (${things.join(', ')})` };
  await iot.send(new UpdateCertificateCommand({ certificateId, newStatus: 'ACTIVE' }));
  await iot.send(new AttachPolicyCommand({ policyName, target: arn }));
  await iot.send(new AttachThingPrincipalCommand({ thingName: from.thingName, principal: arn }));
  log.info('rotation: certificate activated and attached', { thingName: from.thingName, certificateId, policyName });
  return { ok: true, action: 'activated', certificateId };
}

async function retire(
  certificateId: string,
  from: { thingName: string; principal: string },
  attached: Map<string, string>,
  deps: RotationDeps,
): Promise<RotationOutcome> {
  if (certificateId === from.principal)
    return { ok: false, certificateId, reason: 'a certificate cannot retire itself: the retire notice must come over the new certificate' };
  const arn = attached.get(certificateId);
  if (!arn) {
    const description = await describe(deps.iot, certificateId);
    if (description?.status === 'REVOKED') return { ok: true, action: 'already-done', certificateId };
    return { ok: false, certificateId, reason: `certificate ${certificateId} is not attached to thing ${from.thingName}` };
  }
  await retireCertificate(deps.iot, [from.thingName], certificateId, arn, deps.log);
  return { ok: true, action: 'retired', certificateId };
}

/**
 * REVOKED first (useless from then on even if a detach fails), then every policy and the things
 * detached. Also the CLI's `device retire` (which finds the things itself; possibly none).
 */
export async function retireCertificate(
  iot: IoTClient,
  thingNames: readonly string[],
  certificateId: string,
  arn: string,
  log: Log,
): Promise<{ policies: string[] }> {
  await iot.send(new UpdateCertificateCommand({ certificateId, newStatus: 'REVOKED' }));
  const detached = await detachCertificate(iot, thingNames, arn);
  log.info('rotation: old certificate revoked and detached', { thingNames, certificateId, policies: detached.policies });
  return detached;
}

/** Every policy of the certificate, then the things, detached (the second half of a retire; alone for one already REVOKED). */
export async function detachCertificate(iot: IoTClient, thingNames: readonly string[], arn: string): Promise<{ policies: string[] }> {
  const policies: string[] = [];
  let marker: string | undefined;
  do {
    const page = await iot.send(new ListAttachedPoliciesCommand({ target: arn, marker }));
    for (const policy of page.policies ?? []) if (policy.policyName) policies.push(policy.policyName);
    marker = page.nextMarker;
  } while (marker);
  for (const policyName of policies) await iot.send(new DetachPolicyCommand({ policyName, target: arn }));
  for (const thingName of thingNames) await iot.send(new DetachThingPrincipalCommand({ thingName, principal: arn }));
  return { policies };
}

async function describe(iot: IoTClient, certificateId: string): Promise<{ status: string; arn: string } | undefined> {
  try {
    const { certificateDescription } = await iot.send(new DescribeCertificateCommand({ certificateId }));
    return { status: certificateDescription?.status ?? 'UNKNOWN', arn: certificateDescription?.certificateArn ?? '' };
  } catch (error) {
    if ((error as Error).name === 'ResourceNotFoundException') return undefined;
    throw error;
  }
}
