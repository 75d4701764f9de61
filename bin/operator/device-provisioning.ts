/**
 * Gateway provisioning on AWS IoT Core: one X.509 client certificate per gateway, signed by
 * IoT Core from a CSR, with the private key generated here and never sent anywhere.
 *
 * CloudFormation cannot mint per-device keys (docs/design.md §3), so this runs from the operator CLI
 * (`meterbridge device provision|revoke`), on the gateway itself or on the operator's machine
 * that then copies the directory to the gateway. The IoT client is passed in.
 *
 * provisionDevice, in order:
 *   0. validate names; refuse an outDir that already holds a key, a certificate, or the key of an
 *      interrupted run; create outDir 0700
 *   1. generate an EC P-256 key, build and sign a PKCS#10 CSR (CN = thing name)
 *   2. write the key to `device.key.pem.partial` (0600) -- before any AWS call, see below
 *   3. DescribeEndpoint(iot:Data-ATS) -> CreateThing -> CreateCertificateFromCsr(active)
 *      -> AttachPolicy -> AttachThingPrincipal
 *   4. write device.cert.pem, AmazonRootCA1.pem, endpoint.json; then link the key to its final
 *      name `device.key.pem`: the final key name appearing is the "provisioning done" marker.
 *
 * Why a `.partial` key written before the AWS calls: if the process dies after IoT Core signed
 * the certificate, the key for that (active) certificate is still on disk next to the certificate,
 * and the next run refuses to continue until the operator has looked (it names the certificate
 * id). Keeping the key only in memory would turn such a crash into an active certificate nobody
 * holds the key for; writing it straight to `device.key.pem` would make a half-provisioned
 * directory look finished.
 *
 * If a step fails after the certificate exists, the certificate is rolled back (deactivated,
 * detached from thing and policy, deleted) before the error is rethrown, so no active orphan
 * certificate is left behind. The thing itself is kept: CreateThing is idempotent for an identical
 * thing, so a re-run simply reuses it, and we cannot tell "created now" from "was already there".
 */
import { X509Certificate, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, link, mkdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AttachPolicyCommand,
  AttachThingPrincipalCommand,
  CreateCertificateFromCsrCommand,
  CreateThingCommand,
  DeleteCertificateCommand,
  DeleteThingCommand,
  DescribeEndpointCommand,
  DescribeThingCommand,
  DetachPolicyCommand,
  DetachThingPrincipalCommand,
  ListAttachedPoliciesCommand,
  ListThingPrincipalsCommand,
  UpdateCertificateCommand,
  type IoTClient,
} from '@aws-sdk/client-iot';
import { buildCsr, parseCsr, toPem } from '../../shared/csr.ts';
import { silentLog, type Log } from '../../shared/log.ts';
import { RULE_NAME_PATTERN, telemetryTopic, THING_NAME_PATTERN } from '../../shared/telemetry.ts';
// Tests and callers reach the CSR encoder through this module too.
export { buildCsr, der, toPem } from '../../shared/csr.ts';

/**
 * Amazon Root CA 1, the root of IoT Core's ATS endpoints (`iot:Data-ATS`). Public; embedded so a
 * gateway gets a complete, offline-usable directory. Verified: subject C=US, O=Amazon,
 * CN=Amazon Root CA 1, SHA-256 fingerprint 8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:
 * 70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E (the unit test checks it against Node's own
 * root store).
 */
