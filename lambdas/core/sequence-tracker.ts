/**
 * Detects lost gateway messages from gaps in each gateway's `seq`.
 *
 * One record per gateway in the ledger table (`gateway-seq#<gatewayId>`) holds the highest seq
 * seen. Raising it is a conditional write, so concurrent ingest workers agree on what is new:
 *
 *   highest 3, seq 5 arrives  -> highest 5, gap of 1 (seq 4 missing)
 *   seq 4 arrives late        -> late (not a gap any more, but it was counted as one: see docs/iot.md)
 *   seq 5 arrives again       -> repeat, nothing to report
 *   seq 1 after highest 812   -> the gateway lost its state (new spool): reset, reported as such
 */
import { ConditionalCheckFailedException, UpdateItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';

export type SequenceObservation =
  | { kind: 'first' }
  | { kind: 'next' }
  | { kind: 'gap'; missing: number }
  | { kind: 'repeat' }
  | { kind: 'late' }
  | { kind: 'reset'; previousHighest: number };

export interface SequenceTrackerOptions {
  client: DynamoDBClient;
  /** The ledger table: sequence records live beside the unit records under their own prefix. */
  tableName: string;
  clock?: () => Date;
}

export class SequenceTracker {
  constructor(private readonly options: SequenceTrackerOptions) {}

  async observe(gatewayId: string, seq: number): Promise<SequenceObservation> {
    const now = Math.floor((this.options.clock?.() ?? new Date()).getTime() / 1000);
    try {
      const response = await this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.tableName,
          Key: { pk: { S: `gateway-seq#${gatewayId}` } },
          UpdateExpression: 'SET highest = :seq, updatedAt = :now',
          ConditionExpression: 'attribute_not_exists(highest) OR highest < :seq',
          ExpressionAttributeValues: { ':seq': { N: String(seq) }, ':now': { N: String(now) } },
          ReturnValues: 'UPDATED_OLD',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      const previous = response.Attributes?.highest?.N;
      if (previous === undefined) return { kind: 'first' };
      const missing = seq - Number(previous) - 1;
      return missing > 0 ? { kind: 'gap', missing } : { kind: 'next' };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const highest = Number(error.Item?.highest?.N);
      if (seq === highest) return { kind: 'repeat' };
      if (seq === 1) return this.reset(gatewayId, highest, now);
      return { kind: 'late' };
    }
  }

  private async reset(gatewayId: string, previousHighest: number, now: number): Promise<SequenceObservation> {
    try {
      await this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.tableName,
          Key: { pk: { S: `gateway-seq#${gatewayId}` } },
          UpdateExpression: 'SET highest = :one, updatedAt = :now, resets = if_not_exists(resets, :zero) + :one',
          ConditionExpression: 'highest = :previous',
          ExpressionAttributeValues: {
            ':one': { N: '1' },
            ':zero': { N: '0' },
            ':now': { N: String(now) },
            ':previous': { N: String(previousHighest) },
          },
        }),
      );
      return { kind: 'reset', previousHighest };
    } catch (error) {
      // Another worker moved the sequence on meanwhile: seq 1 is simply old news now.
      if (error instanceof ConditionalCheckFailedException) return { kind: 'late' };
      throw error;
    }
  }
}
