/**
 * The clear content of an SMT file, after decryption: a CSV/LSE text, or a ZIP of them.
 * ZIP entries are streamed from the decrypted file (yauzl, random access; nothing extracted),
 * with a cap on the total decompressed size so a hostile or broken archive cannot fill memory
 * or the disk, and yauzl's own check that every entry inflates to the size it declares.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import yauzl from 'yauzl';
import { SmtLayoutError } from '../model.ts';

export interface ClearPart {
  /** Entry name inside the ZIP, or undefined for a plain text file. */
  entry?: string;
  stream: Readable;
}

export async function isZipFile(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return bytesRead === 4 && head.readUInt32LE(0) === 0x04034b50;
  } finally {
    await handle.close();
  }
}

/** Most members a bundle may hold: SMT's bundles hold a few reports; thousands of entries is a ZIP bomb's shape. */
export const MAX_ZIP_ENTRIES = 1000;

/**
 * The text parts of the clear file at `path`, in order. A ZIP beyond its limits (members, declared
 * or inflated size) is refused as a whole, reason `bundle`; a broken entry fails that part only.
 */
export async function* clearParts(path: string, options: { maxUnzippedBytes: number; maxEntries?: number }): AsyncGenerator<ClearPart> {
  const maxEntries = options.maxEntries ?? MAX_ZIP_ENTRIES;
  if (!(await isZipFile(path))) {
    yield { stream: createReadStream(path, { highWaterMark: 1024 * 1024 }) };
    return;
  }
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(path, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: false }, (error, file) =>
      error || !file ? reject(new SmtLayoutError(`the clear content is a broken ZIP: ${error?.message ?? 'no file'}`)) : resolve(file),
    ),
  );
  let total = 0;
  try {
    const entries: yauzl.Entry[] = [];
    await new Promise<void>((resolve, reject) => {
      zip.on('entry', (entry: yauzl.Entry) => {
        if (!entry.fileName.endsWith('/')) entries.push(entry);
        if (entries.length > maxEntries) reject(new SmtLayoutError(`the ZIP holds more than ${maxEntries} files`, undefined, 'bundle'));
        else zip.readEntry();
      });
      zip.on('end', () => resolve());
      zip.on('error', (error: Error) => reject(new SmtLayoutError(`the clear content is a broken ZIP: ${error.message}`)));
      zip.readEntry();
    });
    if (entries.length === 0) throw new SmtLayoutError('the ZIP holds no files');
    const declared = entries.reduce((sum, entry) => sum + entry.uncompressedSize, 0);
    if (declared > options.maxUnzippedBytes) {
      throw new SmtLayoutError(`the ZIP declares ${declared} bytes uncompressed; the limit is ${options.maxUnzippedBytes}`, undefined, 'bundle');
    }
    for (const entry of entries) {
      const raw = await new Promise<Readable>((resolve, reject) =>
        zip.openReadStream(entry, (error, stream) =>
          error || !stream ? reject(new SmtLayoutError(`ZIP entry ${entry.fileName}: ${error?.message ?? 'no stream'}`)) : resolve(stream),
        ),
      );
      const capped = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          total += chunk.length;
          if (total > options.maxUnzippedBytes)
            callback(new SmtLayoutError(`the ZIP inflates beyond ${options.maxUnzippedBytes} bytes`, undefined, 'bundle'));
          else callback(null, chunk);
        },
      });
      raw.on('error', (error) => capped.destroy(new SmtLayoutError(`ZIP entry ${entry.fileName}: ${error.message}`)));
      // A part refused half-way is abandoned by its reader: stop inflating it too.
      capped.on('close', () => raw.destroy());
      yield { entry: entry.fileName, stream: raw.pipe(capped) };
    }
  } finally {
    zip.close();
  }
}
