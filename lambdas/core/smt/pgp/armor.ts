/**
 * Streaming decoder of OpenPGP ASCII armor (RFC 9580 §6.2) for `-----BEGIN PGP MESSAGE-----`
 * blocks: byte chunks in, the binary packets out, so openpgp only ever reads a `binaryMessage`.
 *
 * Why not openpgp's own decoder: it handles the body line by line in JavaScript, which costs about
 * as much as the whole decryption (0.7 s of 1.6 s on a 191 MB file). Here the body is decoded in
 * large blocks by Node's native base64 decoder, and everything else per block is a handful of
 * native scans (memchr for '=', '-' and '_') plus one byte read per body line. Per-line string
 * work happens only in the few lines of the BEGIN/headers part and of the tail (padding,
 * checksum, END line).
 *
 * Validation without a per-byte JavaScript loop: Node's decoder silently skips any byte outside
 * the base64 alphabet (also CR/LF). So the body's base64 characters are counted from the line
 * layout (line length minus trailing whitespace), and the decoded length must be exactly 3/4 of
 * that count: any skipped byte (a stray character, an inner space, a NUL, a UTF-8 byte) makes it
 * shorter. Node also accepts the base64url letters '-' and '_', hence the two memchr checks.
 * The layout is learned from a line found by indexOf; later lines are checked by reading the one
 * byte where their LF must be. A block whose lines differ in trailing whitespace can fool that
 * guess; a length mismatch is therefore recounted line by line before it is called an error.
 *
 * Decisions:
 * - The CRC24 checksum line (`=XXXX`) is accepted and NOT verified. RFC 9580 §6.1 says a reader
 *   must not reject a message whose CRC24 is missing, malformed or wrong, and the packets are
 *   covered by the MDC / AEAD check, which openpgp runs at the end anyway (a tampered body then
 *   fails as 'integrity', with the reason the operator needs). Computing it would be a JS loop
 *   over every decoded byte (not measured; a table-driven CRC24 in JS is a few ns per byte, so
 *   several hundred ms on 141 MB) for nothing we may act on.
 * - Strict where a real writer never deviates and leniency would hide damage: a BEGIN line for a
 *   PGP MESSAGE first (after an optional BOM and blank lines), "Key: value" headers ended by a
 *   blank line, only base64 and trailing whitespace in the body, nothing after the '=' padding
 *   but the checksum and END lines, only whitespace after the END line (one message per file).
 * - Lenient where it costs nothing and real files vary: any line length (gpg writes 64,
 *   openpgp.js 76), LF or CRLF, trailing spaces/tabs, blank lines in the tail, a final quantum
 *   without its '=' padding (Node decodes 2 or 3 trailing characters correctly).
 *
 * Measured (decryptToFile, 191 MB armored / 141 MB binary, 1 MiB fs chunks, best of 4 on a
 * shared, loaded 2-core machine): armored 1.80 s before (openpgp's decoder), 1.23-1.24 s now;
 * binary 0.90-0.95 s. The remaining ~0.3 s: Node 20 decodes base64 only from a JS string, so
 * every byte is first copied into a latin1 string (V8 heap: allocation and scavenges while
 * openpgp's objects are live), then decoded; plus reading 50 MB more input. Alone, dearmor
 * takes ~0.15 s for the file; interleaved with openpgp it costs about twice that.
 */
import { asBuffer } from '../../bytes.ts';

/** The armor is not a well-formed PGP MESSAGE block. decrypt.ts reports it as 'corrupt'. */
export class ArmorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArmorError';
  }
}

export interface DearmorOptions {
  /**
   * Decoded bytes are gathered up to about this many before they are handed on. openpgp pays per
   * chunk, and S3 bodies arrive in ~16-64 KiB pieces: decoding them into one shared buffer gives
   * it large chunks without copying the input together first (decryptToFile of the 191 MB file
   * fed from memory in 64 KiB chunks: 1.23 s instead of 2.0 s).
   */
  outputBytes?: number;
}