export const AMAZON_ROOT_CA_1_PEM = `-----BEGIN CERTIFICATE-----
MIIDQTCCAimgAwIBAgITBmyfz5m/jAo54vB4ikPmljZbyjANBgkqhkiG9w0BAQsF
ADA5MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6
b24gUm9vdCBDQSAxMB4XDTE1MDUyNjAwMDAwMFoXDTM4MDExNzAwMDAwMFowOTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJv
b3QgQ0EgMTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBALJ4gHHKeNXj
ca9HgFB0fW7Y14h29Jlo91ghYPl0hAEvrAIthtOgQ3pOsqTQNroBvo3bSMgHFzZM
9O6II8c+6zf1tRn4SWiw3te5djgdYZ6k/oI2peVKVuRF4fn9tBb6dNqcmzU5L/qw
IFAGbHrQgLKm+a/sRxmPUDgH3KKHOVj4utWp+UhnMJbulHheb4mjUcAwhmahRWa6
VOujw5H5SNz/0egwLX0tdHA114gk957EWW67c4cX8jJGKLhD+rcdqsq08p8kDi1L
93FcXmn/6pUCyziKrlA4b9v7LWIbxcceVOF34GfID5yHI9Y/QCB/IIDEgEw+OyQm
jgSubJrIqg0CAwEAAaNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMC
AYYwHQYDVR0OBBYEFIQYzIU07LwMlJQuCFmcx7IQTgoIMA0GCSqGSIb3DQEBCwUA
A4IBAQCY8jdaQZChGsV2USggNiMOruYou6r4lK5IpDB/G/wkjUu0yKGX9rbxenDI
U5PMCCjjmCXPI6T53iHTfIUJrU6adTrCC2qJeHZERxhlbI1Bjjt/msv0tadQ1wUs
N+gDS63pYaACbvXy8MWy7Vu33PqUXHeeE6V/Uq2V8viTO96LXFvKWlJbYK8U90vv
o/ufQJVtMVT8QtPHRh8jrdkPSHCa2XV4cdFyQzR1bldZwgJcJmApzyMZFo6IQ6XU
5MsI+yMRQ+hDKXJioaldXgjUkK642M4UwtBV8ob2xJNDd2ZhwLnoQdeXeGADbkpy
rqXRfboQnoZsG4q5WTP468SQvvG5
-----END CERTIFICATE-----
`;

/** MQTT over TLS with client certificates (443 needs ALPN `x-amzn-mqtt-ca`; 8883 needs nothing). */
export const IOT_MQTT_PORT = 8883;

/** File names inside outDir. */
export const DEVICE_FILES = {
  key: 'device.key.pem',
  pendingKey: 'device.key.pem.partial',
  certificate: 'device.cert.pem',
  rootCa: 'AmazonRootCA1.pem',
  endpoint: 'endpoint.json',
} as const;

// IoT Core's own pattern for policy names (API reference); thing (type) and rule names are the telemetry contract's.
const POLICY_NAME = /^[\w+=,.@-]{1,128}$/;

/** Throws unless `thingName` is a valid IoT thing name (1-128 of `[a-zA-Z0-9:_-]`). */
export function assertThingName(thingName: string, what = 'thing name'): void {
  if (!THING_NAME_PATTERN.test(thingName)) {
    throw new DeviceProvisioningError(`${JSON.stringify(thingName)} is not a valid ${what}: 1-128 characters of letters, digits, ':', '_' and '-'`);
  }
}

export interface ProvisionDeviceOptions {
  iot: IoTClient;
  /** The IoT thing name; also the MQTT client id and the CN of the CSR. */
  thingName: string;
  /** Policy attached to the certificate (created by the stack). */
  policyName: string;
  /** Thing type of the thing; an existing thing must have this type. Omit for a thing without type. */
  thingTypeName?: string;
  /** Basic Ingest rule name; becomes part of the topic written to endpoint.json. */
  ruleName: string;
  /** Directory for the key, certificate, root CA and endpoint.json; created 0700 if missing. */
  outDir: string;
  log?: Log;
  /**
   * Waits between retries of DeleteCertificate/DeleteThing while IoT Core still sees an
   * attachment: detaching is asynchronous and "may take several seconds to propagate".
   * @default [1000, 2000, 4000, 8000]
   */
  retryDelaysMs?: readonly number[];
}

export interface ProvisionedDevice {
  thingName: string;
  thingArn?: string;
  /**
   * True when the thing already existed with other attributes and the same type (CreateThing
   * answered ResourceAlreadyExists). False means created now, or already there identically:
   * CreateThing succeeds for an identical thing, so the two cannot be told apart.
   */
  thingExisted: boolean;
  certificateArn: string;
  certificateId: string;
  endpoint: string;
  port: number;
  topic: string;
  files: { key: string; certificate: string; rootCa: string; endpoint: string };
}

