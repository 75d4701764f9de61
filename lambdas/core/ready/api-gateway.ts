/**
 * API Gateway REST (v1) proxy events <-> the webhook's plain request/response (webhook.ts).
 *
 * The API has binaryMediaTypes `*\/*`, so API Gateway hands every body over base64-encoded and the
 * archive receives the exact bytes READY sent (a text body would be re-encoded as UTF-8 on the way,
 * and a non-UTF-8 payload mangled before anyone could look at it).
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { handleReadyRequest, type ReadyRequest, type ReadyRoute, type ReadyWebhookDependencies } from './webhook.ts';

/** API resource paths of the two callback URLs (below the stage). */
export const READY_PATHS: Record<ReadyRoute, string> = { data: '/data', status: '/status' };

export function routeOf(resource: string | undefined): ReadyRoute | undefined {
  if (resource === READY_PATHS.data) return 'data';
  if (resource === READY_PATHS.status) return 'status';
  return undefined;
}

export function fromApiGatewayEvent(event: APIGatewayProxyEvent): ReadyRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(event.headers ?? {})) if (value !== undefined) headers[name.toLowerCase()] = value;
  const query: Record<string, string> = {};
  for (const [name, value] of Object.entries(event.queryStringParameters ?? {})) if (value !== undefined) query[name] = value;
  const raw = event.body ?? '';
  return {
    route: routeOf(event.resource),
    method: event.httpMethod,
    headers,
    query,
    body: event.isBase64Encoded ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'utf8'),
    requestId: event.requestContext?.requestId ?? 'unknown',
    ...(event.requestContext?.identity?.sourceIp ? { sourceIp: event.requestContext.identity.sourceIp } : {}),
  };
}

/** What the Lambda handler and the local HTTP adapter both run. */
export async function handleApiGatewayEvent(event: APIGatewayProxyEvent, deps: ReadyWebhookDependencies): Promise<APIGatewayProxyResult> {
  const response = await handleReadyRequest(fromApiGatewayEvent(event), deps);
  return { statusCode: response.statusCode, headers: response.headers, body: response.body, isBase64Encoded: false };
}
