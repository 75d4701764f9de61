/**
 * The SMT secrets' shapes (Secrets Manager, JSON), checked with messages that name the missing
 * field and never echo a value. Read once per container by the handlers.
 *
 *   transport, FTPS: {"user", "password", "clientCert" (PEM), "clientKey" (PEM), "clientKeyPassphrase"?, "ca"? (PEM)}
 *   transport, SFTP: {"username", "privateKey" (OpenSSH/PEM), "passphrase"?, "hostKeySha256" ("SHA256:...")}
 *   PGP:             {"armoredKey" (armored private key), "passphrase"?}
 */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { PgpKeyMaterial } from './pgp/decrypt.ts';
import type { FtpsOptions } from './transport/ftps.ts';
import type { SftpOptions } from './transport/sftp.ts';

export class SecretShapeError extends Error {
  constructor(secretId: string, problem: string) {
    super(`secret ${secretId}: ${problem}`);
    this.name = 'SecretShapeError';
  }
}

export async function readSecretJson(client: SecretsManagerClient, secretId: string): Promise<Record<string, unknown>> {
  const response = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
  if (response.SecretString === undefined) throw new SecretShapeError(secretId, 'has no SecretString (binary secrets are not supported)');
  try {
    const value = JSON.parse(response.SecretString) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch {
    throw new SecretShapeError(secretId, 'is not a JSON object');
  }
}

function field(secretId: string, json: Record<string, unknown>, name: string, required: boolean): string | undefined {
  const value = json[name];
  if (value === undefined || value === '') {
    if (required) throw new SecretShapeError(secretId, `field "${name}" is missing`);
    return undefined;
  }
  if (typeof value !== 'string') throw new SecretShapeError(secretId, `field "${name}" must be a string`);
  return value;
}

export interface ServerAddress {
  host: string;
  port: number;
  servername?: string;
  timeoutMs?: number;
}

export function ftpsOptionsFrom(secretId: string, json: Record<string, unknown>, server: ServerAddress): FtpsOptions {
  const clientCert = field(secretId, json, 'clientCert', true)!;
  const clientKey = field(secretId, json, 'clientKey', true)!;
  if (!clientCert.includes('BEGIN CERTIFICATE')) throw new SecretShapeError(secretId, 'field "clientCert" is not a PEM certificate');
  if (!/BEGIN [A-Z ]*PRIVATE KEY/.test(clientKey)) throw new SecretShapeError(secretId, 'field "clientKey" is not a PEM private key');
  return {
    ...server,
    user: field(secretId, json, 'user', true)!,
    password: field(secretId, json, 'password', true)!,
    clientCert,
    clientKey,
    clientKeyPassphrase: field(secretId, json, 'clientKeyPassphrase', false),
    ca: field(secretId, json, 'ca', false),
  };
}

export function sftpOptionsFrom(secretId: string, json: Record<string, unknown>, server: ServerAddress): SftpOptions {
  return {
    host: server.host,
    port: server.port,
    timeoutMs: server.timeoutMs,
    username: field(secretId, json, 'username', true)!,
    privateKey: field(secretId, json, 'privateKey', true)!,
    passphrase: field(secretId, json, 'passphrase', false),
    hostKeySha256: field(secretId, json, 'hostKeySha256', true)!,
  };
}

export function pgpKeyFrom(secretId: string, json: Record<string, unknown>): PgpKeyMaterial {
  const armoredKey = field(secretId, json, 'armoredKey', true)!;
  if (!armoredKey.includes('BEGIN PGP PRIVATE KEY BLOCK'))
    throw new SecretShapeError(secretId, 'field "armoredKey" is not an armored PGP private key');
  return { armoredKey, passphrase: field(secretId, json, 'passphrase', false) };
}
