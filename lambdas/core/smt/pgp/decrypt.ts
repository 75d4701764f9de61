/**
 * Streaming PGP decryption of SMT files with openpgp v6 (web streams, hence Readable.toWeb).
 *
 * openpgp keeps memory bounded only with `allowUnauthenticatedStream`: plaintext is released
 * before the integrity check (MDC, or AEAD tag) at the very end of the message has run. So the
 * plaintext goes to an ephemeral file FIRST, and callers act on it only after `decryptToFile`
 * resolved, i.e. after the stream ended cleanly and the check passed. On any error the partial
 * file is removed: no reading can ever come from unverified bytes.
 *
 * Armored input is turned into binary packets by armor.ts (native base64 in large slices) before
 * openpgp sees it: openpgp's own armor decoder works line by line in JavaScript and cost as much
 * as the decryption itself. A malformed armor is 'corrupt'; a CRC24 mismatch is not checked
 * (see armor.ts), so a changed base64 letter fails openpgp's MDC/AEAD check as 'integrity'.
 *
 * Every decryption runs under a watchdog (DecryptWatchdog): some corrupted messages make openpgp
 * neither end nor fail, and those are refused as 'corrupt' after a stall or an overall deadline.
 */
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import * as openpgp from 'openpgp';
import { ArmorError, dearmor } from './armor.ts';
import { asBuffer } from '../../bytes.ts';
import { useStreamingS2k } from './s2k.ts';

export type DecryptFailureReason = 'not-pgp' | 'wrong-key' | 'integrity' | 'corrupt' | 'too-large';

/** The file cannot be turned into trustworthy clear content. Never retried by itself: replay after a fix. */
export class SmtDecryptError extends Error {
  constructor(
    readonly reason: DecryptFailureReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SmtDecryptError';
  }
}

export type ContentKind = 'pgp-armored' | 'pgp-binary' | 'clear';

const ARMOR_HEADER = '-----BEGIN PGP MESSAGE-----';

/** What the first bytes say the file is. */
export function sniffContent(head: Uint8Array): ContentKind {
  const text = Buffer.from(head.subarray(0, 256))
    .toString('latin1')
    .replace(/^\uFEFF/, '')
    .trimStart();
  if (text.startsWith(ARMOR_HEADER)) return 'pgp-armored';
  const first = head[0];
  // An OpenPGP packet header has the top bit set; tags 1 (PKESK) and 3 (SKESK) start an encrypted message.
  if (first !== undefined && (first & 0x80) !== 0) {
    const tag = (first & 0x40) !== 0 ? first & 0x3f : (first >> 2) & 0x0f;
    if (tag === 1 || tag === 3) return 'pgp-binary';
  }
  return 'clear';
}

/** Reads the first `bytes` of a stream and gives back a stream that still starts at byte 0. */
export async function peek(stream: AsyncIterable<Uint8Array>, bytes: number): Promise<{ head: Buffer; stream: Readable }> {
  const iterator = stream[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let length = 0;
  let done = false;
  while (length < bytes) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    const chunk = asBuffer(next.value);
    chunks.push(chunk);
    length += chunk.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield asBuffer(next.value);
    }
  }
  return { head, stream: Readable.from(replay(), { objectMode: false }) };
}

export interface PgpKeyMaterial {
  /** Armored private key (`-----BEGIN PGP PRIVATE KEY BLOCK-----`). */
  armoredKey: string;
  /** Its passphrase, when the key is protected. */
  passphrase?: string;
}

/** Reads and unlocks the private key; a wrong passphrase is a clear error at start, not a failed file. */
export async function loadPrivateKey(material: PgpKeyMaterial): Promise<openpgp.PrivateKey> {
  let key: openpgp.PrivateKey;
  try {
    key = await openpgp.readPrivateKey({ armoredKey: material.armoredKey });
  } catch (error) {
    throw new Error(`the PGP private key could not be read (expected an armored private key block): ${messageOf(error)}`, { cause: error });
  }
  if (key.isDecrypted()) return key;
  if (!material.passphrase) throw new Error(`the PGP private key ${key.getKeyID().toHex()} is protected and no passphrase was given`);
  useStreamingS2k(key);
  try {
    return await openpgp.decryptKey({ privateKey: key, passphrase: material.passphrase });
  } catch (error) {
    throw new Error(`the PGP private key ${key.getKeyID().toHex()} could not be unlocked: ${messageOf(error)}`, { cause: error });
  }
}

export interface DecryptOptions {
  keys: openpgp.PrivateKey[];
  /** Refuse more plaintext than this (a compressed packet can expand enormously). */
  maxClearBytes: number;
  /**
   * Refuse as 'corrupt' when decryption makes no progress for this long: it neither asked for
   * more input nor produced output (time spent waiting on the source does not count). Some
   * corrupted messages make openpgp neither end nor fail (see DecryptWatchdog).
   * @default DECRYPT_STALL_MS
   */
  stallMs?: number;
  /** Refuse as 'corrupt' when the whole decryption takes longer than this. @default DECRYPT_DEADLINE_MS */
  deadlineMs?: number;
}