/** What endpoint.json holds: everything a gateway needs besides the three PEM files. */
export interface EndpointFile {
  endpoint: string;
  port: number;
  thingName: string;
  topic: string;
}

/** What provisioning from a device-made CSR returns: no key file (it stays on the gateway). */
export type ProvisionedFromCsr = Omit<ProvisionedDevice, 'files'> & { files: Omit<ProvisionedDevice['files'], 'key'> };

export interface RollbackReport {
  /** The certificate was deleted: nothing is left of it. */
  certificateDeleted: boolean;
  /** The certificate was set INACTIVE (so unusable even if the delete failed). */
  certificateDeactivated: boolean;
  /** One line per undo step that failed. */
  failures: string[];
}

export class DeviceProvisioningError extends Error {
  /** The step that failed, e.g. `AttachThingPrincipal`. */
  readonly step?: string;
  readonly certificateId?: string;
  readonly rollback?: RollbackReport;

  constructor(message: string, options: { cause?: unknown; step?: string; certificateId?: string; rollback?: RollbackReport } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DeviceProvisioningError';
    this.step = options.step;
    this.certificateId = options.certificateId;
    this.rollback = options.rollback;
  }
}

export function provisionDevice(options: ProvisionDeviceOptions): Promise<ProvisionedDevice> {
  return provision(options, undefined) as Promise<ProvisionedDevice>;
}

/**
 * Provisioning with the key born on the gateway (`meterbridge-gateway keygen`): IoT Core signs
 * the device's CSR and only the certificate (with the root CA and endpoint.json) is written; no
 * key is made or written here. The CSR's subject CN must be the thing name and its signature
 * must hold; the certificate returned must carry the CSR's public key.
 */
export function provisionDeviceFromCsr(options: ProvisionDeviceOptions & { csrPem: string }): Promise<ProvisionedFromCsr> {
  return provision(options, options.csrPem);
}

async function provision(options: ProvisionDeviceOptions, deviceCsrPem: string | undefined): Promise<ProvisionedDevice | ProvisionedFromCsr> {
  const { iot, thingName, thingTypeName, ruleName, outDir } = options;
  const log = options.log ?? silentLog;
  assertProvisioningNames(options);

  const paths = {
    key: join(outDir, DEVICE_FILES.key),
    pendingKey: join(outDir, DEVICE_FILES.pendingKey),
    certificate: join(outDir, DEVICE_FILES.certificate),
    rootCa: join(outDir, DEVICE_FILES.rootCa),
    endpoint: join(outDir, DEVICE_FILES.endpoint),
  };
  const key =
    deviceCsrPem === undefined
      ? await generateDeviceKey(thingName, outDir, paths, log)
      : await checkDeviceCsr(thingName, deviceCsrPem, outDir, paths);
  const { endpoint, thing, certificate } = await createThingAndCertificate(iot, {
    thingName,
    thingTypeName,
    csrPem: key.csrPem,
    pendingKey: paths.pendingKey,
  });
  log.info('certificate created', { certificateId: certificate.certificateId });

  const keptPendingName = await attachAndWriteFiles(options, { paths, key, certificate, endpoint, log });
  if (keptPendingName) {
    await unlink(paths.pendingKey).catch((error: unknown) => log.warn('could not remove the pending key name', { error: messageOf(error) }));
  }
  if (key.privateKey) await chmod(paths.key, 0o600);

  return {
    thingName,
    thingArn: thing.thingArn,
    thingExisted: thing.existed,
    certificateArn: certificate.certificateArn,
    certificateId: certificate.certificateId,
    endpoint,
    port: IOT_MQTT_PORT,
    topic: telemetryTopic(ruleName, thingName),
    files: { ...(key.privateKey ? { key: paths.key } : {}), certificate: paths.certificate, rootCa: paths.rootCa, endpoint: paths.endpoint },
  };
}

/** The CSR IoT Core signs, and how to tell the certificate it returns is for the right key. */
interface DeviceKey {
  csrPem: string;
  matches(certificate: X509Certificate): boolean;
  /** Set when the key was made here (and must be published beside the certificate). */
  privateKey?: KeyObject;
}

