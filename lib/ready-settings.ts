/**
 * The optional `ready` block of a stage in cdk.json (`meterbridge:stages.<stage>.ready`): who may
 * call the webhook, how hard, how large, and which verification handshake READY uses. Validated
 * with messages that name the key; every field has a default (DEFAULT_READY_SETTINGS).
 *
 *   "ready": { "allowedSourceCidrs": ["203.0.113.0/24"], "requireSignature": true, "throttleRateLimit": 50, "throttleBurstLimit": 100,
 *              "maxBodyBytes": 4194304, "verification": { "algorithm": "hmac-sha256", "secretEncoding": "utf8" },
 *              "archiveColdAfterDays": 90, "customDomain": { "domainName": "ready.example.com", "certificateArn": "arn:aws:acm:..." } }
 */
import {
  ANSWER_FORMATS,
  DEFAULT_VERIFICATION,
  SECRET_ENCODINGS,
  VERIFICATION_ALGORITHMS,
  type VerificationConfig,
} from '../lambdas/core/ready/handshake.ts';
import { isRecord } from './settings-values.ts';

/** A synchronous Lambda invocation carries at most 6 MB; the event wraps the body (base64: x4/3). */
const MAX_ENFORCEABLE_BODY_BYTES = 4 * 1024 * 1024;

/** READY settings of one stage. Every field has a default (see DEFAULT_READY_SETTINGS). */
export interface ReadySettings {
  /**
   * Source address ranges (CIDR) allowed to call the webhook. Empty: anyone who reaches the API
   * may call it, so signatures must then be required (or the stage must say allowUnauthenticated).
   * Ask Kamstrup for the egress ranges of READY hosting and list them here for production.
   */
  readonly allowedSourceCidrs: readonly string[];
  /**
   * Refuse callbacks without a valid signature (header x-ready-signature, HMAC-SHA256 of the body
   * with the secret's signingKey). While the secret has no signingKey, callbacks are answered 503
   * (archived, retried by READY) and WebhookErrors counts them. May be false only with
   * allowedSourceCidrs or allowUnauthenticated.
   */
  readonly requireSignature: boolean;
  /**
   * Says in so many words that anyone who reaches the API may store readings: the only way to
   * deploy with requireSignature false and no allowedSourceCidrs (a test stage, never production).
   */
  readonly allowUnauthenticated: boolean;
  /** Stage throttling: steady requests per second. */
  readonly throttleRateLimit: number;
  /** Stage throttling: burst bucket size. */
  readonly throttleBurstLimit: number;
  /** Largest body the function accepts (413 above it, original archived). At most 4 MiB. */
  readonly maxBodyBytes: number;
  /** Verification handshake algorithm (see lambdas/core/ready/handshake.ts). */
  readonly verification: VerificationConfig;
  /** Days after which archived deliveries move to Glacier Instant Retrieval. */
  readonly archiveColdAfterDays: number;
  /** Optional custom domain (TLS 1.2 security policy) in front of the API. */
  readonly customDomain?: { readonly domainName: string; readonly certificateArn: string };
}

export const DEFAULT_READY_SETTINGS: ReadySettings = {
  allowedSourceCidrs: [],
  requireSignature: true,
  allowUnauthenticated: false,
  throttleRateLimit: 50,
  throttleBurstLimit: 100,
  maxBodyBytes: MAX_ENFORCEABLE_BODY_BYTES,
  verification: DEFAULT_VERIFICATION,
  archiveColdAfterDays: 90,
};

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$|^[0-9a-fA-F:]+\/\d{1,3}$/;