const DEFAULT_OUTPUT_BYTES = 768 * 1024;
/**
 * Blocks are decoded in slices of about this size: a latin1 string above ~128 KiB is a V8
 * large object (its own mmap, page faults, a full GC to free it), which made decoding 1 MiB
 * chunks twice as slow as decoding them in 32 KiB slices (measured: 219 vs 106 ms on 191 MB).
 */
const SLICE_BYTES = 32 * 1024;
/** BEGIN + headers, or the tail, longer than this is not an armored message we can read. */
const MAX_TEXT_BYTES = 64 * 1024;
const MESSAGE_TYPE = 'PGP MESSAGE';
const END_LINE = `-----END ${MESSAGE_TYPE}-----`;

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const EQUALS = 0x3d;
const DASH = 0x2d;
const UNDERSCORE = 0x5f;

/** An upper bound of the bytes `inputBytes` of armor decode to, with room to spare for the checks. */
function maxDecoded(inputBytes: number): number {
  return Math.ceil((inputBytes * 3) / 4) + 6;
}

function isBlank(byte: number | undefined): boolean {
  return byte === SPACE || byte === TAB || byte === CR || byte === LF;
}

/**
 * Decodes an armored PGP MESSAGE from `source` into its binary packets, chunk by chunk. Memory:
 * one input chunk and one output buffer (outputBytes, or 3/4 of a larger input chunk).
 */
export async function* dearmor(source: AsyncIterable<Uint8Array>, options: DearmorOptions = {}): AsyncGenerator<Buffer> {
  const outputBytes = Math.max(1, options.outputBytes ?? DEFAULT_OUTPUT_BYTES);
  const decoder = new ArmorDecoder(outputBytes);
  for await (const chunk of source) {
    if (chunk.byteLength === 0) continue;
    // A decoded chunk must fit the output buffer: hand on what is there first if it might not.
    if (!decoder.fits(chunk.byteLength)) yield decoder.take();
    decoder.push(asBuffer(chunk));
    // Hand on now rather than when the next chunk arrives if a chunk like this one would not fit.
    if (decoder.pending >= outputBytes || !decoder.fits(chunk.byteLength)) yield decoder.take();
  }
  if (!decoder.fits(4)) yield decoder.take(); // room for a last quantum the END line completes
  decoder.end();
  if (decoder.pending > 0) yield decoder.take();
}

type Phase = 'begin' | 'headers' | 'body' | 'tail' | 'done';

/** The decoder's state machine; `dearmor` is the streaming face of it. */
export class ArmorDecoder {
  private phase: Phase = 'begin';
  /** Bytes of the stream before the current block: for error positions. */
  private offset = 0;
  /** Incomplete last line of the BEGIN/headers part or of the tail (latin1). */
  private text = '';
  private sawAnyText = false;
  private sawBytes = false;
  /** The previous block ended inside a body line with blanks: fine only if the line ends next. */
  private blankTail = false;
  /** Base64 characters (0-3) that do not yet make a whole quantum. */
  private carry = '';
  private atLineStart = true;
  /** Learned body layout: a line's bytes including its line end, and its base64 characters. */
  private lineBytes = 0;
  private lineChars = 0;
  private lineCrLf = false;
  /** Slice boundaries found by countChars for the current block. */
  private readonly splits: number[] = [];
  /** Decoded bytes not yet handed on: out[0..outAt). Never written again once taken. */
  private out: Buffer = Buffer.alloc(0);
  private outAt = 0;
  // Tail state.
  private tailAtLineStart = true;
  private padNeeded = 0;
  private padded = false;
  private dataDone = false;
  private sawChecksum = false;

  constructor(private readonly outputBytes = DEFAULT_OUTPUT_BYTES) {}

  /** Decoded bytes waiting to be taken. */
  get pending(): number {
    return this.outAt;
  }

  /** Whether pushing `bytes` more input can decode into the current output buffer. */
  fits(bytes: number): boolean {
    return this.outAt === 0 || this.out.length - this.outAt >= maxDecoded(bytes);
  }

  /** The decoded bytes so far; the decoder writes later bytes to a new buffer. */
  take(): Buffer {
    const taken = this.out.subarray(0, this.outAt);
    this.out = Buffer.alloc(0);
    this.outAt = 0;
    return taken;
  }