type DevicePaths = Record<'key' | 'pendingKey' | 'certificate' | 'rootCa' | 'endpoint', string>;
type CreatedCertificate = { certificateArn: string; certificateId: string; certificatePem: string };

function assertProvisioningNames({ thingName, thingTypeName, policyName, ruleName }: ProvisionDeviceOptions): void {
  assertThingName(thingName);
  if (thingTypeName !== undefined) assertThingName(thingTypeName, 'thing type name');
  if (!POLICY_NAME.test(policyName)) throw new DeviceProvisioningError(`${JSON.stringify(policyName)} is not a valid IoT policy name`);
  if (!RULE_NAME_PATTERN.test(ruleName)) {
    throw new DeviceProvisioningError(`${JSON.stringify(ruleName)} is not a valid IoT rule name: 1-128 characters of letters, digits and '_'`);
  }
}

/** Generates the device key (written under its pending name) and the CSR IoT Core signs. */
async function generateDeviceKey(thingName: string, outDir: string, paths: DevicePaths, log: Log): Promise<DeviceKey> {
  await prepareOutDir(outDir, paths, { keyHere: true });
  // EC P-256 rather than RSA: IoT Core accepts ECDSA P-256 device certificates; the key and the
  // TLS handshake are far smaller and signing is much faster on small gateway CPUs (and key
  // generation is instant, where RSA-2048 can take seconds on an ARM board).
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const csrPem = toPem('CERTIFICATE REQUEST', buildCsr(thingName, privateKey));
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  // 'wx': never clobber, and two runs into the same directory cannot both get here.
  await writeFile(paths.pendingKey, keyPem, { mode: 0o600, flag: 'wx' });
  await chmod(paths.pendingKey, 0o600);
  log.info('key generated', { file: paths.pendingKey });
  return { csrPem, privateKey, matches: (certificate) => certificate.checkPrivateKey(privateKey) };
}

/** The key was born on the gateway: check its request before IoT Core signs anything. */
async function checkDeviceCsr(thingName: string, csrPem: string, outDir: string, paths: DevicePaths): Promise<DeviceKey> {
  let parsed: ReturnType<typeof parseCsr>;
  try {
    parsed = parseCsr(csrPem);
  } catch (error) {
    throw new DeviceProvisioningError(`the CSR is not usable: ${messageOf(error)}`, { cause: error });
  }
  if (!parsed.signatureValid)
    throw new DeviceProvisioningError('the CSR signature does not verify with its own public key (corrupted or tampered request)');
  if (parsed.commonName !== thingName) {
    throw new DeviceProvisioningError(
      `the CSR is for ${JSON.stringify(parsed.commonName ?? '(no CN)')}, not ${thingName} (meterbridge-gateway keygen --thing ${thingName} makes one)`,
    );
  }
  await prepareOutDir(outDir, paths, { keyHere: false });
  const requested = parsed.publicKey.export({ type: 'spki', format: 'der' });
  return { csrPem, matches: (certificate) => certificate.publicKey.export({ type: 'spki', format: 'der' }).equals(requested) };
}

