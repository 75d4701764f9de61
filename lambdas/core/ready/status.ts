/**
 * READY status callbacks (to the StatusUri): the schema we ASSUME (not public; see docs/ready.md) and
 * the record of each subscription's state.
 *
 * States are kept in the ledger table under `ready-subscription#<id>` (no TTL: a subscription
 * lives as long as it lives). Callbacks can arrive out of order, so a state is replaced only by
 * one that changed later (conditional write on `changedAt`); an older callback is `stale` and
 * changes nothing.
 */
import { ConditionalCheckFailedException, UpdateItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { preview } from '../../../shared/untrusted-json.ts';
import { z } from 'zod';

export const SUBSCRIPTION_STATES = ['pending', 'active', 'suspended', 'failed', 'deleted'] as const;
export type SubscriptionState = (typeof SUBSCRIPTION_STATES)[number];

const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$/, 'must be 1-128 letters, digits or ._:- and start with a letter or digit');

export const statusCallbackSchema = z.strictObject({
  subscriptionId: id,
  /** Case-insensitive: READY's samples elsewhere capitalise enum values ("Active"). */
  status: z
    .string()
    .transform((value) => value.toLowerCase())
    .pipe(
      z.enum(SUBSCRIPTION_STATES, {
        error: (issue) => `unknown subscription status ${preview(issue.input)} (known: ${SUBSCRIPTION_STATES.join(', ')})`,
      }),
    ),
  reason: z.string().max(2000).optional(),
  changedAt: z.iso.datetime({ offset: true }),
});

export type StatusCallback = z.infer<typeof statusCallbackSchema>;

export type ParsedStatus = { ok: true; status: StatusCallback } | { ok: false; reasons: string[] };

export function parseStatusCallback(json: unknown): ParsedStatus {
  const parsed = statusCallbackSchema.safeParse(json);
  if (parsed.success) return { ok: true, status: parsed.data };
  return { ok: false, reasons: parsed.error.issues.slice(0, 20).map((issue) => `${issue.path.join('.') || 'status'}: ${issue.message}`) };
}

export type StateChange =
  | { outcome: 'changed'; previous: SubscriptionState | undefined; state: SubscriptionState }
  | { outcome: 'unchanged'; state: SubscriptionState }
  | { outcome: 'stale'; current: SubscriptionState };

/** Where subscription states are recorded; an interface so the handler's tests can swap it. */
export interface SubscriptionStates {
  record(status: StatusCallback): Promise<StateChange>;
}

export class DynamoSubscriptionStates implements SubscriptionStates {
  constructor(private readonly options: { client: DynamoDBClient; tableName: string; clock?: () => Date }) {}

  async record(status: StatusCallback): Promise<StateChange> {
    const changedAt = Date.parse(status.changedAt);
    const values: Record<string, AttributeValue> = {
      ':state': { S: status.status },
      ':changedAt': { N: String(changedAt) },
      ':recordedAt': { N: String((this.options.clock?.() ?? new Date()).getTime()) },
      ':kind': { S: 'ready-subscription' },
    };
    let set = '#state = :state, changedAt = :changedAt, recordedAt = :recordedAt, #kind = :kind';
    if (status.reason !== undefined) {
      set += ', #reason = :reason';
      values[':reason'] = { S: status.reason };
    }
    try {
      const response = await this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.tableName,
          Key: { pk: { S: `ready-subscription#${status.subscriptionId}` } },
          UpdateExpression: `SET ${set}${status.reason === undefined ? ' REMOVE #reason' : ''}`,
          // Equal times are accepted so a re-sent callback is idempotent (unchanged), not stale.
          ConditionExpression: 'attribute_not_exists(pk) OR changedAt <= :changedAt',
          ExpressionAttributeNames: { '#state': 'state', '#kind': 'kind', '#reason': 'reason' },
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_OLD',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      const previous = response.Attributes?.state?.S as SubscriptionState | undefined;
      if (previous === status.status) return { outcome: 'unchanged', state: previous };
      return { outcome: 'changed', previous, state: status.status };
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException && error.Item) {
        return { outcome: 'stale', current: error.Item.state?.S as SubscriptionState };
      }
      throw error;
    }
  }
}
