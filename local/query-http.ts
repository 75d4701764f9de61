/**
 * Local stand-in for the query API (lib/query-api.ts): the same handler the Lambda runs
 * (lambdas/core/query/api.ts) behind the loopback API Gateway adapter of local/ready-http.ts.
 * Local mode serves it on its `query` port; the tests on port 0. No SigV4 here: loopback only.
 * Beside the API, at `/`, a page to look at the readings with (local/query-page.ts, local/page/).
 */
import { handleQueryApiEvent } from '../lambdas/core/query/api.ts';
import { ReadingsQuery, type QueryLimits } from '../lambdas/core/query/readings-query.ts';
import type { ReadingStore } from '../lambdas/core/reading-store.ts';
import { consoleLog, type Log } from '../shared/log.ts';
import { queryPageRoutes, type QueryPageOptions } from './query-page.ts';
import { serveApiGatewayHttp } from './ready-http.ts';

export interface QueryHttpOptions {
  store: ReadingStore;
  /** The store's block zone. */
  timeZone: string;
  /** 0 = any free port. @default 0 */
  port?: number;
  /** @default 'local' */
  stage?: string;
  limits?: QueryLimits;
  log?: Log;
  clock?: () => Date;
  /** The running pipeline's per-source tallies, shown on the page (local mode passes them). */
  counters?: QueryPageOptions['counters'];
  /** How often the page reloads the counters. @default 5000 */
  pageRefreshMs?: number;
}

/**
 * Starts the query API on loopback; `url` is the stage's base URL (append /meters), `pageUrl` the
 * page's.
 */
export async function startQueryHttp(options: QueryHttpOptions): Promise<{ url: string; pageUrl: string; stop(): Promise<void> }> {
  const query = new ReadingsQuery(options.store, options.limits);
  const deps = { query, timeZone: options.timeZone, log: options.log ?? consoleLog, ...(options.clock ? { clock: options.clock } : {}) };
  const stage = options.stage ?? 'local';
  const served = await serveApiGatewayHttp({
    port: options.port ?? 0,
    stage,
    name: 'query-http',
    failure: 'the query function failed',
    handle: (event) => handleQueryApiEvent(event, deps),
    serveBeside: queryPageRoutes({
      stage,
      timeZone: options.timeZone,
      ...(options.counters ? { counters: options.counters } : {}),
      ...(options.pageRefreshMs !== undefined ? { refreshMs: options.pageRefreshMs } : {}),
    }),
  });
  return { ...served, pageUrl: `${served.url.slice(0, -stage.length)}` };
}