/** Endpoint, thing and certificate; on failure the pending key goes too (nothing uses it yet). */
async function createThingAndCertificate(
  iot: IoTClient,
  { thingName, thingTypeName, csrPem, pendingKey }: { thingName: string; thingTypeName: string | undefined; csrPem: string; pendingKey: string },
): Promise<{ endpoint: string; thing: { thingArn?: string; existed: boolean }; certificate: CreatedCertificate }> {
  let step = 'DescribeEndpoint';
  try {
    const described = await iot.send(new DescribeEndpointCommand({ endpointType: 'iot:Data-ATS' }));
    if (!described.endpointAddress) throw new Error('DescribeEndpoint returned no endpointAddress');
    const endpoint = described.endpointAddress;
    step = 'CreateThing';
    const thing = await ensureThing(iot, thingName, thingTypeName);
    step = 'CreateCertificateFromCsr';
    const created = await iot.send(new CreateCertificateFromCsrCommand({ certificateSigningRequest: csrPem, setAsActive: true }));
    if (!created.certificateArn || !created.certificateId || !created.certificatePem) {
      // Cannot roll back what we cannot name; say what we know.
      throw new Error(
        `CreateCertificateFromCsr answered without ${!created.certificateId ? 'certificateId' : !created.certificateArn ? 'certificateArn' : 'certificatePem'} (certificateId: ${created.certificateId ?? 'unknown'})`,
      );
    }
    return {
      endpoint,
      thing,
      certificate: { certificateArn: created.certificateArn, certificateId: created.certificateId, certificatePem: created.certificatePem },
    };
  } catch (error) {
    // Nothing that uses the key exists yet, so the key goes too.
    await rm(pendingKey, { force: true });
    if (error instanceof DeviceProvisioningError) throw error;
    throw new DeviceProvisioningError(
      `provisioning ${thingName} failed at ${step}: ${messageOf(error)}` +
        (step === 'CreateCertificateFromCsr'
          ? ' (if this was a timeout or an incomplete answer, IoT Core may hold an ACTIVE, unattached certificate created just now: check and delete it)'
          : ''),
      { cause: error, step },
    );
  }
}

/**
 * Checks the certificate against the key, attaches policy and thing, writes the device files and
 * publishes the key under its final name; on failure rolls the certificate back. Returns whether
 * the pending key name is still to be removed.
 */
async function attachAndWriteFiles(
  { iot, thingName, policyName, ruleName, retryDelaysMs = [1000, 2000, 4000, 8000] }: ProvisionDeviceOptions,
  { paths, key, certificate, endpoint, log }: { paths: DevicePaths; key: DeviceKey; certificate: CreatedCertificate; endpoint: string; log: Log },
): Promise<boolean> {
  const { certificateArn, certificateId } = certificate;
  const attempted = { policy: false, thingPrincipal: false };
  const written: string[] = [];
  let step = 'checking the certificate';
  try {
    // A certificate for another key would be useless on the gateway; catch it before attaching.
    if (!key.matches(new X509Certificate(certificate.certificatePem))) {
      throw new Error(`the certificate IoT Core returned does not match the ${key.privateKey ? 'generated key' : 'key of the CSR'}`);
    }
    step = 'writing the certificate';
    await writeNew(paths.certificate, certificate.certificatePem, 0o644, written);
    step = 'AttachPolicy';
    attempted.policy = true;
    await iot.send(new AttachPolicyCommand({ policyName, target: certificateArn }));
    step = 'AttachThingPrincipal';
    attempted.thingPrincipal = true;
    await iot.send(new AttachThingPrincipalCommand({ thingName, principal: certificateArn }));
    step = 'writing the device files';
    await writeReplacing(paths.rootCa, AMAZON_ROOT_CA_1_PEM, 0o644, written);
    const endpointFile: EndpointFile = { endpoint, port: IOT_MQTT_PORT, thingName, topic: telemetryTopic(ruleName, thingName) };
    await writeReplacing(paths.endpoint, `${JSON.stringify(endpointFile, null, 2)}\n`, 0o644, written);
    if (!key.privateKey) return false;
    step = 'publishing the key';
    return await publishKey(paths.pendingKey, paths.key);
  } catch (error) {
    const rollback = await rollBack(iot, { thingName, policyName, certificateArn, certificateId, attempted, retryDelaysMs, log });
    let message = `provisioning ${thingName} failed at ${step}: ${messageOf(error)}. `;
    if (rollback.certificateDeleted) {
      for (const file of written) await rm(file, { force: true });
      await rm(paths.pendingKey, { force: true });
      message += `Rolled back: certificate ${certificateId} was deactivated, detached and deleted; no certificate was left behind.`;
    } else {
      // Keep the key and certificate files: the operator may need them to finish the clean-up.
      message +=
        `ROLLBACK INCOMPLETE: certificate ${certificateId} is ${rollback.certificateDeactivated ? 'INACTIVE' : 'possibly still ACTIVE'} and was not deleted ` +
        `(${rollback.failures.join('; ')}). Finish by hand: aws iot update-certificate --certificate-id ${certificateId} --new-status INACTIVE; ` +
        `detach it from thing ${thingName} and policy ${policyName}; aws iot delete-certificate --certificate-id ${certificateId}. ` +
        `Its key was kept at ${paths.pendingKey}.`;
    }
    throw new DeviceProvisioningError(message, { cause: error, step, certificateId, rollback });
  }
}

