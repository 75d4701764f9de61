/**
 * Creates the two tables on DynamoDB Local (local mode, tests, bench) with the key schemas the
 * CDK constructs use (lambdas/core/tables.ts), so the two cannot drift.
 */
import { CreateTableCommand, ResourceInUseException, UpdateTimeToLiveCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { LEDGER_KEYS, LEDGER_TTL_ATTRIBUTE, READINGS_KEYS, READINGS_STREAM_VIEW, type TableNames } from '../lambdas/core/tables.ts';

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
    // DynamoDB Local keeps a real stream: local mode's feed reads it (local/readings-feed.ts).
    StreamSpecification: { StreamEnabled: true, StreamViewType: READINGS_STREAM_VIEW },
  });
  await create({
    TableName: names.ledger,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: LEDGER_KEYS.partitionKey, AttributeType: 'S' }],
    KeySchema: [{ AttributeName: LEDGER_KEYS.partitionKey, KeyType: 'HASH' }],
  });
  await client
    .send(new UpdateTimeToLiveCommand({ TableName: names.ledger, TimeToLiveSpecification: { Enabled: true, AttributeName: LEDGER_TTL_ATTRIBUTE } }))
    .catch(() => {
      // Already enabled on a reused local database: nothing to do.
    });
}
