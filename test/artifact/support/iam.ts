/**
 * A small IAM evaluator over the synthesized template: the identity policies attached to a
 * function's role, with the template's intrinsics resolved to the names and ARNs the test gave the
 * resources, judged against the (action, resource ARN, condition keys) of each call a bundle made.
 *
 * Deliberately narrow (docs/testing.md lists the limits): identity policies only (no resource
 * policies, SCPs, boundaries or session policies), Allow/Deny with Action/NotAction,
 * Resource/NotResource and `*`/`?` wildcards, and the condition operators the template uses. A
 * condition operator it does not know makes an Allow not apply and a Deny apply, so an unknown
 * never passes a call.
 */

/** One AWS API call as the recorder derived it from the HTTP request. */
export interface AwsCall {
  /** IAM action, e.g. `dynamodb:UpdateItem`. */
  action: string;
  /** Resource ARN (or `*` for actions without resource-level permissions). */
  resource: string;
  /** Condition keys the request carries, e.g. `cloudwatch:namespace`. */
  context: Record<string, string>;
}

export interface PolicyStatement {
  /** Where the statement comes from (policy logical id and index), for messages. */
  source: string;
  Effect: 'Allow' | 'Deny';
  Action?: string[];
  NotAction?: string[];
  Resource?: string[];
  NotResource?: string[];
  Condition?: Record<string, Record<string, string[]>>;
}

export type Decision = { allowed: true; by: PolicyStatement[] } | { allowed: false; reason: string };

export interface CfnTemplate {
  Resources: Record<string, { Type: string; Properties?: Record<string, unknown>; Metadata?: Record<string, unknown> }>;
}

/** What the test made of each resource: what `Ref` and `Fn::GetAtt` resolve to. */
export interface PhysicalResources {
  region: string;
  account: string;
  ref(logicalId: string): string | undefined;
  getAtt(logicalId: string, attribute: string): string | undefined;
}

/** Resolves Ref, Fn::GetAtt, Fn::Join, Fn::Sub (without a variable map), Fn::Select and pseudo parameters. */
export function resolveCfn(value: unknown, physical: PhysicalResources): unknown {
  if (Array.isArray(value)) return value.map((v) => resolveCfn(v, physical));
  if (typeof value !== 'object' || value === null) return value;
  const entries = Object.entries(value);
  if (entries.length === 1) {
    const [[fn, arg]] = entries as [[string, unknown]];
    if (fn === 'Ref') return ref(String(arg), physical);
    if (fn === 'Fn::GetAtt') {
      const [id, attribute] = Array.isArray(arg) ? (arg as string[]) : String(arg).split('.');
      const resolved = physical.getAtt(String(id), String(attribute));
      if (resolved === undefined) throw new Error(`Fn::GetAtt ${id}.${attribute}: the test gave this resource no ${attribute}`);
      return resolved;
    }
    if (fn === 'Fn::Join') {
      const [separator, parts] = arg as [string, unknown[]];
      return (resolveCfn(parts, physical) as unknown[]).map(String).join(separator);
    }
    if (fn === 'Fn::Select') {
      const [index, list] = arg as [number, unknown];
      return (resolveCfn(list, physical) as unknown[])[Number(index)];
    }
    if (fn === 'Fn::Split') {
      const [separator, text] = arg as [string, unknown];
      return String(resolveCfn(text, physical)).split(separator);
    }
    if (fn === 'Fn::Sub' && typeof arg === 'string')
      return arg.replace(/\$\{([^}]+)\}/g, (_, name: string) =>
        String(name.includes('.') ? resolveCfn({ 'Fn::GetAtt': name }, physical) : ref(name, physical)),
      );
    if (fn.startsWith('Fn::')) throw new Error(`intrinsic ${fn} is not supported by the test resolver`);
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, resolveCfn(v, physical)]));
}

function ref(name: string, physical: PhysicalResources): string {
  switch (name) {
    case 'AWS::Region':
      return physical.region;
    case 'AWS::AccountId':
      return physical.account;
    case 'AWS::Partition':
      return 'aws';
    case 'AWS::URLSuffix':
      return 'amazonaws.com';
    case 'AWS::StackName':
      return 'Meterbridge-artifact';
    default: {
      const resolved = physical.ref(name);
      if (resolved === undefined) throw new Error(`Ref ${name}: the test gave this resource no physical name`);
      return resolved;
    }
  }
}

const list = (value: unknown): string[] | undefined => (value === undefined ? undefined : (Array.isArray(value) ? value : [value]).map(String));

/**
 * Every statement of the identity policies attached to `roleLogicalId`: AWS::IAM::Policy and
 * AWS::IAM::ManagedPolicy resources naming the role, and the role's inline policies. A role with
 * AWS managed policy ARNs is refused: their contents are not in the template.
 */
