/**
 * Local mode's page beside the query API (local/query-http.ts): static files from local/page/
 * (HTML, vanilla JS, CSS; no build step, nothing from the network) at `/`, the page's settings at
 * /page/config.json and the running pipeline's per-source counters at /page/counters.json. The
 * page reads meters and readings from the query API itself, as any client would; only the
 * counters are local-only (in AWS they are CloudWatch's, not the API's).
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MetricSource } from '../lambdas/core/metric-catalog.ts';
import type { SourceTally } from './progress.ts';

/** The files the page is made of, by the path they are served under. */
const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/page/page.js': { file: 'page.js', type: 'text/javascript; charset=utf-8' },
  '/page/page.css': { file: 'page.css', type: 'text/css; charset=utf-8' },
};

const PAGE_DIR = new URL('./page/', import.meta.url);

export interface QueryPageOptions {
  /** The query API's stage (its path prefix). */
  stage: string;
  /** The store's block zone: the page's days are its local days, like the store's blocks. */
  timeZone: string;
  /** The running pipeline's tallies (local mode: tallyMetrics over the local CloudWatch); the page says when there are none. */
  counters?: () => Promise<Record<MetricSource, SourceTally>>;
  /** How often the page reloads the counters. @default 5000 */
  refreshMs?: number;
}

function send(response: ServerResponse, status: number, type: string, body: string | Buffer): void {
  response.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    // Everything the page uses comes from here: no inline script, no CDN.
    'content-security-policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
  });
  response.end(body);
}

/** The handler for requests outside the API's stage: true when it answered. */
export function queryPageRoutes(options: QueryPageOptions): (request: IncomingMessage, response: ServerResponse, url: URL) => Promise<boolean> {
  const json = 'application/json';
  return async (request, response, url) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false;
    const served = FILES[url.pathname];
    if (served) {
      send(response, 200, served.type, await readFile(new URL(served.file, PAGE_DIR)));
      return true;
    }
    if (url.pathname === '/page/config.json') {
      const config = { api: `/${options.stage}`, timeZone: options.timeZone, refreshMs: options.refreshMs ?? 5000, counters: !!options.counters };
      send(response, 200, json, JSON.stringify(config));
      return true;
    }
    if (url.pathname === '/page/counters.json') {
      if (!options.counters) {
        send(response, 404, json, JSON.stringify({ error: { code: 'no_counters', message: 'no running pipeline is tallied here' } }));
        return true;
      }
      send(response, 200, json, JSON.stringify({ at: new Date().toISOString(), sources: await options.counters() }));
      return true;
    }
    return false;
  };
}
