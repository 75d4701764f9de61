import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { ReadingStorage } from '../../lib/storage.ts';

function storageStack(props: ConstructorParameters<typeof ReadingStorage>[2] = {}): { stack: Stack; storage: ReadingStorage } {
  const stack = new Stack();
  return { stack, storage: new ReadingStorage(stack, 'Storage', props) };
}

const readingsKeySchema = [
  { AttributeName: 'pk', KeyType: 'HASH' },
  { AttributeName: 'sk', KeyType: 'RANGE' },
];
const ledgerKeySchema = [{ AttributeName: 'pk', KeyType: 'HASH' }];

/** The single policy statement the grant left on the role, with the table's logical id. */
function grantedStatement(grant: (storage: ReadingStorage, role: iam.IGrantable) => void): { statements: unknown; template: Template } {
  const { stack, storage } = storageStack();
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  grant(storage, role);
  const template = Template.fromStack(stack);
  const policies = template.findResources('AWS::IAM::Policy');
  const [policy, ...others] = Object.values(policies);
  assert.equal(others.length, 0, 'one policy expected');
  return { statements: (policy as { Properties: { PolicyDocument: { Statement: unknown } } }).Properties.PolicyDocument.Statement, template };
}

function tableLogicalId(template: Template, keySchema: unknown[]): string {
  const ids = Object.keys(template.findResources('AWS::DynamoDB::Table', { Properties: { KeySchema: keySchema } }));
  assert.equal(ids.length, 1);
  return ids[0] as string;
}

describe('ReadingStorage', () => {
  it('creates the readings table with pk/sk string keys', () => {
    // GIVEN / WHEN
    const { stack } = storageStack();

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: readingsKeySchema,
      AttributeDefinitions: Match.arrayWith([
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ]),
    });
  });

  it('creates the ledger table with a pk string key and TTL on `ttl`', () => {
    const { stack } = storageStack();

    Template.fromStack(stack).hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: ledgerKeySchema,
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
    });
  });

  for (const [name, keySchema] of [
    ['readings', readingsKeySchema],
    ['ledger', ledgerKeySchema],
  ] as const) {
    it(`bills the ${name} table on demand, with PITR and server-side encryption`, () => {
      const { stack } = storageStack();

      Template.fromStack(stack).hasResourceProperties('AWS::DynamoDB::Table', {
        KeySchema: keySchema,
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        SSESpecification: { SSEEnabled: true },
      });
    });

    it(`retains the ${name} table by default`, () => {
      const { stack } = storageStack();

      Template.fromStack(stack).hasResource('AWS::DynamoDB::Table', {
        Properties: Match.objectLike({ KeySchema: keySchema }),
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
      });
    });
  }

  it('deletes both tables when the removal policy says destroy', () => {
    // GIVEN / WHEN
    const { stack } = storageStack({ removalPolicy: RemovalPolicy.DESTROY });

    // THEN
    const tables = Template.fromStack(stack).findResources('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete' });
    assert.equal(Object.keys(tables).length, 2);
  });

  it('turns on deletion protection for both tables when asked', () => {
    const { stack } = storageStack({ deletionProtection: true });

    const tables = Template.fromStack(stack).findResources('AWS::DynamoDB::Table', {
      Properties: { DeletionProtectionEnabled: true },
    });
    assert.equal(Object.keys(tables).length, 2);
  });

  it('grantStoreWrite allows exactly UpdateItem and GetItem (the meter catalog, issue 13) on the readings table', () => {
    // GIVEN / WHEN
    const { statements, template } = grantedStatement((storage, role) => storage.grantStoreWrite(role));

    // THEN
    assert.deepEqual(statements, [
      {
        Action: ['dynamodb:UpdateItem', 'dynamodb:GetItem'],
        Effect: 'Allow',
        Resource: { 'Fn::GetAtt': [tableLogicalId(template, readingsKeySchema), 'Arn'] },
      },
    ]);
  });

  it('grantStoreRead allows exactly Query on the readings table', () => {
    const { statements, template } = grantedStatement((storage, role) => storage.grantStoreRead(role));

    assert.deepEqual(statements, [
      { Action: 'dynamodb:Query', Effect: 'Allow', Resource: { 'Fn::GetAtt': [tableLogicalId(template, readingsKeySchema), 'Arn'] } },
    ]);
  });

  it('grantLedger allows exactly UpdateItem and GetItem on the ledger table', () => {
    const { statements, template } = grantedStatement((storage, role) => storage.grantLedger(role));

    assert.deepEqual(statements, [
      {
        Action: ['dynamodb:UpdateItem', 'dynamodb:GetItem'],
        Effect: 'Allow',
        Resource: { 'Fn::GetAtt': [tableLogicalId(template, ledgerKeySchema), 'Arn'] },
      },
    ]);
  });
});
