// The DynamoDB Local stand-in lives with the other stand-ins (local mode starts it too).
export * from '../../local/dynamodb-local.ts';