  /** Room for `bytes` more decoded bytes (never moves bytes already decoded). */
  private reserve(bytes: number): void {
    if (this.out.length - this.outAt >= bytes) return;
    if (this.outAt > 0) throw new Error('ArmorDecoder: take() the decoded bytes before pushing a chunk that does not fit (see fits())');
    this.out = Buffer.allocUnsafe(Math.max(this.outputBytes, bytes));
  }

  push(block: Buffer): void {
    let at = 0;
    if (block.length > 0) this.sawBytes = true;
    if (this.phase === 'begin' || this.phase === 'headers') {
      // -1: the headers go on past this block.
      at = this.pushPreamble(block);
      if (at < 0) {
        this.offset += block.length;
        return;
      }
    }
    if (this.phase === 'body') {
      const tailAt = this.pushBody(block, at);
      if (tailAt >= 0) this.enterTail(block, tailAt);
    } else if (this.phase === 'tail' || this.phase === 'done') {
      this.pushTail(block.toString('latin1'));
    }
    this.offset += block.length;
  }

  end(): void {
    switch (this.phase) {
      case 'begin':
        if (this.text.length > 0) this.preambleLine(this.text);
        throw new ArmorError(this.sawBytes ? `no "-----BEGIN ${MESSAGE_TYPE}-----" line` : 'the input is empty');
      case 'headers':
        if (this.text.length > 0) this.preambleLine(this.text);
        throw new ArmorError(`the armored message is truncated: it ends in its headers, with no body and no "${END_LINE}" line`);
      case 'body':
        throw new ArmorError(`the armored message is truncated: no "${END_LINE}" line`);
      case 'tail':
      case 'done':
        if (this.text.length > 0) {
          const line = this.text;
          this.text = '';
          const trimmed = line.replace(/[ \t\r]+$/, '');
          if (this.phase === 'tail' && trimmed !== END_LINE && trimmed.startsWith('-') && END_LINE.startsWith(trimmed)) {
            throw new ArmorError(`the armored message is truncated: it ends in its "${END_LINE}" line`);
          }
          this.tailLine(line);
        }
        if (this.phase !== 'done') throw new ArmorError(`the armored message is truncated: no "${END_LINE}" line`);
        return;
    }
  }

  // --- BEGIN line and headers: a few short lines, handled as text -------------------------------

  /** Returns where the body starts in `block` when the headers ended inside it, else -1. */
  private pushPreamble(block: Buffer): number {
    // latin1 maps byte i to char i, so text offsets convert to block offsets exactly.
    const before = this.text.length;
    const text = this.text + block.toString('latin1');
    let lineStart = 0;
    for (;;) {
      const lf = text.indexOf('\n', lineStart);
      if (lf === -1) break;
      this.preambleLine(text.slice(lineStart, lf));
      lineStart = lf + 1;
      if (this.phase === 'body') {
        this.text = '';
        return lineStart - before;
      }
    }
    this.text = text.slice(lineStart);
    if (this.text.length > MAX_TEXT_BYTES) {
      throw new ArmorError(
        this.phase === 'begin'
          ? `no "-----BEGIN ${MESSAGE_TYPE}-----" line in the first ${MAX_TEXT_BYTES} bytes`
          : `the armor headers are longer than ${MAX_TEXT_BYTES} bytes (no blank line ends them)`,
      );
    }
    return -1;
  }

  private preambleLine(raw: string): void {
    let line = raw.replace(/[ \t\r]+$/, '');
    if (this.phase === 'begin') {
      if (!this.sawAnyText) line = line.replace(/^(?:\xEF\xBB\xBF|\uFEFF)/, '');
      if (line.trim() === '') return;
      this.sawAnyText = true;
      const begin = /^-----BEGIN (.+)-----$/.exec(line);
      if (!begin) throw new ArmorError(`no "-----BEGIN ${MESSAGE_TYPE}-----" line: the first line is ${quote(line)}`);
      const type = begin[1]!;
      if (/^PGP MESSAGE, PART /.test(type)) throw new ArmorError(`multi-part armored messages are not supported (${quote(line)})`);
      if (type !== MESSAGE_TYPE) throw new ArmorError(`the armor is a ${quote(type)} block, not an encrypted ${quote(MESSAGE_TYPE)}`);
      this.phase = 'headers';
      return;
    }
    if (line.trim() === '') {
      this.phase = 'body';
      this.atLineStart = true;
      return;
    }
    // "Key: Value" (RFC 9580 §6.2.2). Version, Comment, Hash, Charset... are all ignored.
    if (!/^[\x21-\x39\x3b-\x7e]+:/.test(line))
      throw new ArmorError(`malformed armor header ${quote(line)} (expected "Key: value"; a blank line must end the headers)`);
  }

