/**
 * OAuth2 client credentials for READY API Access (Kamstrup issues tenant id, client id and client
 * secret; the tenant id points at an Azure AD / Entra ID tenant, hence the default token URL).
 * The token is cached until shortly before it expires, and concurrent callers share one request.
 */
import { fetchWithRetry, type RetryOptions } from './http-retry.ts';

/** Azure AD v2 token endpoint of a tenant. */
export function azureAdTokenUrl(tenantId: string): string {
  return `https://login.microsoftonline.com/${encodeURIComponent(tenantId)}/oauth2/v2.0/token`;
}

export interface ClientCredentials {
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  /** e.g. `<api>/.default` for Azure AD v2; omitted from the request when undefined. */
  scope?: string;
}

export class OAuthError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly error?: string,
  ) {
    super(message);
    this.name = 'OAuthError';
  }
}

export interface TokenProviderOptions {
  credentials: ClientCredentials;
  retry?: RetryOptions;
  /** @default Date.now */
  now?: () => number;
  /** Renew this long before expiry, so a token never expires in flight. @default 60_000 */
  earlyRefreshMs?: number;
}

export class TokenProvider {
  private cached: { token: string; refreshAt: number } | undefined;
  private inflight: Promise<string> | undefined;
  /** Token requests sent (for tests and the CLI's verbose output). */
  requests = 0;

  constructor(private readonly options: TokenProviderOptions) {}

  async token(): Promise<string> {
    const now = (this.options.now ?? Date.now)();
    if (this.cached && now < this.cached.refreshAt) return this.cached.token;
    this.inflight ??= this.fetchToken().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** Forget the cached token (the API answered 401 to it). */
  invalidate(): void {
    this.cached = undefined;
  }

  private async fetchToken(): Promise<string> {
    const { credentials } = this.options;
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: credentials.clientId, client_secret: credentials.clientSecret });
    if (credentials.scope) form.set('scope', credentials.scope);
    this.requests += 1;
    const response = await fetchWithRetry(
      credentials.tokenUrl,
      { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, body: form.toString() },
      this.options.retry,
    );
    const text = await response.text();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // reported below without echoing the body (it may hold anything)
    }
    if (!response.ok) {
      const code = typeof body.error === 'string' ? body.error : undefined;
      const description = typeof body.error_description === 'string' ? body.error_description.split('\n')[0] : undefined;
      throw new OAuthError(
        `token endpoint answered ${response.status}${code ? ` ${code}` : ''}${description ? `: ${description}` : ''}`,
        response.status,
        code,
      );
    }
    const token = body.access_token;
    const expiresIn = Number(body.expires_in);
    if (typeof token !== 'string' || token === '' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw new OAuthError('token endpoint answered 200 without access_token and expires_in', response.status);
    }
    const issuedAt = (this.options.now ?? Date.now)();
    const early = Math.min(this.options.earlyRefreshMs ?? 60_000, (expiresIn * 1000) / 2);
    this.cached = { token, refreshAt: issuedAt + expiresIn * 1000 - early };
    return token;
  }
}
