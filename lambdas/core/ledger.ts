/**
 * The ledger of units of work (an MQTT message, an SMT file, a webhook delivery).
 *
 * A unit is claimed before work starts and completed (with counts) or failed (with a reason)
 * after. The lock shape follows Powertools' DynamoDBPersistenceLayer: a claim is a conditional
 * write that succeeds only if nobody holds a live claim, so a crash half-way through leaves an
 * in-progress record whose lock expires and is then re-taken, while a completed unit is skipped.
 *
 *   t0  A claims unit U (in_progress, lock until t0+L, owner=a)
 *   t1  A crashes
 *   t2  B tries U before t0+L          -> refused: in_progress (the message goes back to the queue)
 *   t3  B tries U after t0+L           -> claimed (attempt 2, owner=b)
 *   t4  B completes U (owner must be b) -> completed; every later claim returns `completed`
 *   t5  A, back from a long pause, tries to complete U as owner a -> LedgerLockLostError
 */
import { randomUUID } from 'node:crypto';
import {
  ConditionalCheckFailedException,
  GetItemCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { withoutUnusedPlaceholders } from './expressions.ts';
import { LEDGER_TTL_ATTRIBUTE } from './tables.ts';
import { LOCK_SECONDS, type UnitKind } from './work-units.ts';

export type { UnitKind } from './work-units.ts';
export type UnitStatus = 'in_progress' | 'completed' | 'failed';

export interface LedgerRecord {
  unitId: string;
  kind: UnitKind;
  status: UnitStatus;
  attempts: number;
  claimedAt: number;
  lockExpiresAt: number;
  completedAt?: number;
  failedAt?: number;
  counts?: Record<string, number>;
  reason?: string;
  /** Free-form facts about the unit (file size, key in the archive, ...). */
  detail?: Record<string, string | number>;
  /** Completed with some parts refused (an SMT bundle's members): a replay takes it again. */
  partial?: boolean;
}

export type ClaimResult =
  | { status: 'claimed'; claim: Claim; attempt: number; retakenFrom?: 'expired' | 'failed' | 'partial' }
  | { status: 'completed'; record: LedgerRecord }
  | { status: 'in_progress'; record: LedgerRecord }
  | { status: 'failed'; record: LedgerRecord };

/** Proof of a live claim; needed to complete, fail or release the unit. */
export interface Claim {
  unitId: string;
  kind: UnitKind;
  token: string;
}

export interface LedgerOptions {
  client: DynamoDBClient;
  tableName: string;
  /**
   * How long a claim holds before another worker may re-take it, for every kind (tests of lock
   * expiry). @default LOCK_SECONDS of the unit's kind
   */
  lockSeconds?: number;
  /**
   * How long records are kept (DynamoDB TTL on `ttl`). A unit seen again within this time is
   * skipped without touching the store; after it, the store's own idempotency still holds.
   * @default 35 days (SMT keeps files 10 days; READY and MQTT retry for far less)
   */
  retentionSeconds?: number;
  /** @default () => new Date() */
  clock?: () => Date;
}

export interface ClaimOptions {
  /** Facts to keep on the record. */
  detail?: Record<string, string | number>;
  /**
   * Re-take a unit that failed, or that completed with some parts refused (an operator's replay:
   * what was taken before is written again as duplicates, the refused parts get a second chance).
   * @default false
   */
  retakeFailed?: boolean;
}

export class LedgerLockLostError extends Error {
  constructor(unitId: string) {
    super(`claim on ${unitId} was lost (lock expired and re-taken, or never held); its result was not recorded`);
    this.name = 'LedgerLockLostError';
  }
}

export class Ledger {
  private readonly client: DynamoDBClient;
  private readonly tableName: string;
  private readonly lockSeconds: number | undefined;
  private readonly retentionSeconds: number;
  private readonly clock: () => Date;

  constructor(options: LedgerOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
    this.lockSeconds = options.lockSeconds;
    this.retentionSeconds = options.retentionSeconds ?? 35 * 86_400;
    this.clock = options.clock ?? (() => new Date());
  }

  async claim(kind: UnitKind, unitId: string, options: ClaimOptions = {}): Promise<ClaimResult> {
    const now = this.nowSeconds();
    const token = randomUUID();
    const names: Record<string, string> = {
      '#status': 'status',
      '#lock': 'lockExpiresAt',
      '#owner': 'owner',
      '#kind': 'kind',
      '#claimedAt': 'claimedAt',
      '#ttl': 'ttl',
      '#attempts': 'attempts',
      '#reason': 'reason',
      '#detail': 'detail',
      '#partial': 'partial',
    };
    const values: Record<string, AttributeValue> = {
      ':inProgress': { S: 'in_progress' },
      ':now': { N: String(now) },
      ':lock': { N: String(now + (this.lockSeconds ?? LOCK_SECONDS[kind])) },
      ':owner': { S: token },
      ':kind': { S: kind },
      ':ttl': { N: String(now + this.retentionSeconds) },
      ':one': { N: '1' },
    };
    const sets = ['#status = :inProgress', '#lock = :lock', '#owner = :owner', '#kind = :kind', '#claimedAt = :now', '#ttl = :ttl'];
    names['#ttl'] = LEDGER_TTL_ATTRIBUTE;
    if (options.detail) {
      sets.push('#detail = :detail');
      values[':detail'] = { M: marshall(options.detail) };
    }
    let condition = 'attribute_not_exists(pk) OR (#status = :inProgress AND #lock < :now)';
    if (options.retakeFailed) {
      condition += ' OR #status = :failed OR (#status = :completed AND #partial = :true)';
      values[':failed'] = { S: 'failed' };
      values[':completed'] = { S: 'completed' };
      values[':true'] = { BOOL: true };
    }
    try {
      const response = await this.client.send(
        new UpdateItemCommand(
          withoutUnusedPlaceholders({
            TableName: this.tableName,
            Key: ledgerKey(kind, unitId),
            UpdateExpression: `SET ${sets.join(', ')} REMOVE #reason ADD #attempts :one`,
            ConditionExpression: condition,
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
            ReturnValues: 'ALL_OLD',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
      const previous = response.Attributes ? toRecord(response.Attributes) : undefined;
      return {
        status: 'claimed',
        claim: { unitId, kind, token },
        attempt: (previous?.attempts ?? 0) + 1,
        retakenFrom: previous ? retakenFrom(previous) : undefined,
      };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException) || !error.Item) throw error;
      const record = toRecord(error.Item);
      return { status: record.status, record } as ClaimResult;
    }
  }

  /**
   * Marks a claimed unit done; `partial` when some of its parts were refused (a replay re-takes
   * it). Throws LedgerLockLostError if someone else holds it now.
   */
  async complete(
    claim: Claim,
    counts: Record<string, number>,
    detail?: Record<string, string | number>,
    options: { partial?: boolean } = {},
  ): Promise<void> {
    const values: Record<string, AttributeValue> = { ':completed': { S: 'completed' }, ':counts': { M: marshall(counts) } };
    let extra = '';
    if (detail) {
      extra = ', #detail = :detail';
      values[':detail'] = { M: marshall(detail) };
    }
    if (options.partial) {
      extra += ', #partial = :true';
      values[':true'] = { BOOL: true };
    }
    const remove = options.partial ? '#lock' : '#lock, #partial';
    await this.finish(claim, `SET #status = :completed, completedAt = :now, #counts = :counts${extra} REMOVE ${remove}`, values, {
      '#counts': 'counts',
      '#detail': 'detail',
      '#partial': 'partial',
    });
  }

  /** Marks a claimed unit failed for good (bad input); it stays failed until retaken with retakeFailed. */
  async fail(claim: Claim, reason: string, counts?: Record<string, number>): Promise<void> {
    const values: Record<string, AttributeValue> = { ':failed': { S: 'failed' }, ':reason': { S: reason.slice(0, 4000) } };
    let extra = '';
    if (counts) {
      extra = ', #counts = :counts';
      values[':counts'] = { M: marshall(counts) };
    }
    await this.finish(claim, `SET #status = :failed, failedAt = :now, #reason = :reason${extra} REMOVE #lock`, values, {
      '#reason': 'reason',
      '#counts': 'counts',
    });
  }

  /**
   * Gives a claim back after a transient error (throttling, a timeout) so the next delivery of
   * the unit can take it at once instead of waiting for the lock to expire.
   */
  async release(claim: Claim): Promise<void> {
    await this.finish(claim, 'SET #lock = :zero', { ':zero': { N: '0' } }, {});
  }

  async get(kind: UnitKind, unitId: string): Promise<LedgerRecord | undefined> {
    const response = await this.client.send(new GetItemCommand({ TableName: this.tableName, Key: ledgerKey(kind, unitId), ConsistentRead: true }));
    return response.Item ? toRecord(response.Item) : undefined;
  }

  private async finish(
    claim: Claim,
    updateExpression: string,
    values: Record<string, AttributeValue>,
    extraNames: Record<string, string>,
  ): Promise<void> {
    try {
      await this.client.send(
        new UpdateItemCommand(
          withoutUnusedPlaceholders({
            TableName: this.tableName,
            Key: ledgerKey(claim.kind, claim.unitId),
            UpdateExpression: updateExpression,
            ConditionExpression: '#status = :inProgress AND #owner = :owner',
            ExpressionAttributeNames: { '#status': 'status', '#owner': 'owner', '#lock': 'lockExpiresAt', ...extraNames },
            ExpressionAttributeValues: {
              ...values,
              ':inProgress': { S: 'in_progress' },
              ':owner': { S: claim.token },
              ':now': { N: String(this.nowSeconds()) },
            },
          }),
        ),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) throw new LedgerLockLostError(claim.unitId);
      throw error;
    }
  }

  private nowSeconds(): number {
    return Math.floor(this.clock().getTime() / 1000);
  }
}

/** Kinds share the table; the kind prefix keeps an SMT file name from ever meeting a message id. */
function ledgerKey(kind: UnitKind, unitId: string): Record<string, AttributeValue> {
  return { pk: { S: `${kind}#${unitId}` } };
}

function toRecord(item: Record<string, AttributeValue>): LedgerRecord {
  const raw = unmarshall(item);
  return {
    unitId: String(raw.pk).slice(String(raw.kind).length + 1),
    kind: raw.kind,
    status: raw.status,
    attempts: raw.attempts ?? 0,
    claimedAt: raw.claimedAt,
    lockExpiresAt: raw.lockExpiresAt ?? 0,
    completedAt: raw.completedAt,
    failedAt: raw.failedAt,
    counts: raw.counts,
    reason: raw.reason,
    detail: raw.detail,
    ...(raw.partial === true ? { partial: true } : {}),
  };
}

function retakenFrom(previous: LedgerRecord): 'expired' | 'failed' | 'partial' {
  if (previous.status === 'failed') return 'failed';
  return previous.status === 'completed' ? 'partial' : 'expired';
}
