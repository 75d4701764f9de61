/**
 * The two DynamoDB tables: readings (interval blocks, written by the idempotent store) and the
 * ledger (claims on whole units of work: MQTT messages, SMT files, webhook deliveries).
 *
 * Key schemas come from lambdas/core/tables.ts, which also creates the same tables on DynamoDB
 * Local, so the deployed tables and the ones the tests run against cannot drift apart.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { LEDGER_KEYS, LEDGER_TTL_ATTRIBUTE, READINGS_KEYS, READINGS_STREAM_VIEW } from '../lambdas/core/tables.ts';

export interface ReadingStorageProps {
  /**
   * What CloudFormation does with both tables when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN - meter readings are the system of record and cannot be re-fetched
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * Whether DynamoDB refuses DeleteTable on both tables (guards against console and CLI
   * mistakes, not just CloudFormation).
   *
   * @default false
   */
  readonly deletionProtection?: boolean;
}

/** Readings and ledger tables, with grants cut to the calls the core modules actually make. */
export class ReadingStorage extends Construct {
  /** Interval blocks of readings; key `pk` (meter + channel) / `sk` (local date of the block). */
  public readonly readingsTable: dynamodb.Table;
  /** Units-of-work ledger; key `pk`, expiring at the epoch-seconds attribute `ttl`. */
  public readonly ledgerTable: dynamodb.Table;

  constructor(scope: Construct, id: string, props: ReadingStorageProps = {}) {
    super(scope, id);

    const common = {
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      // AWS-owned keys are invisible to the account (no audit trail); the AWS managed key is
      // auditable in CloudTrail and, unlike a customer managed key, needs no grants on callers.
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: props.deletionProtection ?? false,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    } satisfies Partial<dynamodb.TableProps>;

    this.readingsTable = new dynamodb.Table(this, 'Readings', {
      ...common,
      partitionKey: { name: READINGS_KEYS.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: READINGS_KEYS.sortKey, type: dynamodb.AttributeType.STRING },
      // Both images of every block write feed the readings feed and the lake (lib/readings-feed.ts).
      stream: dynamodb.StreamViewType[READINGS_STREAM_VIEW],
    });

    this.ledgerTable = new dynamodb.Table(this, 'Ledger', {
      ...common,
      partitionKey: { name: LEDGER_KEYS.partitionKey, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: LEDGER_TTL_ATTRIBUTE,
    });
  }

  /**
   * Lets the grantee store readings: blocks are written with conditional UpdateItem only
   * (ReturnValuesOnConditionCheckFailure replaces a read-before-write); the meter catalog the
   * store maintains is read with one GetItem per (meter, channel) a process has not seen yet,
   * which is what keeps catalog writes rare (lambdas/core/meter-catalog.ts). No PutItem.
   */
  public grantStoreWrite(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({ grantee, actions: ['dynamodb:UpdateItem', 'dynamodb:GetItem'], resourceArns: [this.readingsTable.tableArn] });
  }

  /** Lets the grantee query readings of one meter and channel over a time range. */
  public grantStoreRead(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({ grantee, actions: ['dynamodb:Query'], resourceArns: [this.readingsTable.tableArn] });
  }

  /**
   * Lets the grantee claim, complete and inspect units of work: claims and state changes are
   * conditional UpdateItems, and a lost claim is explained with one consistent GetItem.
   */
  public grantLedger(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:UpdateItem', 'dynamodb:GetItem'],
      resourceArns: [this.ledgerTable.tableArn],
    });
  }
}
