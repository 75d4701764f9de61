/**
 * The READY subscription verification handshake.
 *
 * What Kamstrup documents (data sheet "READY – API Access"): a webhook subscription is confirmed
 * "by taking a verification token and hashing it using the client secret and SHA256"; the hash
 * must be Base64. Nothing public says whether that is an HMAC or a plain hash of a concatenation,
 * nor how the secret (itself "a Base64 value") is turned into key bytes. So the algorithm is a
 * configured choice, with HMAC-SHA256(key = client secret, message = token) as the default, and
 * the request and response shapes we assume are written down in docs/ready.md.
 */
import { createHash, createHmac } from 'node:crypto';
import { z } from 'zod';

/** How the verification answer is computed. */
export const VERIFICATION_ALGORITHMS = ['hmac-sha256', 'sha256-token-secret'] as const;
export type VerificationAlgorithm = (typeof VERIFICATION_ALGORITHMS)[number];

/**
 * How the client secret becomes key bytes: `utf8` uses the characters as given (what most .NET
 * samples do with `Encoding.UTF8.GetBytes(secret)`), `base64` decodes the secret first (READY
 * issues it as a Base64 value, so the raw bytes are a plausible reading too).
 */
export const SECRET_ENCODINGS = ['utf8', 'base64'] as const;
export type SecretEncoding = (typeof SECRET_ENCODINGS)[number];

/** How the answer is sent back: the Base64 string as the whole text/plain body, or JSON. */
export const ANSWER_FORMATS = ['text', 'json'] as const;
export type AnswerFormat = (typeof ANSWER_FORMATS)[number];

export interface VerificationConfig {
  /** @default 'hmac-sha256' */
  algorithm: VerificationAlgorithm;
  /** @default 'utf8' */
  secretEncoding: SecretEncoding;
  /** @default 'text' */
  answerFormat: AnswerFormat;
}

export const DEFAULT_VERIFICATION: VerificationConfig = { algorithm: 'hmac-sha256', secretEncoding: 'utf8', answerFormat: 'text' };

const configSchema = z.strictObject({
  algorithm: z.enum(VERIFICATION_ALGORITHMS).default(DEFAULT_VERIFICATION.algorithm),
  secretEncoding: z.enum(SECRET_ENCODINGS).default(DEFAULT_VERIFICATION.secretEncoding),
  answerFormat: z.enum(ANSWER_FORMATS).default(DEFAULT_VERIFICATION.answerFormat),
});

/**
 * Reads the configuration from the environment variables the CDK construct sets
 * (READY_VERIFICATION_ALGORITHM, READY_SECRET_ENCODING, READY_VERIFICATION_ANSWER). An unknown
 * value fails at cold start with the variable's name rather than answering every handshake wrong.
 */
export function verificationConfigFromEnv(env: NodeJS.ProcessEnv): VerificationConfig {
  const raw = {
    algorithm: env.READY_VERIFICATION_ALGORITHM || undefined,
    secretEncoding: env.READY_SECRET_ENCODING || undefined,
    answerFormat: env.READY_VERIFICATION_ANSWER || undefined,
  };
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const names: Record<string, string> = {
      algorithm: 'READY_VERIFICATION_ALGORITHM',
      secretEncoding: 'READY_SECRET_ENCODING',
      answerFormat: 'READY_VERIFICATION_ANSWER',
    };
    throw new Error(parsed.error.issues.map((issue) => `${names[String(issue.path[0])] ?? issue.path.join('.')}: ${issue.message}`).join('; '));
  }
  return parsed.data;
}

export class SecretEncodingError extends Error {
  constructor() {
    super('the READY client secret is configured as base64 but is not valid Base64');
    this.name = 'SecretEncodingError';
  }
}

function secretBytes(secret: string, encoding: SecretEncoding): Buffer {
  if (encoding === 'utf8') return Buffer.from(secret, 'utf8');
  // Buffer.from(..., 'base64') silently skips invalid characters; a typo in the secret must not
  // turn into a different key that fails every handshake without saying why.
  const normalized = secret.trim();
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(normalized) || normalized.length === 0) throw new SecretEncodingError();
  return Buffer.from(normalized, normalized.includes('-') || normalized.includes('_') ? 'base64url' : 'base64');
}

/** The Base64 answer to a verification token. */
export function verificationAnswer(token: string, clientSecret: string, config: VerificationConfig = DEFAULT_VERIFICATION): string {
  const key = secretBytes(clientSecret, config.secretEncoding);
  if (config.algorithm === 'hmac-sha256') return createHmac('sha256', key).update(token, 'utf8').digest('base64');
  return createHash('sha256')
    .update(Buffer.concat([Buffer.from(token, 'utf8'), key]))
    .digest('base64');
}

/**
 * Whether the handshake would answer with the key that signs callbacks: then anyone could post
 * a body as a verification token and get its signature back. Compared as the key bytes each side
 * uses (the signature HMACs with the signing key's UTF-8 bytes). A secret that is not valid in
 * the configured encoding signs nothing, so it is not a match (verificationAnswer refuses it).
 */
export function handshakeKeyIsSigningKey(
  credentials: { clientSecret: string; signingKey?: string },
  config: VerificationConfig = DEFAULT_VERIFICATION,
): boolean {
  if (!credentials.signingKey) return false;
  const signingKey = Buffer.from(credentials.signingKey, 'utf8');
  if (credentials.clientSecret === credentials.signingKey) return true;
  try {
    return secretBytes(credentials.clientSecret, config.secretEncoding).equals(signingKey);
  } catch {
    return false;
  }
}

/** Upper bound on a token we agree to hash: anything longer is not a verification token. */
export const MAX_TOKEN_LENGTH = 4096;
