/**
 * The operator's side of certificate rotation (docs/gateway.md "Certificate rotation"):
 *
 * - `device rotate <thing>` does not rotate from here. Decision: a rotation starts on the gateway
 *   (its `rotation.intervalDays`, or `meterbridge-gateway rotate` there), because the new key must
 *   be born on the device and the device policy lets the agent subscribe to nothing but the
 *   CreateCertificateFromCsr answers, so the cloud has no channel to ask it. The command shows the
 *   thing's certificates (status, age, expiry) and says how to start one and how to check it.
 * - `device retire <certificateId>` is the fleet function's retire (lambdas/core/gateway-rotation.ts)
 *   run by hand, e.g. when a gateway's retire notice never arrived: REVOKED, policies and things
 *   detached. It refuses to retire the last ACTIVE certificate of a thing unless forced (the
 *   gateway would be cut off until re-provisioned).
 */
import { DescribeCertificateCommand, ListPrincipalThingsCommand, ListThingPrincipalsCommand, type IoTClient } from '@aws-sdk/client-iot';
import { detachCertificate, retireCertificate, thingCertificateIds } from '../../lambdas/core/gateway-rotation.ts';
import { silentLog, type Log } from '../../shared/log.ts';
import { DeviceProvisioningError } from './device-provisioning.ts';

const DAY_MS = 86_400_000;
const CERTIFICATE_ID = /^[0-9a-f]{64}$/;

export interface CertificateSummary {
  certificateId: string;
  arn: string;
  status: string;
  /** validity.notBefore (creationDate when IoT gives no validity). */
  notBefore: Date | undefined;
  notAfter: Date | undefined;
  ageDays: number | undefined;
}

async function describeCertificate(iot: IoTClient, certificateId: string, now: number): Promise<CertificateSummary | undefined> {
  try {
    const { certificateDescription: d } = await iot.send(new DescribeCertificateCommand({ certificateId }));
    const notBefore = d?.validity?.notBefore ?? d?.creationDate;
    return {
      certificateId,
      arn: d?.certificateArn ?? '',
      status: d?.status ?? 'UNKNOWN',
      notBefore,
      notAfter: d?.validity?.notAfter,
      ageDays: notBefore ? Math.round(((now - notBefore.getTime()) / DAY_MS) * 10) / 10 : undefined,
    };
  } catch (error) {
    if ((error as Error).name === 'ResourceNotFoundException') return undefined;
    throw error;
  }
}

/** The certificates attached to a thing, oldest first; undefined when the thing does not exist. */
export async function thingCertificates(iot: IoTClient, thingName: string, now = Date.now()): Promise<CertificateSummary[] | undefined> {
  let ids: Map<string, string>;
  try {
    // ListThingPrincipals answers an empty list for a thing that was never created in some regions: ask once to tell.
    await iot.send(new ListThingPrincipalsCommand({ thingName }));
    ids = await thingCertificateIds(iot, thingName);
  } catch (error) {
    if ((error as Error).name === 'ResourceNotFoundException') return undefined;
    throw error;
  }
  const described = await Promise.all([...ids.keys()].map((id) => describeCertificate(iot, id, now)));
  return described
    .filter((c): c is CertificateSummary => c !== undefined)
    .sort((a, b) => (a.notBefore?.getTime() ?? 0) - (b.notBefore?.getTime() ?? 0));
}

export interface RetireReport {
  certificateId: string;
  /** Status before the retire. */
  previousStatus: string;
  /** Things it was detached from. */
  things: string[];
  policies: string[];
  /** Already REVOKED with nothing attached: nothing was done. */
  alreadyRetired: boolean;
}

/**
 * Retires one certificate: REVOKED (never re-activatable), its policies and things detached. One
 * already REVOKED only has what is still attached detached. Refuses (DeviceProvisioningError) a
 * certificate that does not exist, and, unless `force`, the last ACTIVE certificate of a thing.
 */
export async function retireDeviceCertificate(options: { iot: IoTClient; certificateId: string; force?: boolean; log?: Log }): Promise<RetireReport> {
  const { iot, certificateId } = options;
  const log = options.log ?? silentLog;
  if (!CERTIFICATE_ID.test(certificateId))
    throw new DeviceProvisioningError(`${JSON.stringify(certificateId)} is not an IoT certificate id (64 lower-case hex digits)`, { step: 'retire' });
  const certificate = await describeCertificate(iot, certificateId, Date.now());
  if (!certificate) throw new DeviceProvisioningError(`certificate ${certificateId} does not exist`, { step: 'retire' });
  const { things = [] } = await iot.send(new ListPrincipalThingsCommand({ principal: certificate.arn }));
  if (certificate.status === 'ACTIVE' && !options.force) {
    for (const thingName of things) {
      const others = (await thingCertificates(iot, thingName)) ?? [];
      if (!others.some((other) => other.certificateId !== certificateId && other.status === 'ACTIVE'))
        throw new DeviceProvisioningError(
          `certificate ${certificateId} is the only ACTIVE certificate of thing ${thingName}: retiring it cuts the gateway off. ` +
            `Rotate first (meterbridge device rotate ${thingName}), or pass --force`,
          { step: 'retire' },
        );
    }
  }
  if (certificate.status === 'REVOKED') {
    const { policies } = await detachCertificate(iot, things, certificate.arn);
    return { certificateId, previousStatus: 'REVOKED', things, policies, alreadyRetired: things.length === 0 && policies.length === 0 };
  }
  const { policies } = await retireCertificate(iot, things, certificateId, certificate.arn, log);
  return { certificateId, previousStatus: certificate.status, things, policies, alreadyRetired: false };
}
