/**
 * Key schemas of the two tables, shared by the CDK constructs (lib/storage.ts) and by the code
 * that creates the tables on DynamoDB Local (tests, local mode), so the two cannot drift.
 */
import { CreateTableCommand, ResourceInUseException, UpdateTimeToLiveCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';

export const READINGS_KEYS = { partitionKey: 'pk', sortKey: 'sk' } as const;
export const LEDGER_KEYS = { partitionKey: 'pk' } as const;
/** Ledger records expire (DynamoDB TTL) at this epoch-seconds attribute. */
export const LEDGER_TTL_ATTRIBUTE = 'ttl';

export interface TableNames {
  readings: string;
  ledger: string;
}

/** Creates both tables on a local endpoint (on-demand); existing tables are left as they are. */
export async function createLocalTables(client: DynamoDBClient, names: TableNames): Promise<void> {
  const create = async (input: ConstructorParameters<typeof CreateTableCommand>[0]): Promise<void> => {
    try {
      await client.send(new CreateTableCommand(input));
    } catch (error) {
      if (!(error instanceof ResourceInUseException)) throw error;
    }
  };
  await create({
    TableName: names.readings,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [
      { AttributeName: READINGS_KEYS.partitionKey, AttributeType: 'S' },
      { AttributeName: READINGS_KEYS.sortKey, AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: READINGS_KEYS.partitionKey, KeyType: 'HASH' },
      { AttributeName: READINGS_KEYS.sortKey, KeyType: 'RANGE' },
    ],
  });
  await create({
    TableName: names.ledger,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: LEDGER_KEYS.partitionKey, AttributeType: 'S' }],
    KeySchema: [{ AttributeName: LEDGER_KEYS.partitionKey, KeyType: 'HASH' }],
  });
  await client.send(
    new UpdateTimeToLiveCommand({ TableName: names.ledger, TimeToLiveSpecification: { Enabled: true, AttributeName: LEDGER_TTL_ATTRIBUTE } }),
  ).catch(() => {
    // Already enabled on a reused local database: nothing to do.
  });
}
