/**
 * Lambda entry of the query API behind API Gateway (REST, IAM-authorized, proxy integration).
 * Thin: clients are created once per container; lambdas/core/query/api.ts does the work, the
 * same function the local HTTP adapter (local/query-http.ts) calls.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { requiredEnv } from './core/env.ts';
import { handleQueryApiEvent } from './core/query/api.ts';
import { ReadingsQuery } from './core/query/readings-query.ts';
import { ReadingStore } from './core/reading-store.ts';
import { createLogger, loggedHandler } from './observability.ts';

const { logger, log } = createLogger('query-api');
const timeZone = requiredEnv('BLOCK_TIME_ZONE');
const store = new ReadingStore({ client: new DynamoDBClient({}), tableName: requiredEnv('READINGS_TABLE'), blockTimeZone: timeZone });
const query = new ReadingsQuery(store);

export const handler = loggedHandler<APIGatewayProxyEvent, APIGatewayProxyResult>(logger, async (event) => {
  logger.appendKeys({ requestId: event.requestContext?.requestId });
  return handleQueryApiEvent(event, { query, timeZone, log });
});
