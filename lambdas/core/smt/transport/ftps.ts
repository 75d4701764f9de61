/**
 * FTPS transport (basic-ftp): explicit TLS (AUTH TLS) on the control connection, client
 * certificate and key plus user/password, the server verified against a configured CA, TLS 1.2+,
 * passive data connections (protected, PROT P), full paths and no CWD (curl's `--ftp-method
 * nocwd`, as SMT's own scripts use), a timeout on every step.
 */
import { Writable } from 'node:stream';
import { Client, FileType, FTPError } from 'basic-ftp';
import { remoteFile, TransportAuthError, writeInto, type RemoteFile, type SmtTransport } from './transport.ts';

export interface FtpsOptions {
  host: string;
  /** @default 21 */
  port?: number;
  user: string;
  password: string;
  /** Client certificate (PEM) SMT was given for this account. */
  clientCert: string;
  /** Its private key (PEM). */
  clientKey: string;
  clientKeyPassphrase?: string;
  /** CA bundle (PEM) the server's certificate must chain to; the system roots when undefined. */
  ca?: string;
  /** Name the server's certificate must carry. @default host */
  servername?: string;
  /** Per-step timeout (connect, each command, idle data). @default 30000 */
  timeoutMs?: number;
}

export async function connectFtps(options: FtpsOptions): Promise<SmtTransport> {
  const client = new Client(options.timeoutMs ?? 30_000);
  const where = `${options.host}:${options.port ?? 21}`;
  try {
    await client.access({
      host: options.host,
      port: options.port ?? 21,
      user: options.user,
      password: options.password,
      secure: true,
      secureOptions: {
        cert: options.clientCert,
        key: options.clientKey,
        passphrase: options.clientKeyPassphrase,
        ca: options.ca,
        servername: options.servername ?? options.host,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
      },
    });
  } catch (error) {
    client.close();
    throw explainConnectError(error, where, options.user);
  }
  return {
    protocol: 'ftps',
    async list(folder) {
      // The trailing slash makes LIST/MLSD name the folder itself, as in SMT's `curl ... /intervaldata/`.
      // basic-ftp uses MLSD when the server advertises MLST: its `modify` fact is a full UTC time.
      const entries = await client.list(`${folder.replace(/\/+$/, '')}/`);
      const files: RemoteFile[] = [];
      for (const entry of entries) {
        if (entry.type !== FileType.File) continue;
        const file = remoteFile(folder, entry.name, entry.size, entry.modifiedAt ?? new Date(0));
        // A LIST line says "Nov 30 05:18" (no year, server-local time) for recent files: ask MDTM
        // (UTC, to the second) instead of guessing; a server with neither gives no time at all.
        if (!entry.modifiedAt) file.modifiedAt = await modificationTime(client, file.path, where);
        files.push(file);
      }
      return files;
    },
    async download(file: RemoteFile, sink) {
      // basic-ftp ends the stream it is given even after a failure; hand it a relay instead, so
      // only a complete transfer reaches `sink`, and `sink` is never ended here.
      const relay = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          writeInto(sink, chunk).then(() => callback(), callback);
        },
      });
      await client.downloadTo(relay, file.path);
    },
    async remove(file) {
      await client.remove(file.path);
    },
    async close() {
      client.close();
    },
  };
}

/** MDTM of one file; an error (never a guessed date) when the server refuses it or answers nonsense. */
async function modificationTime(client: Client, path: string, where: string): Promise<Date> {
  let date: Date;
  try {
    date = await client.lastMod(path);
  } catch (error) {
    throw new FtpsListingError(
      `FTPS server ${where} offers neither MLSD nor MDTM for ${path} (${error instanceof Error ? error.message : String(error)}): its modification time is unknown, and LIST gives no year`,
      { cause: error },
    );
  }
  if (Number.isNaN(date.getTime())) throw new FtpsListingError(`FTPS server ${where} answered MDTM ${path} with no valid time`);
  return date;
}

/** The server lists a file without a modification time that can be trusted. */
export class FtpsListingError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'FtpsListingError';
  }
}

function explainConnectError(error: unknown, where: string, user: string): Error {
  const text = error instanceof Error ? error.message : String(error);
  if (error instanceof FTPError && error.code === 530) {
    return new TransportAuthError(`FTPS login to ${where} refused for user ${user} (530): wrong user name or password, or the account is locked`, {
      cause: error,
    });
  }
  if (/self[- ]signed|unable to verify|certificate has expired|altnames|unable to get (local )?issuer|CERT_/i.test(text)) {
    return new TransportAuthError(`FTPS server ${where} is not trusted: its certificate does not verify against the configured CA (${text})`, {
      cause: error,
    });
  }
  if (/certificate|handshake|alert|ECONNRESET|socket hang up|EPIPE|closed/i.test(text)) {
    return new TransportAuthError(
      `FTPS server ${where} ended the TLS session: the client certificate was probably refused (wrong certificate, key or CA on their side) (${text})`,
      { cause: error },
    );
  }
  return new Error(`FTPS connection to ${where} failed: ${text}`, { cause: error });
}
