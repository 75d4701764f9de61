/**
 * PKCS#10 certificate signing requests (RFC 2986), shared by the operator CLI
 * (`meterbridge device provision`) and the gateway (`meterbridge-gateway keygen`, where the key
 * is born on the device and only the CSR leaves it). Node can make keys and sign, but has no CSR
 * builder or parser; the structures are small enough to encode and read here.
 */
import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

export class CsrError extends Error {
  override name = 'CsrError';
}

/**
 * A PKCS#10 CertificationRequest (RFC 2986) for an EC P-256 key, subject CN=<commonName>,
 * signed ecdsa-with-SHA256. Node has no CSR builder; the structure is small enough to encode:
 *
 *   CertificationRequest ::= SEQUENCE {
 *     certificationRequestInfo SEQUENCE {
 *       version       INTEGER 0,
 *       subject       Name (SEQUENCE OF SET OF SEQUENCE { OID 2.5.4.3, UTF8String }),
 *       subjectPKInfo SubjectPublicKeyInfo (Node's SPKI DER export, as is),
 *       attributes    [0] IMPLICIT SET OF Attribute -- empty
 *     },
 *     signatureAlgorithm SEQUENCE { OID 1.2.840.10045.4.3.2 }  -- no parameters for ECDSA (RFC 5758)
 *     signature          BIT STRING (0 unused bits || DER Ecdsa-Sig-Value)
 *   }
 *
 * The CN is cosmetic to IoT Core (the certificates it issues say "AWS IoT Certificate"), but it
 * names the request for anyone reading it. UTF8String because '_' is not a PrintableString character.
 */
export function buildCsr(commonName: string, privateKey: KeyObject): Buffer {
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    // The signature algorithm below is fixed to ECDSA with SHA-256 on P-256.
    throw new CsrError('buildCsr needs an EC P-256 (prime256v1) private key');
  }
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const subject = der.sequence(der.set(der.sequence(der.oid('2.5.4.3'), der.utf8String(commonName))));
  const info = der.sequence(der.integer(0), subject, spki, der.tlv(0xa0));
  const signature = sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
  return der.sequence(info, der.sequence(der.oid('1.2.840.10045.4.3.2')), der.bitString(signature));
}

/** PEM armour with 64-character lines (RFC 7468). */
export function toPem(label: string, body: Buffer): string {
  const lines = body.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The minimal DER encoder buildCsr needs (definite lengths, single-byte tags). */
export const der = {
  length(n: number): Buffer {
    if (n < 0x80) return Buffer.from([n]);
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
    return Buffer.from([0x80 | bytes.length, ...bytes]);
  },
  tlv(tag: number, ...content: Buffer[]): Buffer {
    const body = Buffer.concat(content);
    return Buffer.concat([Buffer.from([tag]), der.length(body.length), body]);
  },
  sequence: (...content: Buffer[]): Buffer => der.tlv(0x30, ...content),
  set: (...content: Buffer[]): Buffer => der.tlv(0x31, ...content),
  /** Small non-negative integers only (the CSR version). */
  integer(value: number): Buffer {
    if (!Number.isInteger(value) || value < 0 || value > 127) throw new RangeError('der.integer supports 0..127');
    return der.tlv(0x02, Buffer.from([value]));
  },
  utf8String: (text: string): Buffer => der.tlv(0x0c, Buffer.from(text, 'utf8')),
  bitString: (bytes: Buffer): Buffer => der.tlv(0x03, Buffer.from([0]), bytes),
  oid(dotted: string): Buffer {
    const arcs = dotted.split('.').map(Number);
    const [first, second, ...rest] = arcs;
    if (first === undefined || second === undefined || arcs.some((a) => !Number.isInteger(a) || a < 0)) throw new RangeError(`bad OID ${dotted}`);
    const bytes: number[] = [];
    for (const arc of [first * 40 + second, ...rest]) {
      // Base 128, high bit set on every byte but the last.
      const chunk: number[] = [arc % 128];
      for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v % 128) | 0x80);
      bytes.push(...chunk);
    }
    return der.tlv(0x06, Buffer.from(bytes));
  },
};