/**
 * A healthy decryption never sits idle with its input at hand: openpgp works on 768 KiB chunks in
 * milliseconds. Thirty seconds without progress is a hang, even on a starved 2-core machine.
 */
export const DECRYPT_STALL_MS = 30_000;

/**
 * The overall bound, below the process Lambda's 15-minute timeout so a file is refused with a
 * reason instead of timing out and being retried: a 1 GB file decrypts in about 10 s (bench).
 */
export const DECRYPT_DEADLINE_MS = 10 * 60_000;

export interface DecryptReport {
  kind: ContentKind;
  bytesIn: number;
  bytesOut: number;
}

/**
 * Writes the clear content of `input` to `outPath`. PGP messages (armored or binary) are
 * decrypted and integrity-checked; clear input is copied as is when `allowClear` (the CLI's
 * replays of clear test files), else refused as 'not-pgp'. Resolves only when all of it is
 * written and verified; on failure the file is removed and SmtDecryptError says why.
 */
export async function decryptToFile(
  input: AsyncIterable<Uint8Array>,
  outPath: string,
  options: DecryptOptions & { allowClear?: boolean },
): Promise<DecryptReport> {
  const watchdog = new DecryptWatchdog(options.stallMs ?? DECRYPT_STALL_MS, options.deadlineMs ?? DECRYPT_DEADLINE_MS);
  let bytesIn = 0;
  const counted = Readable.from(
    (async function* () {
      // Waiting on the source (S3, a slow disk) is not a stall of the decryption: its own timeouts apply.
      watchdog.waitingForInput();
      for await (const chunk of input) {
        watchdog.progress();
        bytesIn += chunk.length;
        yield chunk;
        watchdog.waitingForInput();
      }
      watchdog.progress();
    })(),
    { objectMode: false },
  );
  let source: Readable | undefined;
  const output = new AbortController();
  let sink: WriteStream | undefined;
  // The clear file is opened only while the decryption is still wanted: abandoned work that
  // resumes later must not create it after the cleanup below removed it.
  const openSink = (): WriteStream => {
    if (output.signal.aborted) throw new SmtDecryptError('corrupt', 'decryption abandoned');
    sink = clearFileSink(outPath);
    return sink;
  };
  try {
    return await watchdog.guard(
      (async (): Promise<DecryptReport> => {
        const { head, stream } = await peek(counted, 512);
        source = stream;
        const kind = sniffContent(head);
        let bytesOut = 0;
        const cap = new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            watchdog.progress();
            bytesOut += chunk.length;
            if (bytesOut > options.maxClearBytes) callback(new SmtDecryptError('too-large', `clear content exceeds ${options.maxClearBytes} bytes`));
            else callback(null, chunk);
          },
        });
        if (kind === 'clear') {
          if (!options.allowClear) throw new SmtDecryptError('not-pgp', 'the file is not a PGP message (SMT files are encrypted to our public key)');
          await pipeline(stream, cap, openSink(), { signal: output.signal });
          return { kind, bytesIn, bytesOut };
        }
        // Armor is decoded natively (armor.ts): openpgp's JS decoder cost as much as the decryption.
        const web = pullStream(kind === 'pgp-armored' ? dearmor(stream, { outputBytes: CHUNK_BYTES }) : gather(stream, CHUNK_BYTES));
        let message: openpgp.Message<ReadableStream<Uint8Array>>;
        try {
          message = await openpgp.readMessage({ binaryMessage: web });
        } catch (error) {
          throw new SmtDecryptError('corrupt', `the PGP message could not be read: ${messageOf(error)}`, { cause: error });
        }
        let data: ReadableStream<Uint8Array>;
        try {
          const result = await openpgp.decrypt({
            message,
            decryptionKeys: options.keys,
            format: 'binary',
            // Bounded memory; integrity is then known only at the end: see the module comment.
            config: { allowUnauthenticatedStream: true },
          });
          data = result.data as ReadableStream<Uint8Array>;
        } catch (error) {
          const text = messageOf(error);
          const reason: DecryptFailureReason =
            !armorFault(error) && /session key|no decryption key|decryption key|not match/i.test(text) ? 'wrong-key' : 'corrupt';
          throw new SmtDecryptError(reason, `the PGP message could not be decrypted: ${text}`, { cause: error });
        }
        try {
          await pipeline(Readable.fromWeb(data as unknown as WebReadableStream<Uint8Array>), cap, openSink(), { signal: output.signal });
        } catch (error) {
          if (error instanceof SmtDecryptError) throw error;
          const text = messageOf(error);
          const reason: DecryptFailureReason =
            !armorFault(error) && /modification|integrity|authentication|tag|mdc|hash/i.test(text) ? 'integrity' : 'corrupt';
          throw new SmtDecryptError(reason, `the PGP message failed ${reason === 'integrity' ? 'its integrity check' : 'to decrypt'}: ${text}`, {
            cause: error,
          });
        }
        return { kind, bytesIn, bytesOut };
      })(),
    );
  } catch (error) {
    // A stalled decryption is abandoned: stop reading the input and writing the file, then remove it.
    output.abort();
    (source ?? counted).destroy();
    // The file's open may still be in flight: removing it before the stream closed would leave it behind.
    if (sink && !sink.closed) {
      const closed = once(sink, 'close').catch(() => undefined);
      sink.destroy();
      await closed;
    }
    await rm(outPath, { force: true });
    throw error;
  } finally {
    watchdog.dispose();
  }
}

