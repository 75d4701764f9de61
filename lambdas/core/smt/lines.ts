/**
 * Text lines from a byte stream, for parsers that must not hold a whole file (SMT files reach
 * gigabytes). Faster than node:readline on large inputs because it splits whole chunks at once.
 */
import { StringDecoder } from 'node:string_decoder';

/** Longest line accepted: an LSE data record of a day of 1-minute triples stays far below this. */
const MAX_LINE_CHARS = 1_000_000;

/**
 * Yields the lines of each chunk as one array (one await per chunk rather than per line), without
 * their `\n` / `\r\n`; a byte-order mark at the start is dropped.
 */
export async function* lineBatches(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<string[]> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  let first = true;
  for await (const chunk of source) {
    let text = rest + (typeof chunk === 'string' ? chunk : decoder.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    if (first && text.length > 0) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      first = false;
    }
    const batch: string[] = [];
    let start = 0;
    for (let end = text.indexOf('\n', start); end !== -1; end = text.indexOf('\n', start)) {
      batch.push(text.charCodeAt(end - 1) === 13 ? text.slice(start, end - 1) : text.slice(start, end));
      start = end + 1;
    }
    rest = text.slice(start);
    if (batch.length > 0) yield batch;
    if (rest.length > MAX_LINE_CHARS) throw new Error(`a line longer than ${MAX_LINE_CHARS} characters: not a text file of a known layout`);
  }
  rest += decoder.end();
  if (rest.length > 0) yield [rest.endsWith('\r') ? rest.slice(0, -1) : rest];
}
