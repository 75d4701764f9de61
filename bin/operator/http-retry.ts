/**
 * HTTP calls to Kamstrup's token endpoint and API with retries: exponential backoff with full
 * jitter on 429 and 5xx (and on network errors), honouring Retry-After when the server sends it.
 * Sleep, clock and randomness are injected so tests run against real HTTP servers without
 * waiting for real seconds.
 */
export interface RetryOptions {
  /** Attempts in all, the first included. @default 5 */
  maxAttempts?: number;
  /** Backoff base: attempt n waits up to base x 2^(n-1). @default 500 */
  baseDelayMs?: number;
  /** Upper bound of one backoff wait. @default 20_000 */
  maxDelayMs?: number;
  /**
   * Longest Retry-After we honour; a server asking for longer fails the call now rather than
   * blocking an operator's terminal for minutes. @default 120_000
   */
  maxRetryAfterMs?: number;
  /** @default setTimeout-based */
  sleep?: (ms: number) => Promise<void>;
  /** @default Math.random */
  random?: () => number;
  /** For Retry-After given as an HTTP date. @default Date.now */
  now?: () => number;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Called before each wait (for logs and tests). */
  onRetry?: (info: { attempt: number; status?: number; delayMs: number; reason: string }) => void;
}

export class HttpRetryError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'HttpRetryError';
  }
}

const RETRYABLE = new Set([429, 500, 502, 503, 504]);

/** Milliseconds a Retry-After header asks for (delta-seconds or HTTP date), or undefined. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/**
 * fetch with retries. `init.body` must be re-sendable (a string or URLSearchParams), which every
 * call in this module satisfies. Returns the last response, retryable or not, once attempts run out.
 */
export async function fetchWithRetry(url: string, init: RequestInit, options: RetryOptions = {}): Promise<Response> {
  const maxAttempts = options.maxAttempts ?? 5;
  const base = options.baseDelayMs ?? 500;
  const cap = options.maxDelayMs ?? 20_000;
  const maxRetryAfter = options.maxRetryAfterMs ?? 120_000;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const doFetch = options.fetch ?? fetch;

  for (let attempt = 1; ; attempt += 1) {
    let response: Response | undefined;
    let networkError: unknown;
    try {
      response = await doFetch(url, init);
    } catch (error) {
      networkError = error;
    }
    const retryable = response === undefined || RETRYABLE.has(response.status);
    if (!retryable) return response!;
    if (attempt >= maxAttempts) {
      if (response) return response;
      throw new HttpRetryError(
        `${init.method ?? 'GET'} ${new URL(url).origin}${new URL(url).pathname} failed after ${attempt} attempts: ${String(networkError)}`,
      );
    }
    const backoff = Math.round(random() * Math.min(cap, base * 2 ** (attempt - 1)));
    const asked = response ? parseRetryAfter(response.headers.get('retry-after'), now()) : undefined;
    if (asked !== undefined && asked > maxRetryAfter) {
      throw new HttpRetryError(
        `server asked to retry after ${Math.round(asked / 1000)} s (more than the ${Math.round(maxRetryAfter / 1000)} s we wait)`,
        response?.status,
      );
    }
    // Retry-After is the server's floor; jitter on top keeps many clients from returning in step.
    const delayMs = asked !== undefined ? asked + Math.round(random() * Math.min(1000, base)) : backoff;
    options.onRetry?.({ attempt, status: response?.status, delayMs, reason: response ? `HTTP ${response.status}` : String(networkError) });
    // Drain the body so the connection can be reused.
    await response?.arrayBuffer().catch(() => undefined);
    await sleep(delayMs);
  }
}