  // --- Body: native scans and native base64 --------------------------------------------------------

  /** Decodes the body in block[from..]; returns where the tail starts, or -1. */
  private pushBody(block: Buffer, from: number): number {
    let bodyEnd = block.length;
    let tailAt = -1;
    // The first '=' is padding or the checksum line: the base64 data ends there.
    const equals = block.indexOf(EQUALS, from);
    if (equals !== -1) {
      bodyEnd = equals;
      tailAt = equals;
    }
    // A '-' can only start the END line; Node would otherwise decode it as base64url.
    const dash = block.indexOf(DASH, from);
    if (dash !== -1 && dash < bodyEnd) {
      const startsLine = dash === from ? this.atLineStart : block[dash - 1] === LF;
      if (!startsLine) throw this.badCharacter(block, dash);
      bodyEnd = dash;
      tailAt = dash;
    }
    const underscore = block.indexOf(UNDERSCORE, from);
    if (underscore !== -1 && underscore < bodyEnd) throw this.badCharacter(block, underscore);

    if (this.blankTail && !this.atLineStart) {
      // Blanks ended the previous block mid-line: trailing whitespace if this block goes on with the
      // line end, else whitespace inside a line (within one block the length check catches that).
      let i = from;
      while (i < bodyEnd && (block[i] === SPACE || block[i] === TAB || block[i] === CR)) i++;
      if (i < bodyEnd && block[i] !== LF)
        throw new ArmorError(`the armored body has a character outside base64: whitespace inside a line, before byte ${this.offset + i}`);
    }
    if (bodyEnd > from) {
      const last = block[bodyEnd - 1];
      this.blankTail = tailAt === -1 && (last === SPACE || last === TAB || last === CR);
      this.reserve(maxDecoded(bodyEnd - from));
      const decoded = this.decodeRange(block, from, bodyEnd, true) || this.decodeRange(block, from, bodyEnd, false);
      if (!decoded) throw this.badCharacter(block, this.firstBadByte(block, from, bodyEnd));
      this.atLineStart = block[bodyEnd - 1] === LF;
    }
    return tailAt;
  }

  /**
   * Decodes the whole quanta of carry + block[from..to) into the output buffer and keeps the rest
   * as carry. False when the decoded length disagrees with the character count (module comment);
   * nothing counts as decoded then, so a second try overwrites the same bytes.
   */
  private decodeRange(block: Buffer, from: number, to: number, guessLayout: boolean): boolean {
    const chars = this.countChars(block, from, to, guessLayout);
    const all = this.carry.length + chars;
    if (all < 4) {
      const rest = block.toString('latin1', from, to).replace(/[ \t\r\n]+/g, '');
      if (rest.length !== chars || /[^A-Za-z0-9+/]/.test(rest)) return false;
      this.carry += rest;
      return true;
    }
    // Complete the carried quantum from the block's first characters, so that the big decode needs
    // no string concatenation (V8 would flatten the cons string: a copy of the whole block).
    let start = from;
    let head = this.carry;
    while (head.length > 0 && head.length < 4) {
      if (start >= to) return false;
      const byte = block[start++]!;
      if (!isBlank(byte)) head += String.fromCharCode(byte);
    }
    // The last (all % 4) base64 characters wait for the next block.
    let cut = to;
    let rest = '';
    for (let left = all % 4; left > 0;) {
      if (cut <= start) return false;
      const byte = block[--cut]!;
      if (!isBlank(byte)) {
        rest = String.fromCharCode(byte) + rest;
        left--;
      }
    }
    if (/[^A-Za-z0-9+/]/.test(head + rest)) return false;
    const expected = ((all - rest.length) / 4) * 3;
    // reserve() left room for maxDecoded(to - from) >= expected + 3: a count that was too low
    // cannot hide in a write cut short by the end of the buffer.
    const out = this.out;
    const base = this.outAt;
    let at = base + (head.length > 0 ? out.write(head, base, 'base64') : 0);
    let sliceStart = start;
    for (const split of this.splits) {
      if (split <= sliceStart || split >= cut) continue;
      at += out.write(block.toString('latin1', sliceStart, split), at, 'base64');
      sliceStart = split;
    }
    at += out.write(block.toString('latin1', sliceStart, cut), at, 'base64');
    if (at - base !== expected) return false;
    this.outAt = at;
    this.carry = rest;
    return true;
  }

