/**
 * SFTP transport (ssh2-sftp-client): SSH key authentication, and the server's host key pinned
 * by its SHA-256 fingerprint (as `ssh-keygen -lf` prints it), never trusted on first use.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import SftpClient from 'ssh2-sftp-client';
import { remoteFile, TransportAuthError, writeInto, type RemoteFile, type SmtTransport } from './transport.ts';

export interface SftpOptions {
  host: string;
  /** @default 22 */
  port?: number;
  username: string;
  /** Private key (OpenSSH or PEM). */
  privateKey: string;
  passphrase?: string;
  /** Host key fingerprint, `SHA256:<base64>` as printed by `ssh-keygen -lf <key> -E sha256`. */
  hostKeySha256: string;
  /** @default 30000 */
  timeoutMs?: number;
}

/** The OpenSSH SHA-256 fingerprint of a public key blob. */
export function sshFingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

export async function connectSftp(options: SftpOptions): Promise<SmtTransport> {
  const pinned = options.hostKeySha256.trim();
  if (!/^SHA256:[A-Za-z0-9+/]{43}$/.test(pinned)) {
    throw new Error(
      `hostKeySha256 ${JSON.stringify(options.hostKeySha256)} is not an OpenSSH SHA256 fingerprint (SHA256: followed by 43 base64 characters)`,
    );
  }
  const where = `${options.host}:${options.port ?? 22}`;
  const client = new SftpClient('meterbridge-smt');
  let presented: string | undefined;
  try {
    await client.connect({
      host: options.host,
      port: options.port ?? 22,
      username: options.username,
      privateKey: options.privateKey,
      passphrase: options.passphrase,
      readyTimeout: options.timeoutMs ?? 30_000,
      timeout: options.timeoutMs ?? 30_000,
      retries: 0,
      hostVerifier: (key: Buffer) => {
        presented = sshFingerprint(key);
        const a = Buffer.from(presented);
        const b = Buffer.from(pinned);
        return a.length === b.length && timingSafeEqual(a, b);
      },
    });
  } catch (error) {
    await client.end().catch(() => undefined);
    const text = error instanceof Error ? error.message : String(error);
    if (presented !== undefined && presented !== pinned) {
      throw new TransportAuthError(`SFTP server ${where} presented host key ${presented}, not the pinned ${pinned}: refusing to connect`, {
        cause: error,
      });
    }
    if (/authentication|auth methods|permission denied/i.test(text)) {
      throw new TransportAuthError(`SFTP login to ${where} refused for user ${options.username}: the server did not accept the SSH key (${text})`, {
        cause: error,
      });
    }
    throw new Error(`SFTP connection to ${where} failed: ${text}`, { cause: error });
  }
  return {
    protocol: 'sftp',
    async list(folder) {
      const entries = await client.list(folder.replace(/\/+$/, '') || '.');
      return entries.filter((entry) => entry.type === '-').map((entry) => remoteFile(folder, entry.name, entry.size, new Date(entry.modifyTime)));
    },
    async download(file: RemoteFile, sink) {
      const relay = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          writeInto(sink, chunk).then(() => callback(), callback);
        },
      });
      await pipeline(client.createReadStream(file.path), relay);
    },
    async remove(file) {
      await client.delete(file.path);
    },
    async close() {
      await client.end().catch(() => undefined);
    },
  };
}
