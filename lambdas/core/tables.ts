/**
 * Key schemas of the two tables, shared by the CDK constructs (lib/storage.ts) and by the code
 * that creates the tables on DynamoDB Local (local/tables.ts), so the two cannot drift.
 */
export const READINGS_KEYS = { partitionKey: 'pk', sortKey: 'sk' } as const;
/**
 * The readings table's stream: both images of every block write, so the feed (lambdas/core/feed/)
 * can tell what a write changed. Shared by the CDK table and the DynamoDB Local one.
 */
export const READINGS_STREAM_VIEW = 'NEW_AND_OLD_IMAGES' as const;
export const LEDGER_KEYS = { partitionKey: 'pk' } as const;
/** Ledger records expire (DynamoDB TTL) at this epoch-seconds attribute. */
export const LEDGER_TTL_ATTRIBUTE = 'ttl';

export interface TableNames {
  readings: string;
  ledger: string;
}