const OID_COMMON_NAME = '2.5.4.3';
const SIGNATURE_HASH: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384', // ecdsa-with-SHA384
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
};

interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset after the content. */
  end: number;
}

function readTlv(bytes: Buffer, offset: number, limit = bytes.length): Tlv {
  if (offset + 2 > limit) throw new CsrError('truncated DER');
  const tag = bytes[offset]!;
  let length = bytes[offset + 1]!;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || contentStart + count > limit) throw new CsrError('bad DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[contentStart + i]!;
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw new CsrError('truncated DER');
  return { tag, start: offset, contentStart, end };
}

function children(bytes: Buffer, parent: Tlv): Tlv[] {
  const list: Tlv[] = [];
  for (let offset = parent.contentStart; offset < parent.end;) {
    const child = readTlv(bytes, offset, parent.end);
    list.push(child);
    offset = child.end;
  }
  return list;
}

function decodeOid(bytes: Buffer): string {
  const arcs: number[] = [];
  let value = 0;
  for (const byte of bytes) {
    value = value * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else arcs.push(value);
      value = 0;
    }
  }
  return arcs.join('.');
}

export interface ParsedCsr {
  /** Subject CN, if the request names one. */
  commonName: string | undefined;
  publicKey: KeyObject;
  /** The request is signed by the key it carries (proof of possession). */
  signatureValid: boolean;
}

/** Reads a PEM CSR: subject CN, public key, and whether its self-signature holds. Throws CsrError on anything malformed. */
export function parseCsr(pem: string): ParsedCsr {
  const match = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([\s\S]+?)-----END (?:NEW )?CERTIFICATE REQUEST-----/.exec(pem);
  if (!match) throw new CsrError('not a PEM certificate request (no BEGIN CERTIFICATE REQUEST block)');
  const bytes = Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64');
  try {
    const outer = readTlv(bytes, 0);
    const [info, algorithm, signature] = children(bytes, outer);
    if (!info || !algorithm || !signature || outer.tag !== 0x30 || info.tag !== 0x30 || algorithm.tag !== 0x30 || signature.tag !== 0x03)
      throw new CsrError('not a CertificationRequest structure');
    const [, subject, spki] = children(bytes, info);
    if (!subject || !spki) throw new CsrError('CertificationRequestInfo lacks subject or public key');
    let commonName: string | undefined;
    for (const rdn of children(bytes, subject)) {
      for (const attribute of children(bytes, rdn)) {
        const [oid, value] = children(bytes, attribute);
        if (oid && value && decodeOid(bytes.subarray(oid.contentStart, oid.end)) === OID_COMMON_NAME)
          commonName = bytes.subarray(value.contentStart, value.end).toString('utf8');
      }
    }
    const publicKey = createPublicKey({ key: bytes.subarray(spki.start, spki.end), format: 'der', type: 'spki' });
    const [algorithmOid] = children(bytes, algorithm);
    const hash = algorithmOid ? SIGNATURE_HASH[decodeOid(bytes.subarray(algorithmOid.contentStart, algorithmOid.end))] : undefined;
    if (!hash) throw new CsrError('unsupported signature algorithm (expected ECDSA or RSA with SHA-256/384)');
    const signatureBytes = bytes.subarray(signature.contentStart + 1, signature.end); // first byte: unused bits
    const signatureValid = verify(hash, bytes.subarray(info.start, info.end), { key: publicKey, dsaEncoding: 'der' }, signatureBytes);
    return { commonName, publicKey, signatureValid };
  } catch (error) {
    if (error instanceof CsrError) throw error;
    throw new CsrError(`unreadable certificate request: ${(error as Error).message}`);
  }
}
