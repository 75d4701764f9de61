/**
 * DynamoDB rejects a request whose ExpressionAttributeNames or ExpressionAttributeValues hold a
 * placeholder that no expression uses. Builders that assemble expressions from optional parts
 * declare every placeholder they might need and pass the request through here.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';

export interface ExpressionParts {
  UpdateExpression?: string;
  ConditionExpression?: string;
  KeyConditionExpression?: string;
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: Record<string, AttributeValue>;
}

export function withoutUnusedPlaceholders<T extends ExpressionParts>(parts: T): T {
  const text = [parts.UpdateExpression, parts.ConditionExpression, parts.KeyConditionExpression].filter(Boolean).join(' ');
  const used = (placeholder: string) => new RegExp(`${placeholder.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![A-Za-z0-9_])`).test(text);
  const keep = <V>(record: Record<string, V> | undefined) =>
    record && Object.fromEntries(Object.entries(record).filter(([placeholder]) => used(placeholder)));
  return {
    ...parts,
    ExpressionAttributeNames: keep(parts.ExpressionAttributeNames),
    ExpressionAttributeValues: keep(parts.ExpressionAttributeValues),
  };
}