  /**
   * Base64 characters in block[from..to): every byte but line ends and trailing whitespace. Also
   * notes in `splits` positions about every SLICE_BYTES where carry + characters so far make
   * whole quanta: the block is decoded in such slices (see SLICE_BYTES).
   */
  private countChars(block: Buffer, from: number, to: number, guessLayout: boolean): number {
    const splits = this.splits;
    splits.length = 0;
    let chars = this.carry.length;
    let at = from;
    let lineStart = this.atLineStart;
    let nextSplit = from + SLICE_BYTES;
    while (at < to) {
      if (guessLayout && lineStart && this.lineBytes > 0) {
        // A run of lines laid out like the learned one: one byte read per line.
        const step = this.lineBytes;
        const lineChars = this.lineChars;
        const crlf = this.lineCrLf;
        const first = at + step - 1;
        let lf = first;
        while (lf < to && block[lf] === LF && (!crlf || block[lf - 1] === CR)) lf += step;
        const lines = (lf - first) / step;
        if (lines > 0) {
          const runEnd = at + lines * step;
          while (nextSplit < runEnd) {
            const k = Math.ceil((nextSplit - at) / step);
            if (k >= lines) break;
            const skip = -(chars + k * lineChars) & 3;
            if (skip < lineChars) {
              splits.push(at + k * step + skip);
              nextSplit = at + k * step + skip + SLICE_BYTES;
            } else nextSplit = at + (k + 1) * step;
          }
          chars += lines * lineChars;
          at = runEnd;
          continue;
        }
      }
      const found = block.indexOf(LF, at);
      const lf = found === -1 || found >= to ? -1 : found;
      let end = lf === -1 ? to : lf;
      while (end > at && isBlank(block[end - 1])) end--;
      if (at >= nextSplit && lineStart) {
        const skip = -chars & 3;
        if (skip < end - at) {
          splits.push(at + skip);
          nextSplit = at + skip + SLICE_BYTES;
        }
      }
      chars += end - at;
      if (lf === -1) break;
      if (lineStart) {
        // Learn the layout only from a line whose sole whitespace is its line end: then a guessed
        // line can only be overcounted (a stray byte is counted but skipped by Node), never
        // undercounted, and an overcount always shows as a short decode.
        const crlf = lf - end === 1 && block[end] === CR;
        const pure = lf === end || crlf;
        this.lineBytes = pure ? lf + 1 - at : 0;
        this.lineChars = end - at;
        this.lineCrLf = crlf;
      }
      at = lf + 1;
      lineStart = true;
    }
    return chars - this.carry.length;
  }

  /** Only on the error path: where the offending byte is, for the message. */
  private firstBadByte(block: Buffer, from: number, to: number): number {
    for (let i = from; i < to; i++) {
      const byte = block[i]!;
      if (byte === LF) continue;
      const base64 =
        (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) || byte === 0x2b || byte === 0x2f;
      if (!base64) {
        // Trailing whitespace is fine; whitespace followed by more data on the same line is not.
        let j = i;
        while (j < to && (block[j] === SPACE || block[j] === TAB || block[j] === CR)) j++;
        if (j > i && (j === to || block[j] === LF)) {
          i = j - 1;
          continue;
        }
        return i;
      }
    }
    return from;
  }