/** Validates the `ready` block of a stage; `key` is its context path for messages. Absent block or key: the default. */
export function parseReadySettings(raw: unknown, key: string): ReadySettings {
  if (raw === undefined) return DEFAULT_READY_SETTINGS;
  if (!isRecord(raw)) throw new Error(`${key}: must be an object`);
  const known = [
    'allowedSourceCidrs',
    'requireSignature',
    'allowUnauthenticated',
    'throttleRateLimit',
    'throttleBurstLimit',
    'maxBodyBytes',
    'verification',
    'archiveColdAfterDays',
    'customDomain',
  ];
  for (const name of Object.keys(raw)) if (!known.includes(name)) throw new Error(`${key}.${name}: unknown setting; known: ${known.join(', ')}`);

  const cidrs = raw.allowedSourceCidrs ?? [];
  if (!Array.isArray(cidrs) || !cidrs.every((c) => typeof c === 'string' && CIDR.test(c))) {
    throw new Error(`${key}.allowedSourceCidrs: must be a list of CIDR ranges such as "203.0.113.0/24" ([] = open)`);
  }
  const flag = (name: string, fallback: boolean): boolean => {
    const v = raw[name] ?? fallback;
    if (typeof v !== 'boolean') throw new Error(`${key}.${name}: ${JSON.stringify(v)} must be true or false`);
    return v;
  };
  const requireSignature = flag('requireSignature', DEFAULT_READY_SETTINGS.requireSignature);
  const allowUnauthenticated = flag('allowUnauthenticated', DEFAULT_READY_SETTINGS.allowUnauthenticated);
  const open = unauthenticatedCallers({ requireSignature, allowUnauthenticated, allowedSourceCidrs: cidrs });
  if (open) throw new Error(`${key}: ${open}`);
  const positive = (name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number => {
    const v = raw[name] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
      throw new Error(`${key}.${name}: ${JSON.stringify(v)} must be a whole number from 1 to ${max}`);
    return v;
  };
  const verificationRaw = raw.verification ?? {};
  if (!isRecord(verificationRaw)) throw new Error(`${key}.verification: must be an object`);
  const choice = <T extends string>(name: string, options: readonly T[], fallback: T): T => {
    const v = verificationRaw[name] ?? fallback;
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v))
      throw new Error(`${key}.verification.${name}: ${JSON.stringify(v)} must be one of ${options.join(', ')}`);
    return v as T;
  };
  const customDomain = raw.customDomain;
  if (
    customDomain !== undefined &&
    (!isRecord(customDomain) || typeof customDomain.domainName !== 'string' || typeof customDomain.certificateArn !== 'string')
  ) {
    throw new Error(`${key}.customDomain: must be {"domainName": "...", "certificateArn": "arn:aws:acm:..."}`);
  }
  return {
    allowedSourceCidrs: cidrs as string[],
    requireSignature,
    allowUnauthenticated,
    throttleRateLimit: positive('throttleRateLimit', DEFAULT_READY_SETTINGS.throttleRateLimit, 10_000),
    throttleBurstLimit: positive('throttleBurstLimit', DEFAULT_READY_SETTINGS.throttleBurstLimit, 5_000),
    maxBodyBytes: positive('maxBodyBytes', DEFAULT_READY_SETTINGS.maxBodyBytes, MAX_ENFORCEABLE_BODY_BYTES),
    verification: {
      algorithm: choice('algorithm', VERIFICATION_ALGORITHMS, DEFAULT_VERIFICATION.algorithm),
      secretEncoding: choice('secretEncoding', SECRET_ENCODINGS, DEFAULT_VERIFICATION.secretEncoding),
      answerFormat: choice('answerFormat', ANSWER_FORMATS, DEFAULT_VERIFICATION.answerFormat),
    },
    archiveColdAfterDays: positive('archiveColdAfterDays', DEFAULT_READY_SETTINGS.archiveColdAfterDays, 3650),
    ...(customDomain
      ? { customDomain: { domainName: customDomain.domainName as string, certificateArn: customDomain.certificateArn as string } }
      : {}),
  };
}

/**
 * Why these settings would let anyone who reaches the API store readings (no signature required,
 * no source ranges, and no allowUnauthenticated saying so), or undefined. Checked by the parser
 * and by the construct, so synth fails either way.
 */
export function unauthenticatedCallers(
  ready: Pick<ReadySettings, 'requireSignature' | 'allowUnauthenticated' | 'allowedSourceCidrs'>,
): string | undefined {
  if (ready.requireSignature || ready.allowedSourceCidrs.length > 0 || ready.allowUnauthenticated) return undefined;
  return (
    'requireSignature is false and allowedSourceCidrs is empty, so anyone who reaches the API could store readings. ' +
    "Keep requireSignature (and put the signing key READY issued into the secret), or list READY's egress ranges in allowedSourceCidrs, " +
    'or, for a stage where that is acceptable, say so with "allowUnauthenticated": true'
  );
}