export interface RevokeDeviceOptions {
  iot: IoTClient;
  thingName: string;
  /** Also delete the thing once its principals are detached. @default false */
  deleteThing?: boolean;
  log?: Log;
  /** See {@link ProvisionDeviceOptions.retryDelaysMs}. @default [1000, 2000, 4000, 8000] */
  retryDelaysMs?: readonly number[];
}

export interface RevokeReport {
  thingName: string;
  /** False when the thing does not exist (nothing to do; not an error). */
  thingFound: boolean;
  revokedCertificateIds: string[];
  /** Principals that are not IoT certificates (e.g. Cognito identities): detached, not revoked. */
  detachedOtherPrincipals: string[];
  detachedPolicies: Array<{ certificateId: string; policyName: string }>;
  thingDeleted: boolean;
}

/**
 * Revokes every certificate attached to a thing, then detaches it from the thing and its
 * policies; optionally deletes the thing. Idempotent: a thing with no principals, or no thing,
 * is a success with nothing revoked, and a re-run after a partial failure finishes the job.
 *
 * Status REVOKED rather than INACTIVE: an INACTIVE certificate can be set ACTIVE again by anyone
 * with iot:UpdateCertificate; a REVOKED one never can. Revocation comes first, before any
 * detaching, so that a failure half-way never leaves a usable certificate behind. A certificate
 * attached to several things is revoked for all of them (ours never are: one per gateway).
 */
export async function revokeDevice(options: RevokeDeviceOptions): Promise<RevokeReport> {
  const { iot, thingName } = options;
  const log = options.log ?? silentLog;
  const retryDelaysMs = options.retryDelaysMs ?? [1000, 2000, 4000, 8000];
  assertThingName(thingName);
  const report: RevokeReport = {
    thingName,
    thingFound: true,
    revokedCertificateIds: [],
    detachedOtherPrincipals: [],
    detachedPolicies: [],
    thingDeleted: false,
  };

  const principals: string[] = [];
  try {
    let nextToken: string | undefined;
    do {
      const page = await iot.send(new ListThingPrincipalsCommand({ thingName, nextToken }));
      principals.push(...(page.principals ?? []));
      nextToken = page.nextToken;
    } while (nextToken);
  } catch (error) {
    if (errorName(error) !== 'ResourceNotFoundException') throw failure(`listing the principals of ${thingName}`, error);
    report.thingFound = false;
    return report;
  }

  for (const principal of principals) {
    const certificateId = certificateIdOf(principal);
    if (certificateId === undefined) {
      await send(`detaching ${principal} from ${thingName}`, () => iot.send(new DetachThingPrincipalCommand({ thingName, principal })));
      report.detachedOtherPrincipals.push(principal);
      continue;
    }
    await send(`revoking certificate ${certificateId}`, () => iot.send(new UpdateCertificateCommand({ certificateId, newStatus: 'REVOKED' })));
    log.info('certificate revoked', { certificateId });
    await send(`detaching certificate ${certificateId} from ${thingName}`, () => iot.send(new DetachThingPrincipalCommand({ thingName, principal })));
    let marker: string | undefined;
    do {
      const page = await send(`listing the policies of certificate ${certificateId}`, () =>
        iot.send(new ListAttachedPoliciesCommand({ target: principal, marker })),
      );
      for (const policy of page.policies ?? []) {
        if (!policy.policyName) continue;
        const policyName = policy.policyName;
        await send(`detaching policy ${policyName} from certificate ${certificateId}`, () =>
          iot.send(new DetachPolicyCommand({ policyName, target: principal })),
        );
        report.detachedPolicies.push({ certificateId, policyName });
      }
      marker = page.nextMarker;
    } while (marker);
    report.revokedCertificateIds.push(certificateId);
  }

  if (options.deleteThing) {
    // DeleteThing succeeds for a thing that does not exist; it fails while a detach is still propagating.
    await withRetries(
      () => iot.send(new DeleteThingCommand({ thingName })),
      ['InvalidRequestException', 'DeleteConflictException'],
      retryDelaysMs,
    ).catch((error: unknown) => {
      throw failure(`deleting thing ${thingName} (its certificates are already revoked)`, error);
    });
    report.thingDeleted = true;
  }
  return report;
}