  private badCharacter(block: Buffer, at: number): ArmorError {
    const byte = block[at] ?? 0;
    const shown = byte >= 0x21 && byte <= 0x7e ? `'${String.fromCharCode(byte)}'` : `byte 0x${byte.toString(16).padStart(2, '0')}`;
    return new ArmorError(`the armored body has a character outside base64: ${shown} at byte ${this.offset + at}`);
  }

  // --- Tail: padding, checksum line, END line; a few short lines ----------------------------------

  private enterTail(block: Buffer, at: number): void {
    this.phase = 'tail';
    this.tailAtLineStart = at === 0 ? this.atLineStart : block[at - 1] === LF;
    if (this.carry.length === 1) throw new ArmorError('the base64 body ends with a lone character (a truncated quantum)');
    this.padNeeded = this.carry.length === 0 ? 0 : 4 - this.carry.length;
    this.text = '';
    this.pushTail(block.toString('latin1', at));
  }

  private pushTail(chunk: string): void {
    const text = this.text + chunk;
    let lineStart = 0;
    for (;;) {
      const lf = text.indexOf('\n', lineStart);
      if (lf === -1) break;
      this.tailLine(text.slice(lineStart, lf));
      lineStart = lf + 1;
    }
    this.text = text.slice(lineStart);
    if (this.text.length > MAX_TEXT_BYTES) {
      throw new ArmorError(
        this.phase === 'done' ? `data after the "${END_LINE}" line` : `the armor tail has a line longer than ${MAX_TEXT_BYTES} bytes`,
      );
    }
  }

  private tailLine(raw: string): void {
    const midLine = !this.tailAtLineStart;
    this.tailAtLineStart = true;
    const line = raw.replace(/[ \t\r]+$/, '');
    if (this.phase === 'done') {
      if (line.trim() !== '') throw new ArmorError(`data after the "${END_LINE}" line: ${quote(line)}`);
      return;
    }
    if (this.padNeeded > 0 && /^=+$/.test(line)) {
      if (line.length > this.padNeeded) throw new ArmorError(`too much '=' padding: ${quote(line)}`);
      this.padNeeded -= line.length;
      this.padded = true;
      if (this.padNeeded === 0) this.finishData();
      return;
    }
    if (midLine && /^=+$/.test(line)) throw new ArmorError(`'=' padding where the base64 data needs none: ${quote(line)}`);
    if (midLine) {
      // The base64 data stopped in the middle of this line: at padding that did not fit, or at a stray '='.
      throw new ArmorError(
        this.padded || line.startsWith('=') ? `data after the '=' padding: ${quote(line)}` : `unexpected text in the armored body: ${quote(line)}`,
      );
    }
    if (line.trim() === '') return;
    if (line.startsWith('=')) {
      // The CRC24 footer: accepted, not verified (module comment). Anything '='-led after the data counts as one.
      if (this.sawChecksum) throw new ArmorError(`a second armor checksum line: ${quote(line)}`);
      this.sawChecksum = true;
      this.finishData();
      return;
    }
    if (line === END_LINE) {
      this.finishData();
      this.phase = 'done';
      return;
    }
    if (line.startsWith('-----END ')) throw new ArmorError(`the END line ${quote(line)} does not match "-----BEGIN ${MESSAGE_TYPE}-----"`);
    if (line.startsWith('-')) throw new ArmorError(`expected the "${END_LINE}" line, found ${quote(line)}`);
    throw new ArmorError(
      this.padded || this.sawChecksum ? `data after the '=' padding: ${quote(line)}` : `unexpected text in the armored body: ${quote(line)}`,
    );
  }

  /** The last quantum: with its padding, or (lenient) without. */
  private finishData(): void {
    if (this.dataDone) return;
    this.dataDone = true;
    if (this.carry.length > 0) {
      this.reserve(3);
      this.outAt += this.out.write(this.carry, this.outAt, 'base64');
    }
    this.carry = '';
    this.padNeeded = 0;
  }
}

function quote(text: string): string {
  const short = text.length > 80 ? `${text.slice(0, 80)}...` : text;
  return JSON.stringify(short);
}
