/**
 * Where the CLI's store commands (`readings query`, `meters`) read: a running local mode by
 * default (DynamoDB Local on its fixed port, local table names), or a deployed table with the
 * usual AWS credentials. One place for the flags, the client and the hints on failure.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { assertTimeZone } from '../../lambdas/core/time.ts';
import { LOCAL_BLOCK_TIME_ZONE, LOCAL_PORTS, LOCAL_TABLES } from '../../local/defaults.ts';
import { UsageError } from '../commands/cli.ts';

/** parseArgs options every store command takes. */
export const STORE_TARGET_OPTIONS = {
  table: { type: 'string' },
  endpoint: { type: 'string' },
  'time-zone': { type: 'string', default: LOCAL_BLOCK_TIME_ZONE },
  region: { type: 'string' },
} as const;

export const STORE_TARGET_USAGE = `  --table <name>        a deployed readings table (AWS credentials and region from the environment)
                        default: the local mode's ${LOCAL_TABLES.readings}
  --endpoint <url>      DynamoDB endpoint     default: http://127.0.0.1:${LOCAL_PORTS.dynamodb} without --table
  --time-zone <tz>      the stage's blockTimeZone                     default ${LOCAL_BLOCK_TIME_ZONE}
  --region <region>     AWS region with --table                        default $AWS_REGION`;

export interface StoreTarget {
  store: ReadingStore;
  tableName: string;
  endpoint?: string;
  timeZone: string;
  /** A one-line explanation of a failed read, with a hint where one helps. */
  explain(error: unknown): string;
  close(): void;
}

export function openStoreTarget(
  values: { table?: string; endpoint?: string; 'time-zone'?: string; region?: string },
  env: NodeJS.ProcessEnv,
  help: string,
): StoreTarget {
  const timeZone = values['time-zone'] ?? LOCAL_BLOCK_TIME_ZONE;
  try {
    assertTimeZone(timeZone);
  } catch (error) {
    throw new UsageError((error as Error).message, help);
  }
  const local = values.table === undefined;
  const endpoint = values.endpoint ?? (local ? (env.MB_DYNAMODB_ENDPOINT ?? `http://127.0.0.1:${LOCAL_PORTS.dynamodb}`) : undefined);
  // DynamoDB Local (any loopback endpoint) accepts any credentials; a deployed table uses the environment's.
  const loopback = endpoint !== undefined && /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(endpoint);
  const region = values.region ?? env.AWS_REGION ?? (loopback ? 'us-east-1' : undefined);
  const client = new DynamoDBClient({
    ...(endpoint ? { endpoint } : {}),
    ...(region ? { region } : {}),
    ...(loopback ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
    maxAttempts: loopback ? 1 : 3,
  });
  const tableName = values.table ?? LOCAL_TABLES.readings;
  return {
    store: new ReadingStore({ client, tableName, blockTimeZone: timeZone }),
    tableName,
    ...(endpoint ? { endpoint } : {}),
    timeZone,
    explain(error) {
      const name = (error as Error).name;
      const hint =
        name === 'ResourceNotFoundException'
          ? ` (no table ${tableName}${local ? ': is local mode running? start it with npm start' : ''})`
          : local && /ECONNREFUSED/.test(String((error as Error).message) + String((error as { code?: string }).code ?? ''))
            ? ` (nothing answers at ${endpoint}: start local mode with npm start, or pass --table for a deployed table)`
            : '';
      return `cannot read the store: ${(error as Error).message}${hint}`;
    },
    close: () => client.destroy(),
  };
}

/** An ISO-8601 instant or a YYYY-MM-DD date (UTC midnight); a usage error otherwise. */
export function parseInstant(text: string, flag: string, help: string): Date {
  const instant = /^\d{4}-\d{2}-\d{2}$/.test(text) ? new Date(`${text}T00:00:00Z`) : new Date(text);
  if (Number.isNaN(instant.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(text)) {
    throw new UsageError(`${flag} ${JSON.stringify(text)} is not an ISO-8601 instant or a YYYY-MM-DD date`, help);
  }
  return instant;
}