/**
 * Bounds a decryption in time. openpgp v6 streams can neither end nor fail on some corrupted
 * messages: with one byte changed in a compressed binary message (2 of 3,369 single-bit changes
 * of a GnuPG file, issue 15), `openpgp.decrypt` never settles and holds no timer or socket, so a
 * process just exits 0 with nothing done. The watchdog fails the decryption as 'corrupt' when it
 * made no progress for `stallMs` while not waiting on its source, or ran longer than `deadlineMs`.
 * The abandoned openpgp promise is left to the garbage collector; nothing it could still produce
 * is used (the pipeline is aborted and the partial file removed).
 */
class DecryptWatchdog {
  private stallTimer: NodeJS.Timeout | undefined;
  private readonly deadlineTimer: NodeJS.Timeout;
  private fail!: (error: SmtDecryptError) => void;
  private readonly failed: Promise<never>;

  constructor(
    private readonly stallMs: number,
    deadlineMs: number,
  ) {
    this.failed = new Promise<never>((_, reject) => {
      this.fail = reject;
    });
    // Observed by guard(); a failure after the work settled must not become an unhandled rejection.
    this.failed.catch(() => undefined);
    this.deadlineTimer = setTimeout(
      () => this.fail(new SmtDecryptError('corrupt', `the PGP message did not finish decrypting within ${deadlineMs} ms`)),
      deadlineMs,
    );
    this.progress();
  }

  /** Input arrived or output was produced: the stall clock starts again. */
  progress(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(
      () =>
        this.fail(
          new SmtDecryptError(
            'corrupt',
            `the PGP message stalled: decryption neither ended nor failed, and made no progress for ${this.stallMs} ms (a corrupted message)`,
          ),
        ),
      this.stallMs,
    );
  }

  /** Decryption waits for the source: not a stall. */
  waitingForInput(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }

  guard<T>(work: Promise<T>): Promise<T> {
    // The abandoned work may still reject later: that must not become an unhandled rejection.
    work.catch(() => undefined);
    return Promise.race([work, this.failed]);
  }

  dispose(): void {
    clearTimeout(this.stallTimer);
    clearTimeout(this.deadlineTimer);
  }
}

/**
 * The ephemeral clear file, owner-only. Its buffer holds several decrypted chunks (~768 KiB each):
 * with the default 16 KiB every chunk waited for its disk write before decryption went on, and the
 * CPU idled ~15 % of the time.
 */
function clearFileSink(path: string): WriteStream {
  return createWriteStream(path, { mode: 0o600, highWaterMark: 8 * 1024 * 1024 });
}

/**
 * A web ReadableStream that reads `stream` only when openpgp pulls: bounded memory. Node 20's
 * Readable.toWeb reads ahead without backpressure (the whole input ends up buffered while
 * decryption lags behind), which defeats streaming on large files.
 */
export function pullStream(stream: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iterator = stream[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await iterator.next();
        if (next.done) controller.close();
        else controller.enqueue(new Uint8Array(next.value.buffer, next.value.byteOffset, next.value.byteLength));
      },
      async cancel() {
        // Ends a Readable source too: for-await (in dearmor, or the Readable's own iterator) destroys it on return.
        await iterator.return?.();
      },
    },
    { highWaterMark: 1 },
  );
}

/**
 * openpgp pays per chunk it reads, and S3 bodies (and fs streams by default) come in 16-64 KiB
 * pieces. Gathered (binary) or decoded into one buffer (armored, see dearmor's outputBytes), the
 * 141 MB test message fed from memory in 64 KiB chunks decrypted in 1.30 s instead of 1.76 s
 * (binary) and 1.23 s instead of 2.0 s (armored), best of 4 on a busy 2-core machine. Memory
 * stays bounded: one gathered chunk at a time.
 */
const CHUNK_BYTES = 768 * 1024;

/** Chunks of at least `bytes` (the last one may be smaller); large chunks pass without a copy. */
async function* gather(stream: AsyncIterable<Uint8Array>, bytes: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const part = asBuffer(chunk);
    if (size === 0 && part.length >= bytes) {
      yield part;
      continue;
    }
    parts.push(part);
    size += part.length;
    if (size >= bytes) {
      yield Buffer.concat(parts, size);
      parts = [];
      size = 0;
    }
  }
  if (size > 0) yield Buffer.concat(parts, size);
}

/** The armor itself was malformed (the error may reach us wrapped by openpgp's streams). */
function armorFault(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) if (e instanceof ArmorError) return true;
  return false;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
