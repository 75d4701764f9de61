/**
 * The IoT Core registry for the local broker, kept in moto's IoT control plane (no hand-written
 * stand-in): which certificates exist, their status (ACTIVE, PENDING_ACTIVATION, INACTIVE, REVOKED)
 * and the thing each one is attached to. The broker asks it at every CONNECT, as IoT Core does, so
 * a certificate the rotation function revoked no longer connects; and it answers the
 * CreateCertificateFromCsr MQTT API by signing the CSR with the dev CA (moto's own
 * CreateCertificateFromCsr makes a certificate for a key of its own, not the CSR's) and registering
 * the result PENDING_ACTIVATION, as IoT Core leaves it.
 *
 * Certificate ids are IoT's: the SHA-256 of the certificate's DER. moto computes that only with its
 * `iot.use_valid_cert` setting, which local/moto.ts turns on when it starts the server.
 */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  AttachPolicyCommand,
  AttachThingPrincipalCommand,
  CreatePolicyCommand,
  CreateThingCommand,
  DescribeCertificateCommand,
  IoTClient,
  ListPrincipalThingsCommand,
  RegisterCertificateWithoutCACommand,
} from '@aws-sdk/client-iot';
import { CsrError, parseCsr } from '../shared/csr.ts';
import type { Moto } from './moto.ts';
import { signDeviceCsr, type DevCa } from './dev-ca.ts';
import type { CreatedFromCsr, LocalCertificateRegistry } from './mqtt-broker.ts';

export interface LocalIotRegistry extends LocalCertificateRegistry {
  /** The moto IoT client (the rotation function and the CLI act through it). */
  iot: IoTClient;
  policyName: string;
  /** Registers a dev-CA certificate ACTIVE, creates the thing and attaches certificate and policy (what `device provision` does in AWS). */
  registerDevice(thingName: string, certPath: string): Promise<{ certificateId: string; certificateArn: string }>;
  close(): void;
}

export interface LocalIotRegistryOptions {
  moto: Pick<Moto, 'endpoint' | 'region' | 'credentials'>;
  ca: DevCa;
  /** Where the CA writes its temporary files. */
  dir: string;
  /** @default 'meterbridge-local-gateway' */
  policyName?: string;
}

/** IoT certificate id of a PEM or DER certificate: SHA-256 of the DER, lower-case hex. */
export function certificateIdOf(certificate: string | Buffer): string {
  const der = typeof certificate === 'string' ? new X509Certificate(certificate).raw : certificate;
  return createHash('sha256').update(der).digest('hex');
}

export async function createLocalIotRegistry(options: LocalIotRegistryOptions): Promise<LocalIotRegistry> {
  const { moto, ca, dir, policyName = 'meterbridge-local-gateway' } = options;
  const iot = new IoTClient({ endpoint: moto.endpoint, region: moto.region, credentials: moto.credentials, maxAttempts: 3 });
  await iot
    .send(new CreatePolicyCommand({ policyName, policyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [] }) }))
    .catch((error: unknown) => {
      if ((error as Error).name !== 'ResourceAlreadyExistsException') throw error;
    });

  const register = async (certificatePem: string, status: 'ACTIVE' | 'PENDING_ACTIVATION') => {
    const registered = await iot.send(new RegisterCertificateWithoutCACommand({ certificatePem, status }));
    const certificateId = certificateIdOf(certificatePem);
    if (registered.certificateId !== certificateId)
      throw new Error(`moto registered certificate ${registered.certificateId}, not IoT's id ${certificateId} (is iot.use_valid_cert on?)`);
    return { certificateId, certificateArn: registered.certificateArn! };
  };

  return {
    iot,
    policyName,
    async registerDevice(thingName, certPath) {
      const registered = await register(await readFile(certPath, 'utf8'), 'ACTIVE');
      await iot.send(new CreateThingCommand({ thingName }));
      await iot.send(new AttachPolicyCommand({ policyName, target: registered.certificateArn }));
      await iot.send(new AttachThingPrincipalCommand({ thingName, principal: registered.certificateArn }));
      return registered;
    },
    async createFromCsr(thingName, csrPem): Promise<CreatedFromCsr> {
      let parsed;
      try {
        parsed = parseCsr(csrPem);
      } catch (error) {
        throw new CsrError(error instanceof Error ? error.message : String(error));
      }
      if (!parsed.signatureValid) throw new CsrError('the CSR signature does not hold with the public key it carries');
      const certificatePem = await signDeviceCsr(ca, dir, thingName, csrPem);
      const { certificateId } = await register(certificatePem, 'PENDING_ACTIVATION');
      return { certificateId, certificatePem, certificateOwnershipToken: randomBytes(32).toString('base64') };
    },
    async connectRefusal(certificateDer, clientId) {
      const certificateId = certificateIdOf(certificateDer);
      let description;
      try {
        description = await iot.send(new DescribeCertificateCommand({ certificateId }));
      } catch (error) {
        if ((error as Error).name === 'ResourceNotFoundException') return `certificate ${certificateId} is not registered`;
        throw error;
      }
      const { status, certificateArn } = description.certificateDescription ?? {};
      if (status !== 'ACTIVE') return `certificate ${certificateId} is ${status ?? 'of unknown status'}`;
      const { things = [] } = await iot.send(new ListPrincipalThingsCommand({ principal: certificateArn }));
      // The policy's iot:Connection.Thing.IsAttached condition with client id = thing name.
      if (!things.includes(clientId)) return `certificate ${certificateId} is not attached to thing ${clientId}`;
      return undefined;
    },
    close: () => iot.destroy(),
  };
}
