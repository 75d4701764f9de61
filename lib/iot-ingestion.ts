/**
 * Ingestion path 1: gateways publish telemetry over MQTT (mTLS, one X.509 certificate per device)
 * to an AWS IoT Core Basic Ingest topic; a topic rule forwards every message to an SQS queue,
 * and the ingest function drains the queue into the reading store.
 *
 *   gateway ─$aws/rules/<rule>/gateways/<thing>/telemetry─▶ topic rule ─▶ queue ─▶ ingest λ ─▶ store
 *                                                              └ error action ─▶ DLQ ◀─ rejected input
 *
 * The queue sits between IoT and Lambda because gateways report on the quarter hour: it absorbs
 * the :00/:15 peaks, retries a failed batch, and parks what cannot be stored in one dead-letter
 * queue that SQS's native redrive replays as a whole.
 */
import { fileURLToPath } from 'node:url';
import { Aws, Duration, Stack, Token, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as iot from 'aws-cdk-lib/aws-iot';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { FUNCTION_TIMEOUT_SECONDS } from '../lambdas/core/work-units.ts';
import {
  basicIngestTopicPrefix,
  CREATE_FROM_CSR_ACCEPTED_TOPIC,
  CREATE_FROM_CSR_REJECTED_TOPIC,
  CREATE_FROM_CSR_TOPIC,
  fleetRuleName,
  GATEWAY_EVENTS_TOPIC_FILTER,
  gatewayEventTopic,
  TELEMETRY_TOPIC_FILTER,
  telemetryTopic,
} from '../shared/telemetry.ts';
import type { IngestionMonitoring } from './monitoring.ts';
import { executionRoleOf, MeterbridgeFunction } from './meterbridge-function.ts';
import type { StageSettings } from './settings.ts';
import type { ReadingStorage } from './storage.ts';

const INGEST_ENTRY = fileURLToPath(new URL('../lambdas/iot-ingest.ts', import.meta.url));
const FLEET_ENTRY = fileURLToPath(new URL('../lambdas/gateway-fleet.ts', import.meta.url));

/**
 * Fleet rule SQL: rotation notices and status reports, byte-exact like telemetry, with
 * `principal()` (the id of the certificate the event came over), which the fleet function checks
 * against the thing's attachments before it activates or revokes anything.
 */
export const FLEET_RULE_SQL = `SELECT encode(*, 'base64') AS payload, topic() AS topic, principal() AS principal, timestamp() AS receivedAt FROM '${GATEWAY_EVENTS_TOPIC_FILTER}'`;

/** Hard limit on one ingest invocation; the queue's visibility timeout is derived from it. */
const INGEST_TIMEOUT = Duration.seconds(FUNCTION_TIMEOUT_SECONDS['iot-message']);

/**
 * IoT policy variable holding the name of the thing whose certificate opened the connection.
 * It has to reach IoT literally: it is written in a plain string, never inside Fn::Sub.
 */
export const THING_NAME_VARIABLE = '${iot:Connection.Thing.ThingName}';

/**
 * Rule SQL. The payload is forwarded byte-exact as base64 (not parsed by the rules engine), so a
 * message the handler rejects can be replayed exactly as the gateway sent it; the thing name is
 * taken from the topic by the handler, not trusted from the payload.
 */
export const TELEMETRY_RULE_SQL = `SELECT encode(*, 'base64') AS payload, topic() AS topic, timestamp() AS receivedAt FROM '${TELEMETRY_TOPIC_FILTER}'`;

export interface IotIngestionProps {
  /** Stage settings: names of the IoT resources, the function's log retention and block time zone. */
  readonly settings: StageSettings;

  /** Tables the ingest function stores readings in and claims messages on. */
  readonly storage: ReadingStorage;
}

/**
 * Gateway thing type, IoT policy, Basic Ingest topic rule, ingest queue with its dead-letter
 * queue, and the ingest function consuming the queue.
 */
export class IotIngestion extends Construct {
  /** Name of the topic rule; IoT allows only letters, digits and `_` in it. */
  public readonly ruleName: string;
  /** `$aws/rules/<rule>/gateways`: a gateway publishes to `<prefix>/<thingName>/telemetry`. */
  public readonly basicIngestTopicPrefix: string;
  /** Standard queue between the topic rule and the ingest function. */
  public readonly queue: sqs.Queue;
  /**
   * One dead-letter queue for everything that was not stored: messages that failed
   * `maxReceiveCount` times, rule failures (IoT's error-action envelope) and messages the
   * handler rejected (with a `rejectReason` message attribute). Redriving it replays all of them.
   */
  public readonly deadLetterQueue: sqs.Queue;
  /** Consumes `queue` and stores the readings. */
  public readonly ingestFunction: MeterbridgeFunction;
  /** IoT policy to attach to every gateway certificate. */
  public readonly policy: iot.CfnPolicy;
  /** Thing type every gateway thing is created with. */
  public readonly thingType: iot.CfnThingType;
  /** The Basic Ingest topic rule. */
  public readonly topicRule: iot.CfnTopicRule;
  /** Rotation notices and status reports (`meterbridge_<stage>_fleet`) to the fleet function. */
  public readonly fleetRule: iot.CfnTopicRule;
  /** Activates/retires rotated certificates and turns status reports into fleet metrics. */
  public readonly fleetFunction: MeterbridgeFunction;

  /** What the operations construct watches on this path. */
  public get monitoring(): IngestionMonitoring {
    return {
      source: 'iot',
      functions: [
        { label: 'ingest', fn: this.ingestFunction },
        { label: 'fleet', fn: this.fleetFunction },
      ],
      queues: [{ label: 'telemetry', queue: this.queue, deadLetterQueue: this.deadLetterQueue }],
      // Gateways report every 15 minutes; a fleet silent for an hour is an outage, not a lull.
      expectedSilenceMinutes: 60,
      topicRules: [
        { label: 'telemetry', ruleName: this.ruleName },
        { label: 'fleet', ruleName: fleetRuleName(this.ruleName) },
      ],
    };
  }

  constructor(scope: Construct, id: string, props: IotIngestionProps) {
    super(scope, id);
    const { settings, storage } = props;

    this.ruleName = `meterbridge_${settings.stage.replace(/-/g, '_')}_telemetry`;
    this.basicIngestTopicPrefix = basicIngestTopicPrefix(this.ruleName);

    this.thingType = new iot.CfnThingType(this, 'GatewayThingType', {
      thingTypeName: `meterbridge-${settings.stage}-gateway`,
      thingTypeProperties: { thingTypeDescription: `meterbridge ${settings.stage} field gateway publishing meter telemetry` },
    });
    this.deadLetterQueue = this.createDeadLetterQueue(settings);
    this.queue = this.createQueue(settings);
    this.ingestFunction = this.createIngestFunction(settings, storage);
    this.topicRule = this.createTopicRule(settings);
    this.policy = this.createGatewayPolicy(settings);
    this.fleetFunction = this.createFleetFunction(settings);
    this.fleetRule = this.createFleetRule(settings);
  }

  // --- gateway fleet: certificate rotation and status ------------------------------------------

  private createFleetFunction(settings: StageSettings): MeterbridgeFunction {
    const fn = new MeterbridgeFunction(this, 'FleetFunction', {
      entry: FLEET_ENTRY,
      settings,
      serviceName: 'gateway-fleet',
      description: `meterbridge ${settings.stage}: gateway certificate rotation (activate new, revoke old) and status metrics`,
      timeout: Duration.seconds(30),
      environment: { GATEWAY_POLICY_NAME: this.policy.policyName! },
    });
    fn.grantPutMetrics();
    const certArns = Stack.of(this).formatArn({ service: 'iot', resource: 'cert', resourceName: '*' });
    const thingArns = Stack.of(this).formatArn({ service: 'iot', resource: 'thing', resourceName: '*' });
    // Only what rotation needs: read certificates and attachments, change status, attach and detach.
    const rotation = new iam.Policy(this, 'FleetRotationPolicy', {
      statements: [
        new iam.PolicyStatement({
          actions: ['iot:DescribeCertificate', 'iot:UpdateCertificate', 'iot:AttachPolicy', 'iot:DetachPolicy'],
          resources: [certArns],
        }),
        new iam.PolicyStatement({
          actions: ['iot:ListThingPrincipals', 'iot:AttachThingPrincipal', 'iot:DetachThingPrincipal'],
          resources: [thingArns],
        }),
        // Read-only lists by certificate; on '*' so they hold whether IAM scopes them to the certificate or not.
        new iam.PolicyStatement({ actions: ['iot:ListPrincipalThings', 'iot:ListAttachedPolicies'], resources: ['*'] }),
      ],
    });
    rotation.attachToRole(executionRoleOf(fn));
    fn.node.addDependency(rotation);
    const why =
      'Certificates and things are created per gateway after deploy (provisioning, rotation), so their ARNs cannot be listed; ' +
      'the function acts only on the certificates of the thing whose attached certificate sent the notice (lambdas/core/gateway-rotation.ts).';
    const nag = (resource: string) => `AwsSolutions-IAM5[Resource::${resource}]`;
    // cdk-nag names the ARN as synthesized: tokens as <AWS::…>, a region or account the stage pins as its literal value.
    const stack = Stack.of(this);
    const shown = (value: string, token: string) => (Token.isUnresolved(value) ? token : value);
    const partitioned = (type: string) =>
      `arn:${shown(stack.partition, '<AWS::Partition>')}:iot:${shown(stack.region, '<AWS::Region>')}:${shown(stack.account, '<AWS::AccountId>')}:${type}/*`;
    Validations.of(rotation).acknowledge(
      { id: nag(partitioned('cert')), reason: why },
      { id: nag(partitioned('thing')), reason: why },
      {
        id: nag('*'),
        reason:
          'iot:ListPrincipalThings and iot:ListAttachedPolicies are read-only lists; granted on * so they hold whatever resource IAM scopes them to.',
      },
    );
    return fn;
  }

  private createFleetRule(settings: StageSettings): iot.CfnTopicRule {
    const ruleName = fleetRuleName(this.ruleName);
    const ruleArn = Stack.of(this).formatArn({ service: 'iot', resource: 'rule', resourceName: ruleName });
    const rule = new iot.CfnTopicRule(this, 'FleetRule', {
      ruleName,
      topicRulePayload: {
        description: `meterbridge ${settings.stage}: gateway rotation notices and status reports (Basic Ingest) to the fleet function`,
        sql: FLEET_RULE_SQL,
        awsIotSqlVersion: '2016-03-23',
        ruleDisabled: false,
        actions: [{ lambda: { functionArn: this.fleetFunction.functionArn } }],
      },
    });
    this.fleetFunction.addPermission('InvokedByFleetRule', {
      principal: new iam.ServicePrincipal('iot.amazonaws.com'),
      sourceArn: ruleArn,
      sourceAccount: Aws.ACCOUNT_ID,
    });
    return rule;
  }

  // --- queues -------------------------------------------------------------------------------

  private createDeadLetterQueue(settings: StageSettings): sqs.Queue {
    // SQS-managed SSE rather than a customer managed key: neither IoT's rule role nor the
    // function then needs KMS grants, and nothing else reads these queues.
    return new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // The maximum. A standard queue keeps a message's original enqueue time when it is
      // dead-lettered, so the DLQ must keep messages longer than the source queue does.
      retentionPeriod: Duration.days(14),
      // It holds the only copy of what was not stored; deleting the stack must not delete it.
      removalPolicy: settings.removalPolicy,
    });
  }

  private createQueue(settings: StageSettings): sqs.Queue {
    return new sqs.Queue(this, 'Queue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // AWS guidance for Lambda event sources: six times the function timeout, which leaves
      // Lambda time to retry a throttled invocation before the batch becomes visible again
      // (and each reappearance counts towards maxReceiveCount).
      visibilityTimeout: Duration.seconds(INGEST_TIMEOUT.toSeconds() * 6),
      retentionPeriod: Duration.days(4),
      removalPolicy: settings.removalPolicy,
      deadLetterQueue: {
        queue: this.deadLetterQueue,
        // Five receives ride out throttling and a deploy in progress, without keeping a poison
        // message cycling (and its batch slot taken) for long.
        maxReceiveCount: 5,
      },
    });
  }

  // --- ingest function ----------------------------------------------------------------------

  private createIngestFunction(settings: StageSettings, storage: ReadingStorage): MeterbridgeFunction {
    const ingestFunction = new MeterbridgeFunction(this, 'IngestFunction', {
      entry: INGEST_ENTRY,
      settings,
      serviceName: 'iot-ingest',
      description: `meterbridge ${settings.stage}: stores gateway telemetry from the IoT ingest queue`,
      timeout: INGEST_TIMEOUT,
      environment: {
        READINGS_TABLE: storage.readingsTable.tableName,
        LEDGER_TABLE: storage.ledgerTable.tableName,
        BLOCK_TIME_ZONE: settings.blockTimeZone,
        DEAD_LETTER_QUEUE_URL: this.deadLetterQueue.queueUrl,
      },
    });
    storage.grantStoreWrite(ingestFunction);
    storage.grantLedger(ingestFunction);
    // The handler parks invalid messages in the DLQ itself, with the reason as an attribute.
    this.deadLetterQueue.grantSendMessages(ingestFunction);
    ingestFunction.grantPutMetrics();

    ingestFunction.addEventSource(
      new SqsEventSource(this.queue, {
        // A bad message fails alone instead of sending its 49 neighbours back to the queue.
        reportBatchItemFailures: true,
        // 50 messages of at most 128 KB (IoT's message limit) stay well inside a 30 s
        // invocation, and fewer invocations mean fewer ledger round trips and metric flushes.
        batchSize: 50,
        // Gateways report in bursts at :00 and :15; waiting up to 2 s fills batches during a
        // burst while adding at most 2 s of latency when traffic is light.
        maxBatchingWindow: Duration.seconds(2),
        // Caps the write rate on DynamoDB, so draining a backlog (after an outage, or a fleet
        // catching up) does not throttle the store for everyone else; the queue absorbs the rest.
        maxConcurrency: 20,
      }),
    );
    return ingestFunction;
  }

  // --- topic rule ---------------------------------------------------------------------------

  private createTopicRule(settings: StageSettings): iot.CfnTopicRule {
    const ruleArn = Stack.of(this).formatArn({ service: 'iot', resource: 'rule', resourceName: this.ruleName });
    const ruleAction = this.ruleRole('RuleActionRole', ruleArn, this.queue, 'send telemetry to the ingest queue');
    const ruleErrorAction = this.ruleRole('RuleErrorActionRole', ruleArn, this.deadLetterQueue, 'send rule failures to the dead-letter queue');

    const topicRule = new iot.CfnTopicRule(this, 'TelemetryRule', {
      ruleName: this.ruleName,
      topicRulePayload: {
        description: `meterbridge ${settings.stage}: gateway telemetry (Basic Ingest) to the ingest queue`,
        sql: TELEMETRY_RULE_SQL,
        awsIotSqlVersion: '2016-03-23',
        ruleDisabled: false,
        // useBase64 false: the SQL already base64-encodes the payload inside a JSON body.
        actions: [{ sqs: { queueUrl: this.queue.queueUrl, roleArn: ruleAction.roleArn, useBase64: false } }],
        // Without an error action a failed SendMessage (throttling, a removed permission) is
        // dropped silently. IoT's error envelope carries base64OriginalPayload, which the
        // ingest handler understands, so redriving the DLQ replays rule failures as well.
        errorAction: { sqs: { queueUrl: this.deadLetterQueue.queueUrl, roleArn: ruleErrorAction.roleArn, useBase64: false } },
      },
    });
    // Messages may arrive as soon as the rule exists: let the roles' policies exist first.
    topicRule.node.addDependency(ruleAction, ruleErrorAction);
    return topicRule;
  }

  // --- device policy ------------------------------------------------------------------------

  private createGatewayPolicy(settings: StageSettings): iot.CfnPolicy {
    // One policy for every gateway: the policy variable confines each certificate to the thing
    // it is attached to. The MQTT client id must therefore equal the thing name.
    return new iot.CfnPolicy(this, 'GatewayPolicy', {
      policyName: `meterbridge-${settings.stage}-gateway`,
      policyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Action: 'iot:Connect',
            Resource: iotArn('client', THING_NAME_VARIABLE),
            // Without it, any certificate carrying this policy could connect under any client
            // id; with it, only as the thing the certificate is attached to.
            Condition: { Bool: { 'iot:Connection.Thing.IsAttached': 'true' } },
          },
          {
            // Only the gateway's own telemetry and event topics (Basic Ingest), and the
            // CreateCertificateFromCsr request: IoT answers it on the requesting connection only,
            // and the certificate is usable only once the fleet function attached it to this thing.
            Effect: 'Allow',
            Action: 'iot:Publish',
            Resource: [
              iotArn('topic', telemetryTopic(this.ruleName, THING_NAME_VARIABLE)),
              iotArn('topic', gatewayEventTopic(this.ruleName, THING_NAME_VARIABLE, 'rotation')),
              iotArn('topic', gatewayEventTopic(this.ruleName, THING_NAME_VARIABLE, 'status')),
              iotArn('topic', CREATE_FROM_CSR_TOPIC),
            ],
          },
          {
            // The two answers of CreateCertificateFromCsr; nothing else can be subscribed to.
            Effect: 'Allow',
            Action: 'iot:Subscribe',
            Resource: [CREATE_FROM_CSR_ACCEPTED_TOPIC, CREATE_FROM_CSR_REJECTED_TOPIC].map((topic) => iotArn('topicfilter', topic)),
          },
          {
            Effect: 'Allow',
            Action: 'iot:Receive',
            Resource: [CREATE_FROM_CSR_ACCEPTED_TOPIC, CREATE_FROM_CSR_REJECTED_TOPIC].map((topic) => iotArn('topic', topic)),
          },
        ],
      },
    });
  }

  /**
   * A role IoT assumes for one rule action, allowed nothing but SendMessage on `queue`, and only
   * on behalf of this rule (confused-deputy guard).
   */
  private ruleRole(id: string, ruleArn: string, queue: sqs.IQueue, purpose: string): iam.Role {
    const role = new iam.Role(this, id, {
      description: `Assumed by IoT rule ${this.ruleName} to ${purpose}`,
      assumedBy: new iam.ServicePrincipal('iot.amazonaws.com').withConditions({
        StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        ArnLike: { 'aws:SourceArn': ruleArn },
      }),
    });
    // Not queue.grantSendMessages: that adds GetQueueAttributes and GetQueueUrl, which IoT never calls.
    role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [queue.queueArn] }));
    return role;
  }
}

/**
 * `arn:<partition>:iot:<region>:<account>:<type>/<name>` by concatenation: the name may hold
 * IoT policy variables, which Fn::Sub would try to resolve as its own `${...}` references.
 */
function iotArn(type: 'client' | 'topic' | 'topicfilter', name: string): string {
  return `arn:${Aws.PARTITION}:iot:${Aws.REGION}:${Aws.ACCOUNT_ID}:${type}/${name}`;
}
