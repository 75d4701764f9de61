/**
 * A development certificate authority for the local IoT Core stand-in.
 *
 * Node can create keys but has no API to issue X.509 certificates, so this drives the `openssl`
 * CLI (OpenSSL 3) through execFile: no shell, so no quoting or injection concerns. Keys are EC
 * P-256 because RSA key generation would make every test file start seconds slower.
 *
 * Device certificates follow the same flow as AWS IoT's `CreateCertificateFromCsr`: the device key
 * is generated "on the device" (here: locally, written mode 0600), only a CSR goes to the CA, and
 * the CA signs it. Never use these certificates outside a development machine.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { THING_NAME_PATTERN, THING_NAME_RULE } from '../shared/telemetry.ts';

const run = promisify(execFile);

/** A CA's files, as returned by {@link createDevCa}. */
export interface DevCa {
  /** PEM certificate of the CA (what the broker trusts). */
  certPath: string;
  /** PEM private key of the CA (mode 0600). */
  keyPath: string;
}

/** A certificate issued by the dev CA with its private key. */
export interface IssuedCert {
  /** PEM certificate. */
  certPath: string;
  /** PEM private key (mode 0600). */
  keyPath: string;
}

export interface DevCaOptions {
  /**
   * Subject CN of the CA certificate.
   * @default 'meterbridge dev CA'
   */
  commonName?: string;
  /**
   * Validity of the CA certificate in days.
   * @default 3650
   */
  days?: number;
  /**
   * File name prefix inside `dir`, so several CAs (e.g. a foreign one in a test) can share a folder.
   * @default 'ca'
   */
  name?: string;
}

export interface ServerCertOptions {
  /**
   * DNS names in the subjectAltName (clients verify the host name against these, not the CN).
   * @default ['localhost']
   */
  hostnames?: string[];
  /**
   * IP addresses in the subjectAltName.
   * @default ['127.0.0.1']
   */
  ips?: string[];
  /**
   * Validity in days.
   * @default 825
   */
  days?: number;
  /**
   * File name prefix inside `dir`.
   * @default 'server'
   */
  name?: string;
}

export interface DeviceCertOptions {
  /**
   * Validity in days.
   * @default 825
   */
  days?: number;
}

/** Creates a self-signed CA (EC P-256) in `dir`; the folder is created if missing. */
export async function createDevCa(dir: string, options: DevCaOptions = {}): Promise<DevCa> {
  const { commonName = 'meterbridge dev CA', days = 3650, name = 'ca' } = options;
  assertSubjectValue(commonName);
  await mkdir(dir, { recursive: true });
  const keyPath = join(dir, `${name}.key.pem`);
  const certPath = join(dir, `${name}.cert.pem`);
  await generateKey(keyPath);
  await run('openssl', [
    'req',
    '-x509',
    '-new',
    '-key',
    keyPath,
    '-sha256',
    '-days',
    String(days),
    '-subj',
    `/CN=${commonName}`,
    // Explicit CA extensions: Node's verifier (and AWS IoT's CA registration) insists on them.
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-addext',
    'subjectKeyIdentifier=hash',
    '-out',
    certPath,
  ]);
  return { certPath, keyPath };
}

/** Issues a TLS server certificate (serverAuth) for the broker, with the names in subjectAltName. */
export async function issueServerCert(ca: DevCa, dir: string, options: ServerCertOptions = {}): Promise<IssuedCert> {
  const { hostnames = ['localhost'], ips = ['127.0.0.1'], days = 825, name = 'server' } = options;
  const altNames = [...hostnames.map((h) => `DNS:${h}`), ...ips.map((ip) => `IP:${ip}`)];
  if (altNames.length === 0) throw new Error('issueServerCert: at least one hostname or IP is required');
  return issue(ca, dir, name, hostnames[0] ?? ips[0] ?? 'localhost', days, [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    `subjectAltName=${altNames.join(',')}`,
  ]);
}

const DEVICE_EXTENSIONS = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth'];

/**
 * Issues a device (client) certificate with subject CN = `thingName`, which the local broker
 * takes as the thing name (AWS IoT gets it from the thing the certificate is attached to).
 */
