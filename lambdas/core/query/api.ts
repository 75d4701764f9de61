/**
 * The query API's request handling: an API Gateway REST (v1) proxy event in, a response out, over
 * the query core. The Lambda (lambdas/query-api.ts) and the local HTTP adapter (local mode,
 * local/query-http.ts) both call handleQueryApiEvent.
 *
 *   GET /meters                          ?limit&cursor&source&since          -> {"meters":[...],"nextCursor"}
 *   GET /meters/{meterId}                                                    -> the meter and its channels
 *   GET /meters/{meterId}/readings       ?from&to&channel&limit&cursor&format=json|csv|espi
 *
 * Routing is on the path (not the resource template), so the same code serves API Gateway and the
 * local adapter. Every refusal is JSON {"error":{"code","message","requestId"}} with a 4xx status;
 * the next page's cursor is also in the `x-next-cursor` header, for CSV and Green Button bodies.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import type { Log } from '../../../shared/log.ts';
import type { Source } from '../../../shared/reading.ts';
import { readingsEspi } from './espi.ts';
import { CONTENT_TYPES, FORMATS, meterToJson, readingsCsv, readingsJson, type Format } from './formats.ts';
import { QueryError, type ReadingsQuery } from './readings-query.ts';

export interface QueryApiDependencies {
  query: ReadingsQuery;
  /** The stage's block zone (Green Button IntervalBlocks are its local days). */
  timeZone: string;
  log: Log;
  /** @default () => new Date() */
  clock?: () => Date;
}

/** Query parameters each route accepts; anything else is refused (a typo should not silently widen a query). */
export const QUERY_PARAMETERS = {
  meters: ['limit', 'cursor', 'source', 'since'],
  meter: [],
  readings: ['from', 'to', 'channel', 'limit', 'cursor', 'format'],
} as const;

const METER_ID = /^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$/;

function respond(statusCode: number, body: string, contentType: string, extra: Record<string, string> = {}): APIGatewayProxyResult {
  return { statusCode, headers: { 'content-type': contentType, 'cache-control': 'no-store', ...extra }, body, isBase64Encoded: false };
}

function refusal(status: number, code: string, message: string, requestId: string): APIGatewayProxyResult {
  return respond(status, JSON.stringify({ error: { code, message, requestId } }), 'application/json');
}

function instant(text: string | undefined, name: string): Date | undefined {
  if (text === undefined) return undefined;
  // ISO-8601 with a zone or a plain date (UTC midnight), like the CLI.
  if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(text) || Number.isNaN(Date.parse(text))) {
    throw new QueryError(400, 'bad_range', `${name} ${JSON.stringify(text)} is not an ISO-8601 instant with a zone or a YYYY-MM-DD date`);
  }
  return new Date(/^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00Z` : text);
}

function integer(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text)) throw new QueryError(400, 'bad_request', `${name} must be a whole number`);
  return Number(text);
}

export async function handleQueryApiEvent(event: APIGatewayProxyEvent, deps: QueryApiDependencies): Promise<APIGatewayProxyResult> {
  const requestId = event.requestContext?.requestId ?? 'unknown';
  const query: Record<string, string> = {};
  for (const [name, value] of Object.entries(event.queryStringParameters ?? {})) if (value !== undefined) query[name] = value;
  const segments = (event.path ?? '/')
    .split('/')
    .filter(Boolean)
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return '\u0000';
      }
    });
  try {
    if (event.httpMethod !== 'GET') return refusal(405, 'method_not_allowed', 'the query API answers GET only', requestId);
    if (segments[0] !== 'meters' || segments.length > 3 || (segments.length === 3 && segments[2] !== 'readings')) {
      return refusal(404, 'not_found', 'no such resource; see /meters, /meters/{meterId} and /meters/{meterId}/readings', requestId);
    }
    const route = segments.length === 1 ? 'meters' : segments.length === 2 ? 'meter' : 'readings';
    const unknown = Object.keys(query).filter((name) => !(QUERY_PARAMETERS[route] as readonly string[]).includes(name));
    if (unknown.length > 0)
      throw new QueryError(
        400,
        'bad_request',
        `unknown query parameter(s) ${unknown.join(', ')}; this resource takes ${QUERY_PARAMETERS[route].join(', ') || 'none'}`,
      );

    if (route === 'meters') {
      const page = await deps.query.listMeters({
        ...(query.limit !== undefined ? { limit: integer(query.limit, 'limit')! } : {}),
        ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
        ...(query.source !== undefined ? { source: query.source as Source } : {}),
        ...(query.since !== undefined ? { since: instant(query.since, 'since')! } : {}),
      });
      return respond(
        200,
        JSON.stringify({ meters: page.meters.map(meterToJson), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) }),
        CONTENT_TYPES.json,
        page.nextCursor ? { 'x-next-cursor': page.nextCursor } : {},
      );
    }

    const meterId = segments[1]!;
    if (!METER_ID.test(meterId))
      throw new QueryError(400, 'bad_request', 'meterId must be 1-128 letters, digits or ._:- and start with a letter or digit');
    if (route === 'meter') {
      const meter = await deps.query.meter(meterId);
      if (!meter) throw new QueryError(404, 'unknown_meter', `no readings of meter ${meterId} are stored`);
      return respond(200, JSON.stringify(meterToJson(meter)), CONTENT_TYPES.json);
    }

    const format = (query.format ?? 'json') as Format;
    if (!FORMATS.includes(format)) throw new QueryError(400, 'bad_format', `format must be one of ${FORMATS.join(', ')}`);
    const page = await deps.query.readings({
      meterId,
      ...(query.channel !== undefined ? { channel: query.channel } : {}),
      ...(query.from !== undefined ? { from: instant(query.from, 'from')! } : {}),
      ...(query.to !== undefined ? { to: instant(query.to, 'to')! } : {}),
      ...(query.limit !== undefined ? { limit: integer(query.limit, 'limit')! } : {}),
      ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
    });
    if (!page.known) throw new QueryError(404, 'unknown_meter', `no readings of meter ${meterId} are stored`);
    const next: Record<string, string> = page.nextCursor ? { 'x-next-cursor': page.nextCursor } : {};
    const body =
      format === 'json'
        ? readingsJson(page)
        : format === 'csv'
          ? readingsCsv(page.readings)
          : readingsEspi(meterId, page.readings, { timeZone: deps.timeZone, generatedAt: (deps.clock ?? (() => new Date()))() });
    return respond(200, body, CONTENT_TYPES[format], next);
  } catch (error) {
    if (error instanceof QueryError) return refusal(error.status, error.code, error.message, requestId);
    deps.log.error('query failed', { requestId, error: String(error) });
    return refusal(500, 'internal_error', 'the query failed; retry later', requestId);
  }
}
