/**
 * The READY credentials, kept in one Secrets Manager secret (JSON):
 *
 *   { "tenantId": "...", "clientId": "...", "clientSecret": "...", "signingKey": "..." }
 *
 * `clientSecret` answers the verification handshake and authenticates the subscription client;
 * `signingKey` (optional) switches on signature checks of incoming callbacks. Read once per
 * container and cached for a few minutes, so a rotated secret is picked up without a deploy
 * and Secrets Manager is not called per request.
 */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { z } from 'zod';

export const readyCredentialsSchema = z.object({
  tenantId: z.string().optional(),
  clientId: z.string().optional(),
  clientSecret: z.string().min(1, 'is empty'),
  signingKey: z.string().optional(),
});

export type ReadyCredentials = z.infer<typeof readyCredentialsSchema>;

export class ReadySecretError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ReadySecretError';
  }
}

/** Parses the secret string; the message names the field but never echoes a value. */
export function parseReadyCredentials(secretString: string): ReadyCredentials {
  let json: unknown;
  try {
    json = JSON.parse(secretString);
  } catch {
    throw new ReadySecretError('the READY secret is not JSON ({"tenantId","clientId","clientSecret","signingKey"})');
  }
  const parsed = readyCredentialsSchema.safeParse(json);
  if (!parsed.success)
    throw new ReadySecretError(`the READY secret is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return { ...parsed.data, ...(parsed.data.signingKey === '' ? { signingKey: undefined } : {}) };
}

export interface CredentialsSource {
  get(): Promise<ReadyCredentials>;
}

/** Fixed credentials (tests, local mode). */
export function staticCredentials(credentials: ReadyCredentials): CredentialsSource {
  return { get: async () => credentials };
}

export class SecretsManagerCredentials implements CredentialsSource {
  private cached: { value: ReadyCredentials; until: number } | undefined;
  private inflight: Promise<ReadyCredentials> | undefined;

  constructor(
    private readonly options: {
      client: SecretsManagerClient;
      secretId: string;
      /** @default 300_000 (5 minutes) */
      ttlMs?: number;
      clock?: () => number;
    },
  ) {}

  async get(): Promise<ReadyCredentials> {
    const now = this.options.clock?.() ?? Date.now();
    if (this.cached && now < this.cached.until) return this.cached.value;
    // Concurrent requests in one container share one GetSecretValue.
    this.inflight ??= this.load(now).finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async load(now: number): Promise<ReadyCredentials> {
    let secretString: string | undefined;
    try {
      const response = await this.options.client.send(new GetSecretValueCommand({ SecretId: this.options.secretId }));
      secretString = response.SecretString;
    } catch (error) {
      throw new ReadySecretError(`could not read the READY secret ${this.options.secretId}: ${error instanceof Error ? error.name : String(error)}`, {
        cause: error,
      });
    }
    if (secretString === undefined) throw new ReadySecretError(`the READY secret ${this.options.secretId} has no SecretString`);
    const value = parseReadyCredentials(secretString);
    this.cached = { value, until: now + (this.options.ttlMs ?? 300_000) };
    return value;
  }
}