export async function issueDeviceCert(ca: DevCa, dir: string, thingName: string, options: DeviceCertOptions = {}): Promise<IssuedCert> {
  // The thing-name pattern also keeps the name safe inside openssl's `-subj /CN=...`, where `/` and `=` are separators.
  if (!THING_NAME_PATTERN.test(thingName)) throw new Error(`issueDeviceCert: '${thingName}' is not a valid thing name: ${THING_NAME_RULE}`);
  const { days = 825 } = options;
  return issue(ca, dir, thingName, thingName, days, DEVICE_EXTENSIONS);
}

async function issue(ca: DevCa, dir: string, name: string, commonName: string, days: number, extensions: string[]): Promise<IssuedCert> {
  assertSubjectValue(commonName);
  await mkdir(dir, { recursive: true });
  const keyPath = join(dir, `${name}.key.pem`);
  const certPath = join(dir, `${name}.cert.pem`);
  const csrPath = join(dir, `${name}.csr.pem`);
  await generateKey(keyPath);
  await run('openssl', ['req', '-new', '-key', keyPath, '-subj', `/CN=${commonName}`, '-out', csrPath]);
  try {
    await signRequest(ca, csrPath, certPath, days, extensions);
  } finally {
    await rm(csrPath, { force: true });
  }
  return { certPath, keyPath };
}

/**
 * Signs a device's CSR (the local CreateCertificateFromCsr): the certificate carries the CSR's
 * public key and subject CN = `thingName` whatever the CSR says (IoT Core ignores the CSR's subject
 * too). Returns the certificate PEM; nothing but the certificate is written, under `dir`.
 */
export async function signDeviceCsr(ca: DevCa, dir: string, thingName: string, csrPem: string, options: DeviceCertOptions = {}): Promise<string> {
  if (!THING_NAME_PATTERN.test(thingName)) throw new Error(`signDeviceCsr: '${thingName}' is not a valid thing name: ${THING_NAME_RULE}`);
  await mkdir(dir, { recursive: true });
  const base = join(dir, `csr-${randomBytes(8).toString('hex')}`);
  await writeFile(`${base}.csr.pem`, csrPem);
  try {
    await signRequest(ca, `${base}.csr.pem`, `${base}.cert.pem`, options.days ?? 825, DEVICE_EXTENSIONS, `/CN=${thingName}`);
    return await readFile(`${base}.cert.pem`, 'utf8');
  } finally {
    await Promise.all([rm(`${base}.csr.pem`, { force: true }), rm(`${base}.cert.pem`, { force: true })]);
  }
}

async function signRequest(ca: DevCa, csrPath: string, certPath: string, days: number, extensions: string[], subject?: string): Promise<void> {
  const extPath = `${certPath}.ext.cnf`;
  await writeFile(extPath, `${extensions.join('\n')}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
  try {
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      csrPath,
      ...(subject ? ['-subj', subject] : []),
      '-CA',
      ca.certPath,
      '-CAkey',
      ca.keyPath,
      // A random serial instead of -CAcreateserial: no shared serial file, so issuing in parallel is safe.
      '-set_serial',
      `0x${randomBytes(16)
        .toString('hex')
        .replace(/^[89a-f]/, '1')}`,
      '-sha256',
      '-days',
      String(days),
      '-extfile',
      extPath,
      '-out',
      certPath,
    ]);
  } finally {
    await rm(extPath, { force: true });
  }
}

/** An EC P-256 key written with mode 0600 from the start (never readable by others, even briefly). */
async function generateKey(keyPath: string): Promise<void> {
  const { stdout } = await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']);
  await writeFile(keyPath, stdout, { mode: 0o600 });
  // writeFile's mode applies only when it creates the file; an old key file keeps its mode.
  await chmod(keyPath, 0o600);
}

function assertSubjectValue(value: string): void {
  // openssl's -subj syntax uses '/' and '=' as separators and '\' as escape.
  if (/[/=\\]/.test(value) || value.length === 0) throw new Error(`'${value}' cannot be used as a certificate subject CN here`);
}
