/**
 * Single-bit mutations of real GnuPG files that make openpgp itself hang: `openpgp.decrypt` (or
 * the stream it returns) neither settles nor fails. Found by brute force, as issue 15 did: a flip
 * in the encrypted random prefix or the block after it garbles the first plaintext block (CFB),
 * i.e. the header of the compressed packet, and a few of those garbled headers leave openpgp
 * waiting forever. Which flips do that depends on the session key, so each file is searched anew.
 */
import * as openpgp from 'openpgp';

export interface Mutation {
  /** Byte offset and the XOR mask applied there. */
  at: number;
  xor: number;
  bytes: Buffer;
}

export function mutate(bytes: Uint8Array, at: number, xor: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = copy[at]! ^ xor;
  return copy;
}

/**
 * Offset of the second packet (the encrypted data after the PKESK) of a binary message: the
 * region whose flips garble the plaintext's first packet header. Old and new packet formats.
 */
export function encryptedDataOffset(data: Uint8Array): number {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const ctb = bytes[0]!;
  if ((ctb & 0x40) !== 0) {
    const first = bytes[1]!;
    if (first < 192) return 2 + first;
    if (first < 224) return 3 + ((first - 192) << 8) + bytes[2]! + 192;
    return 6 + bytes.readUInt32BE(2);
  }
  const lengthType = ctb & 3;
  if (lengthType === 0) return 2 + bytes[1]!;
  if (lengthType === 1) return 3 + ((bytes[1]! << 8) | bytes[2]!);
  return 5 + bytes.readUInt32BE(1);
}

/** Whether raw openpgp (no watchdog) decrypts `bytes` to the end or fails within `windowMs`. */
export async function openpgpSettles(bytes: Uint8Array, keys: openpgp.PrivateKey[], windowMs: number): Promise<boolean> {
  const work = (async () => {
    const binaryMessage = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(bytes));
        controller.close();
      },
    });
    const message = await openpgp.readMessage({ binaryMessage });
    const { data } = await openpgp.decrypt({ message, decryptionKeys: keys, format: 'binary', config: { allowUnauthenticatedStream: true } });
    const reader = (data as ReadableStream<Uint8Array>).getReader();
    while (!(await reader.read()).done);
  })().then(
    () => true,
    () => true,
  );
  let timer: NodeJS.Timeout | undefined;
  const window = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), windowMs);
  });
  try {
    return await Promise.race([work, window]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Every single-bit flip of the 48 bytes from the encrypted data packet on (its header, the
 * random prefix and the first plaintext block); returns those that make openpgp hang, up to `limit`.
 */
export async function findHangingMutations(
  bytes: Uint8Array,
  keys: openpgp.PrivateKey[],
  options: { windowMs?: number; limit?: number; span?: number } = {},
): Promise<Mutation[]> {
  const from = encryptedDataOffset(bytes);
  const to = Math.min(bytes.length, from + (options.span ?? 48));
  const found: Mutation[] = [];
  for (let at = from; at < to; at++) {
    for (let bit = 0; bit < 8; bit++) {
      const mutated = mutate(bytes, at, 1 << bit);
      if (!(await openpgpSettles(mutated, keys, options.windowMs ?? 2000))) {
        found.push({ at, xor: 1 << bit, bytes: mutated });
        if (found.length >= (options.limit ?? Infinity)) return found;
      }
    }
  }
  return found;
}
