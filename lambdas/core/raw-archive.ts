/**
 * The raw archive: every original (an SMT file as fetched, a READY delivery as received, a rejected
 * payload) is kept byte for byte in S3 before anything else happens to it, so it can be replayed.
 *
 * `put` streams (multipart for large bodies, so a 1 GB file never sits in memory), counts the bytes
 * it sent, and then checks with HeadObject that S3 holds exactly that many: callers delete the
 * remote original only after `put` returned, so a short write must throw rather than pass.
 */
import { GetObjectCommand, HeadObjectCommand, NotFound, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable, Transform } from 'node:stream';

export interface ArchivedObject {
  bucket: string;
  key: string;
  /** Bytes S3 holds, checked after the upload. */
  size: number;
  versionId?: string;
}

export interface ArchivedHead {
  size: number;
  metadata: Record<string, string>;
  versionId?: string;
  lastModified?: Date;
}

export class ArchiveSizeMismatch extends Error {
  constructor(key: string, sent: number, stored: number) {
    super(`archive of ${key} holds ${stored} bytes but ${sent} were sent; the original must not be deleted`);
    this.name = 'ArchiveSizeMismatch';
  }
}

/**
 * HeadObject answered 403. Real S3 answers a HeadObject on a key that does not exist with 403 (not
 * 404) when the caller may not s3:ListBucket the bucket, so this means "absent, or not readable":
 * the caller decides what that means for it (the SMT fetch uploads, then verifies the upload).
 */
export class ArchiveHeadForbidden extends Error {
  constructor(
    readonly key: string,
    options?: ErrorOptions,
  ) {
    super(
      `HeadObject on ${key} was refused (403): the key does not exist and the role may not list the bucket, or the role may not read it`,
      options,
    );
    this.name = 'ArchiveHeadForbidden';
  }
}

/** What a failed HeadObject says about the key: 404 absent, 403 absent-or-forbidden, anything else an error. */
export function classifyHeadError(error: unknown): 'absent' | 'forbidden' | 'error' {
  const { name, $metadata } = (error ?? {}) as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (error instanceof NotFound || name === 'NotFound' || name === 'NoSuchKey' || $metadata?.httpStatusCode === 404) return 'absent';
  if (name === 'Forbidden' || name === 'AccessDenied' || $metadata?.httpStatusCode === 403) return 'forbidden';
  return 'error';
}

export interface RawArchiveOptions {
  client: S3Client;
  bucket: string;
  /** Multipart part size. @default 8 MiB (S3's minimum is 5 MiB) */
  partSize?: number;
}

export class RawArchive {
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly partSize: number;

  constructor(options: RawArchiveOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    this.partSize = options.partSize ?? 8 * 1024 * 1024;
  }

  /**
   * Stores `body` under `key` and verifies the stored size.
   * @param expectedSize when known (an FTP listing's size), also checked against the bytes sent.
   */
  async put(
    key: string,
    body: Readable | Uint8Array | string,
    options: { contentType?: string; metadata?: Record<string, string>; expectedSize?: number } = {},
  ): Promise<ArchivedObject> {
    let sent = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        sent += chunk.length;
        callback(null, chunk);
      },
    });
    const source = typeof body === 'string' || body instanceof Uint8Array ? Readable.from([Buffer.from(body)]) : body;
    source.on('error', (error) => counter.destroy(error));
    const upload = new Upload({
      client: this.client,
      partSize: this.partSize,
      queueSize: 2,
      leavePartsOnError: false,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: source.pipe(counter),
        ContentType: options.contentType ?? 'application/octet-stream',
        Metadata: options.metadata,
      },
    });
    await upload.done();
    if (options.expectedSize !== undefined && options.expectedSize !== sent) {
      throw new ArchiveSizeMismatch(key, options.expectedSize, sent);
    }
    const head = await this.head(key);
    if (!head || head.size !== sent) throw new ArchiveSizeMismatch(key, sent, head?.size ?? 0);
    return { bucket: this.bucket, key, size: head.size, ...(head.versionId ? { versionId: head.versionId } : {}) };
  }

  /** The stored object's size and metadata, or undefined when there is none; ArchiveHeadForbidden on a 403. */
  async head(key: string): Promise<ArchivedHead | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return {
        size: head.ContentLength ?? 0,
        metadata: head.Metadata ?? {},
        ...(head.VersionId ? { versionId: head.VersionId } : {}),
        ...(head.LastModified ? { lastModified: head.LastModified } : {}),
      };
    } catch (error) {
      const kind = classifyHeadError(error);
      if (kind === 'absent') return undefined;
      if (kind === 'forbidden') throw new ArchiveHeadForbidden(key, { cause: error });
      throw error;
    }
  }

  /** The stored bytes as a stream (for decrypting or replaying). */
  async get(key: string, versionId?: string): Promise<Readable> {
    const object = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId }));
    if (!object.Body) throw new Error(`archive object ${key} has no body`);
    return object.Body as Readable;
  }
}
