/**
 * DynamoDB's item size, computed the way DynamoDB bills it: attribute name bytes plus value bytes
 * (numbers by significant digits, maps and lists with 3 bytes of overhead and 1 byte per element).
 * Used to estimate the write units of a failed conditional write, which DynamoDB charges but does
 * not report, and by the bench for bytes stored per reading.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';

export function itemSizeBytes(item: Record<string, AttributeValue>): number {
  let size = 0;
  for (const [name, value] of Object.entries(item)) size += utf8Length(name) + valueSize(value);
  return size;
}

/** Write units a write of an item this size consumes: 1 per started KB, at least 1. */
export function writeUnitsFor(sizeBytes: number): number {
  return Math.max(1, Math.ceil(sizeBytes / 1024));
}

function valueSize(value: AttributeValue): number {
  if (value.S !== undefined) return utf8Length(value.S);
  if (value.N !== undefined) return numberSize(value.N);
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.B !== undefined) return value.B.byteLength;
  if (value.M !== undefined) {
    let size = 3;
    for (const [name, inner] of Object.entries(value.M)) size += 1 + utf8Length(name) + valueSize(inner);
    return size;
  }
  if (value.L !== undefined) return 3 + value.L.reduce((sum, inner) => sum + 1 + valueSize(inner), 0);
  if (value.SS !== undefined) return value.SS.reduce((sum, s) => sum + utf8Length(s), 0);
  if (value.NS !== undefined) return value.NS.reduce((sum, n) => sum + numberSize(n), 0);
  if (value.BS !== undefined) return value.BS.reduce((sum, b) => sum + b.byteLength, 0);
  return 0;
}

/** Numbers are stored as up to 38 significant digits, two digits per byte, plus one byte. */
function numberSize(text: string): number {
  const digits = text.replace(/^-/, '').replace(/e.*$/i, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  return Math.ceil(Math.max(1, digits.length) / 2) + 1;
}

function utf8Length(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}
