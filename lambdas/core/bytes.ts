/** A Buffer view of the same bytes: Buffer.from(uint8Array) would copy every chunk of a file. */
export function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}
