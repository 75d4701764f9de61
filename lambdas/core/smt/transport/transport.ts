/**
 * How files are taken from SMT: one small interface over FTPS (the seed documents' integration:
 * explicit TLS, client certificate + user/password, curl's `--ftp-method nocwd`) and SFTP (SSH
 * key; what SMT moved REPs and third parties to in September 2025).
 */
import type { Writable } from 'node:stream';

export interface RemoteFile {
  /** Folder as configured, e.g. `intervaldata` or `adhocusage`. */
  folder: string;
  name: string;
  /** `<folder>/<name>`: every command names the full path; the session never changes directory. */
  path: string;
  size: number;
  modifiedAt: Date;
}

export interface SmtTransport {
  readonly protocol: 'ftps' | 'sftp';
  /** Regular files in `folder` (no directories, no links). */
  list(folder: string): Promise<RemoteFile[]>;
  /**
   * Writes the file's bytes into `sink` and resolves when all were written. Does NOT end the
   * sink: the caller ends it on success and destroys it on failure, so a broken transfer can
   * never look like a complete (shorter) file downstream.
   */
  download(file: RemoteFile, sink: Writable): Promise<void>;
  remove(file: RemoteFile): Promise<void>;
  close(): Promise<void>;
}

/** The server refused who we are (login, client certificate, key) or we refused who it is. */
export class TransportAuthError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransportAuthError';
  }
}

export function remoteFile(folder: string, name: string, size: number, modifiedAt: Date): RemoteFile {
  const prefix = folder.replace(/\/+$/, '');
  return { folder: prefix, name, path: prefix === '' ? name : `${prefix}/${name}`, size, modifiedAt };
}

/** Relays into `sink` without ever ending it (see SmtTransport.download). */
export function writeInto(sink: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (sink.destroyed) {
      reject(new Error('the destination was closed'));
      return;
    }
    if (sink.write(chunk)) resolve();
    else {
      const onDrain = () => {
        sink.off('error', onError);
        resolve();
      };
      const onError = (error: Error) => {
        sink.off('drain', onDrain);
        reject(error);
      };
      sink.once('drain', onDrain);
      sink.once('error', onError);
    }
  });
}