/**
 * Gives the key its final name without ever replacing an existing file. link() fails if the
 * target exists, where rename() would silently replace it; file systems without hard links (a
 * FAT USB stick carried to the gateway) fall back to check-then-rename. Returns true when the
 * pending name still exists (linked) and must be removed.
 */
async function publishKey(pending: string, final: string): Promise<boolean> {
  try {
    await link(pending, final);
    return true;
  } catch (error) {
    if (errorCode(error) === 'EEXIST') throw new Error(`${final} appeared while provisioning; not replacing it`);
    if (await exists(final)) throw new Error(`${final} appeared while provisioning; not replacing it`);
    await rename(pending, final);
    return false;
  }
}

async function prepareOutDir(
  outDir: string,
  paths: { key: string; pendingKey: string; certificate: string },
  options: { keyHere: boolean },
): Promise<void> {
  const existing = await stat(outDir).catch((error: unknown) => {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  });
  if (!existing) {
    await mkdir(outDir, { recursive: true, mode: 0o700 });
    await chmod(outDir, 0o700);
    return;
  }
  // An existing directory keeps its mode (it may be the operator's own); the key file is 0600 regardless.
  if (!existing.isDirectory()) throw new DeviceProvisioningError(`${outDir} exists and is not a directory`);
  // A device-made key may sit beside the certificate to come (provisioning run on the gateway itself).
  if (options.keyHere && (await exists(paths.key))) {
    throw new DeviceProvisioningError(
      `refusing to overwrite ${paths.key}: this directory already holds a provisioned device; use another --out directory (or revoke that device first and remove its files)`,
    );
  }
  if (await exists(paths.pendingKey)) {
    const id = certificateIdFromFile(paths.certificate);
    throw new DeviceProvisioningError(
      `${paths.pendingKey} is left from an interrupted provisioning run. ` +
        (id
          ? `Its certificate ${id} (${paths.certificate}) may be registered and ACTIVE in IoT Core: keep the files if you want to finish that device by hand, or deactivate and delete the certificate; then remove the files and run again.`
          : `IoT Core may hold an ACTIVE certificate for that key that was never attached (no ${DEVICE_FILES.certificate} was written); check for one created at the time of that run, then remove the file and run again.`),
    );
  }
  if (await exists(paths.certificate)) {
    throw new DeviceProvisioningError(
      `refusing to overwrite ${paths.certificate} (there is no key beside it); use another --out directory or remove the file`,
    );
  }
}

/** IoT certificate ids are the SHA-256 of the certificate's DER, in lower-case hex. */
function certificateIdFromFile(file: string): string | undefined {
  try {
    return new X509Certificate(readFileSync(file)).fingerprint256.replaceAll(':', '').toLowerCase();
  } catch {
    return undefined;
  }
}

async function ensureThing(iot: IoTClient, thingName: string, thingTypeName: string | undefined): Promise<{ thingArn?: string; existed: boolean }> {
  try {
    const created = await iot.send(new CreateThingCommand({ thingName, thingTypeName }));
    return { thingArn: created.thingArn, existed: false };
  } catch (error) {
    // CreateThing succeeds for an identical thing; ResourceAlreadyExists means other attributes or type.
    if (errorName(error) !== 'ResourceAlreadyExistsException') throw error;
  }
  const existing = await iot.send(new DescribeThingCommand({ thingName }));
  if ((existing.thingTypeName ?? undefined) !== thingTypeName) {
    throw new DeviceProvisioningError(
      `thing ${thingName} already exists with thing type ${existing.thingTypeName ?? '(none)'}, not ${thingTypeName ?? '(none)'}; ` +
        'refusing to give it a certificate: pick another thing name, or change or delete that thing first',
      { step: 'CreateThing' },
    );
  }
  return { thingArn: existing.thingArn, existed: true };
}

