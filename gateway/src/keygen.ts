/**
 * `meterbridge-gateway keygen`: the device's private key is born on the gateway and never leaves
 * it. Writes `device.key.pem` (EC P-256, PKCS#8, mode 0600) and `device.csr.pem` (PKCS#10, CN =
 * thing name); the operator turns the CSR into a certificate with `meterbridge device provision
 * <thing> --csr device.csr.pem` and sends back only device.cert.pem (plus the root CA and
 * endpoint.json). No AWS credentials on the device.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCsr, toPem } from '../../shared/csr.ts';

export const KEY_FILE = 'device.key.pem';
export const CSR_FILE = 'device.csr.pem';

export interface KeygenOptions {
  thingName: string;
  /** Directory for the key and the CSR (e.g. /etc/meterbridge-gateway); created 0750 if missing. */
  outDir: string;
  /** Run as root: hand the key to this user (the service user, meterbridge-gw) so the agent can read it. */
  owner?: string;
  /** File names, e.g. for a rotation beside the current key. @default device.key.pem, device.csr.pem */
  keyFile?: string;
  csrFile?: string;
}

export interface KeygenResult {
  keyPath: string;
  csrPath: string;
  csrPem: string;
}

function idOf(user: string, flag: '-u' | '-g'): number {
  try {
    return Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
  } catch {
    throw new Error(`--owner ${user}: no such user`);
  }
}

/** Makes the key and the CSR. Refuses to replace an existing key (that would orphan its certificate). */
export function generateDeviceKey(options: KeygenOptions): KeygenResult {
  const keyPath = join(options.outDir, options.keyFile ?? KEY_FILE);
  const csrPath = join(options.outDir, options.csrFile ?? CSR_FILE);
  const owner = options.owner !== undefined ? { uid: idOf(options.owner, '-u'), gid: idOf(options.owner, '-g') } : undefined;
  mkdirSync(options.outDir, { recursive: true, mode: 0o750 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const csrPem = toPem('CERTIFICATE REQUEST', buildCsr(options.thingName, privateKey));
  try {
    // 'wx': never replace a key (its certificate would be orphaned); 0600 from the first byte.
    writeFileSync(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST')
      throw new Error(`refusing to replace ${keyPath}: this gateway already has a key (revoke its certificate and remove the file first)`);
    throw error;
  }
  try {
    chmodSync(keyPath, 0o600); // whatever the umask
    if (owner) chownSync(keyPath, owner.uid, owner.gid);
    writeFileSync(csrPath, csrPem, { mode: 0o644 });
  } catch (error) {
    rmSync(keyPath, { force: true });
    throw error;
  }
  return { keyPath, csrPath, csrPem };
}