export function roleStatements(template: CfnTemplate, roleLogicalId: string, physical: PhysicalResources): PolicyStatement[] {
  const role = template.Resources[roleLogicalId];
  if (role?.Type !== 'AWS::IAM::Role') throw new Error(`${roleLogicalId} is not an AWS::IAM::Role`);
  if (role.Properties?.ManagedPolicyArns !== undefined)
    throw new Error(`${roleLogicalId} has managed policy ARNs, whose statements the template does not hold`);
  const documents: Array<{ source: string; document: unknown }> = [];
  for (const [index, inline] of ((role.Properties?.Policies as Array<{ PolicyDocument: unknown }> | undefined) ?? []).entries()) {
    documents.push({ source: `${roleLogicalId}.Policies[${index}]`, document: inline.PolicyDocument });
  }
  for (const [id, resource] of Object.entries(template.Resources)) {
    if (resource.Type !== 'AWS::IAM::Policy' && resource.Type !== 'AWS::IAM::ManagedPolicy') continue;
    const roles = (resource.Properties?.Roles as unknown[] | undefined) ?? [];
    if (roles.some((r) => typeof r === 'object' && r !== null && (r as { Ref?: string }).Ref === roleLogicalId)) {
      documents.push({ source: id, document: resource.Properties?.PolicyDocument });
    }
  }
  const statements: PolicyStatement[] = [];
  for (const { source, document } of documents) {
    const resolved = resolveCfn(document, physical) as { Statement: Array<Record<string, unknown>> };
    for (const [index, raw] of resolved.Statement.entries()) {
      if (raw.Principal !== undefined || raw.NotPrincipal !== undefined)
        throw new Error(`${source}[${index}]: an identity policy statement with a Principal`);
      statements.push({
        source: `${source}[${index}]`,
        Effect: raw.Effect === 'Deny' ? 'Deny' : 'Allow',
        Action: list(raw.Action),
        NotAction: list(raw.NotAction),
        Resource: list(raw.Resource),
        NotResource: list(raw.NotResource),
        Condition:
          raw.Condition === undefined
            ? undefined
            : Object.fromEntries(
                Object.entries(raw.Condition as Record<string, Record<string, unknown>>).map(([op, keys]) => [
                  op,
                  Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, list(v) ?? []])),
                ]),
              ),
      });
    }
  }
  return statements;
}

/** `*` any run of characters, `?` one; IAM's wildcard matching. */
export function wildcardMatch(pattern: string, value: string, ignoreCase = false): boolean {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${source}$`, ignoreCase ? 'is' : 's').test(value);
}

const CONDITION_OPERATORS: Record<string, (expected: string[], actual: string | undefined) => boolean> = {
  StringEquals: (expected, actual) => actual !== undefined && expected.includes(actual),
  StringNotEquals: (expected, actual) => actual === undefined || !expected.includes(actual),
  StringLike: (expected, actual) => actual !== undefined && expected.some((p) => wildcardMatch(p, actual)),
  StringNotLike: (expected, actual) => actual === undefined || !expected.some((p) => wildcardMatch(p, actual)),
  ArnEquals: (expected, actual) => actual !== undefined && expected.some((p) => wildcardMatch(p, actual)),
  ArnLike: (expected, actual) => actual !== undefined && expected.some((p) => wildcardMatch(p, actual)),
  Bool: (expected, actual) => actual !== undefined && expected.map((e) => e.toLowerCase()).includes(actual.toLowerCase()),
};

/** Whether every condition of the statement holds; `undefined` when an operator is unknown. */
function conditionsHold(statement: PolicyStatement, call: AwsCall): boolean | undefined {
  for (const [rawOperator, keys] of Object.entries(statement.Condition ?? {})) {
    const ifExists = rawOperator.endsWith('IfExists');
    const operator = CONDITION_OPERATORS[ifExists ? rawOperator.slice(0, -'IfExists'.length) : rawOperator];
    if (operator === undefined) return undefined;
    for (const [key, expected] of Object.entries(keys)) {
      const actual = Object.entries(call.context).find(([k]) => k.toLowerCase() === key.toLowerCase())?.[1];
      if (actual === undefined && ifExists) continue;
      if (!operator(expected, actual)) return false;
    }
  }
  return true;
}

function matchesAction(statement: PolicyStatement, action: string): boolean {
  if (statement.Action) return statement.Action.some((p) => wildcardMatch(p, action, true));
  if (statement.NotAction) return !statement.NotAction.some((p) => wildcardMatch(p, action, true));
  return false;
}

function matchesResource(statement: PolicyStatement, resource: string): boolean {
  if (statement.Resource) return statement.Resource.some((p) => wildcardMatch(p, resource));
  if (statement.NotResource) return !statement.NotResource.some((p) => wildcardMatch(p, resource));
  return false;
}

/** IAM's order: an applicable Deny wins, then any applicable Allow, else the implicit deny. */
export function evaluate(statements: readonly PolicyStatement[], call: AwsCall): Decision {
  const allows: PolicyStatement[] = [];
  for (const statement of statements) {
    if (!matchesAction(statement, call.action) || !matchesResource(statement, call.resource)) continue;
    const holds = conditionsHold(statement, call);
    if (statement.Effect === 'Deny' && holds !== false) return { allowed: false, reason: `explicitly denied by ${statement.source}` };
    if (statement.Effect === 'Allow' && holds === true) allows.push(statement);
  }
  if (allows.length > 0) return { allowed: true, by: allows };
  return {
    allowed: false,
    reason: `no statement allows ${call.action} on ${call.resource}${Object.keys(call.context).length ? ` with ${JSON.stringify(call.context)}` : ''}`,
  };
}