async function rollBack(
  iot: IoTClient,
  context: {
    thingName: string;
    policyName: string;
    certificateArn: string;
    certificateId: string;
    attempted: { policy: boolean; thingPrincipal: boolean };
    retryDelaysMs: readonly number[];
    log: Log;
  },
): Promise<RollbackReport> {
  const { thingName, policyName, certificateArn, certificateId, attempted, log } = context;
  const report: RollbackReport = { certificateDeleted: false, certificateDeactivated: false, failures: [] };
  const attempt = async (what: string, action: () => Promise<unknown>): Promise<boolean> => {
    try {
      await action();
      return true;
    } catch (error) {
      report.failures.push(`${what}: ${messageOf(error)}`);
      log.warn('rollback step failed', { step: what, error: messageOf(error) });
      return false;
    }
  };
  // Deactivate first: from here on the certificate is useless even if the rest fails.
  report.certificateDeactivated = await attempt('UpdateCertificate INACTIVE', () =>
    iot.send(new UpdateCertificateCommand({ certificateId, newStatus: 'INACTIVE' })),
  );
  // A failed attach may still have taken effect (a timeout after the server acted), so undo every attempted one.
  if (attempted.thingPrincipal) {
    await attempt('DetachThingPrincipal', () => iot.send(new DetachThingPrincipalCommand({ thingName, principal: certificateArn })));
  }
  if (attempted.policy) {
    await attempt('DetachPolicy', () => iot.send(new DetachPolicyCommand({ policyName, target: certificateArn })));
  }
  if (report.certificateDeactivated) {
    report.certificateDeleted = await attempt('DeleteCertificate', () =>
      withRetries(() => iot.send(new DeleteCertificateCommand({ certificateId })), ['DeleteConflictException'], context.retryDelaysMs),
    );
  }
  return report;
}

/** Retries `action` while it fails with one of `retryOn` (IoT's eventually consistent detaches). */
async function withRetries<T>(action: () => Promise<T>, retryOn: readonly string[], delaysMs: readonly number[]): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await action();
    } catch (error) {
      const delay = delaysMs[attempt];
      if (delay === undefined || !retryOn.includes(errorName(error) ?? '')) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** Runs one revoke step, naming it in the error. */
async function send<T>(what: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    throw failure(what, error);
  }
}

function failure(what: string, error: unknown): DeviceProvisioningError {
  return new DeviceProvisioningError(`${what} failed: ${messageOf(error)} (revoking is idempotent: run it again)`, { cause: error, step: what });
}

/** `arn:aws:iot:<region>:<account>:cert/<id>` -> `<id>`; undefined for other principals. */
function certificateIdOf(principal: string): string | undefined {
  const match = /^arn:aws[\w-]*:iot:[^:]*:[^:]*:cert\/([0-9a-f]{64})$/.exec(principal);
  return match?.[1];
}

async function writeNew(file: string, content: string, mode: number, written: string[]): Promise<void> {
  await writeFile(file, content, { mode, flag: 'wx' });
  written.push(file);
  await chmod(file, mode); // exact mode whatever the umask
}

async function writeReplacing(file: string, content: string, mode: number, written: string[]): Promise<void> {
  await writeFile(file, content, { mode });
  written.push(file);
  await chmod(file, mode);
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    (error: unknown) => {
      if (errorCode(error) === 'ENOENT') return false;
      throw error;
    },
  );
}

function errorName(error: unknown): string | undefined {
  return error instanceof Error ? error.name : undefined;
}

function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : undefined;
}

function messageOf(error: unknown): string {
  if (error instanceof Error)
    return error.name && error.name !== 'Error' && !error.message.startsWith(error.name) ? `${error.name}: ${error.message}` : error.message;
  return String(error);
}
