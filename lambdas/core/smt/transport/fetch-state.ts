/**
 * When the fetch step last archived a new SMT file, kept beside the ledger's unit records
 * (`smt-last-file#<serverId>`), so every run can report HoursSinceLastFile and the freshness alarm
 * can tell "SMT sent nothing" from "nothing ran". Only ever moved forward (conditional write).
 */
import { ConditionalCheckFailedException, GetItemCommand, UpdateItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';

export interface SmtFetchStateOptions {
  client: DynamoDBClient;
  /** The ledger table. */
  tableName: string;
  /** @default 'smt' */
  serverId?: string;
}

export class SmtFetchState {
  private readonly key: { pk: { S: string } };

  constructor(private readonly options: SmtFetchStateOptions) {
    this.key = { pk: { S: `smt-last-file#${options.serverId ?? 'smt'}` } };
  }

  async recordFileArrived(at: Date): Promise<void> {
    const seconds = String(Math.floor(at.getTime() / 1000));
    try {
      await this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.tableName,
          Key: this.key,
          UpdateExpression: 'SET lastFileAt = :at',
          ConditionExpression: 'attribute_not_exists(lastFileAt) OR lastFileAt < :at',
          ExpressionAttributeValues: { ':at': { N: seconds } },
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  async lastFileAt(): Promise<Date | undefined> {
    const response = await this.options.client.send(new GetItemCommand({ TableName: this.options.tableName, Key: this.key, ConsistentRead: true }));
    const value = response.Item?.lastFileAt?.N;
    return value === undefined ? undefined : new Date(Number(value) * 1000);
  }
}
