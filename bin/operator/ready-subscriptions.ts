/**
 * Client of READY API Access webhook subscriptions: create, list, delete.
 *
 * The paths and bodies are ASSUMED (the Swagger documents at api-eu/api-us.ready.kamstrup.com are
 * behind a customer login); they are collected here and in docs/ready.md so that adapting to the real
 * API is one edit:
 *
 *   POST   {api}/api/v1/webhooks/subscriptions        {"resource","webhookUri","statusUri"} -> 201 subscription
 *   GET    {api}/api/v1/webhooks/subscriptions        -> 200 [subscription] (or {"items": [...]})
 *   DELETE {api}/api/v1/webhooks/subscriptions/{id}   -> 204
 *
 *   subscription = {"subscriptionId" (or "id"), "resource", "webhookUri", "statusUri", "status"}
 */
import { z } from 'zod';
import { fetchWithRetry, type RetryOptions } from './http-retry.ts';
import type { TokenProvider } from './ready-oauth.ts';

export const DEFAULT_READY_API = 'https://api-eu.ready.kamstrup.com';
export const SUBSCRIPTIONS_PATH = '/api/v1/webhooks/subscriptions';

const subscriptionSchema = z
  .looseObject({
    subscriptionId: z.string().optional(),
    id: z.string().optional(),
    resource: z.string().optional(),
    webhookUri: z.string().optional(),
    statusUri: z.string().optional(),
    status: z.string().optional(),
  })
  .transform((s) => ({
    subscriptionId: s.subscriptionId ?? s.id ?? '',
    resource: s.resource,
    webhookUri: s.webhookUri,
    statusUri: s.statusUri,
    status: s.status,
  }));

export type Subscription = z.output<typeof subscriptionSchema>;

export class ReadyApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'ReadyApiError';
  }
}

export interface SubscriptionClientOptions {
  /** @default DEFAULT_READY_API */
  apiUrl?: string;
  tokens: TokenProvider;
  retry?: RetryOptions;
}

export class ReadySubscriptionClient {
  private readonly apiUrl: string;

  constructor(private readonly options: SubscriptionClientOptions) {
    this.apiUrl = (options.apiUrl ?? DEFAULT_READY_API).replace(/\/+$/, '');
  }

  async subscribe(request: { resource: string; webhookUri: string; statusUri: string }): Promise<Subscription> {
    const body = await this.call('POST', SUBSCRIPTIONS_PATH, request);
    return parse(body);
  }

  async list(): Promise<Subscription[]> {
    const body = await this.call('GET', SUBSCRIPTIONS_PATH);
    const items = Array.isArray(body) ? body : (body as { items?: unknown } | undefined)?.items;
    if (!Array.isArray(items)) throw new ReadyApiError('subscription list is neither an array nor {"items": [...]}', 200);
    return items.map(parse);
  }

  async unsubscribe(subscriptionId: string): Promise<void> {
    await this.call('DELETE', `${SUBSCRIPTIONS_PATH}/${encodeURIComponent(subscriptionId)}`);
  }

  /** One API call; a 401 gets one retry with a fresh token (the cached one was revoked early). */
  private async call(method: string, path: string, json?: unknown): Promise<unknown> {
    for (let attempt = 1; ; attempt += 1) {
      const token = await this.options.tokens.token();
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json' };
      if (json !== undefined) headers['content-type'] = 'application/json';
      const response = await fetchWithRetry(
        `${this.apiUrl}${path}`,
        { method, headers, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) },
        this.options.retry,
      );
      if (response.status === 401 && attempt === 1) {
        await response.arrayBuffer();
        this.options.tokens.invalidate();
        continue;
      }
      const text = await response.text();
      if (!response.ok) {
        throw new ReadyApiError(`${method} ${path} answered ${response.status}${text ? `: ${text.slice(0, 300)}` : ''}`, response.status);
      }
      if (text === '') return undefined;
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new ReadyApiError(`${method} ${path} answered ${response.status} with a body that is not JSON`, response.status);
      }
    }
  }
}

function parse(value: unknown): Subscription {
  const parsed = subscriptionSchema.safeParse(value);
  if (!parsed.success || parsed.data.subscriptionId === '') throw new ReadyApiError('subscription without subscriptionId/id in the API answer', 200);
  return parsed.data;
}
