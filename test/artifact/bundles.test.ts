/**
 * The shipped-artifact stage: the app as `cdk synth` builds it (bin/app.ts, cdk.json), SMT switched
 * off (the `dev` stage as shipped) and on (FTPS and SFTP stages pointed at the local SMT servers).
 * For every Lambda function in each template, its bundle from the cloud assembly is run on Node 22
 * with exactly the template's environment plus the runtime's own variables, where only node
 * built-ins and the runtime's AWS SDK resolve (support/lambda-sandbox.ts), against local stand-ins
 * behind recording proxies; then
 *   - the stored outcome is checked (readings in DynamoDB, archived objects, DLQ messages, metrics
 *     read back from moto's CloudWatch, files gone from the SMT server);
 *   - every AWS call each function made must be allowed by the IAM policies the template attaches
 *     to its role (support/iam.ts), on the action and resource ARN actually called;
 *   - every statement that allowed a call is needed: without it some call is denied.
 */
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type _Record as StreamsRecord,
} from '@aws-sdk/client-dynamodb-streams';
import { PutRuleCommand, PutTargetsCommand } from '@aws-sdk/client-eventbridge';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { FEED_EVENT_SOURCE } from '../../lambdas/core/feed/feed.ts';
import { scanStoredReadings } from '../../local/progress.ts';
import { toLambdaRecord } from '../../local/readings-feed.ts';
import {
  AttachPolicyCommand,
  AttachThingPrincipalCommand,
  CreateKeysAndCertificateCommand,
  CreatePolicyCommand,
  CreateThingCommand,
  DescribeCertificateCommand,
  ListThingPrincipalsCommand,
  UpdateCertificateCommand,
} from '@aws-sdk/client-iot';
import { ReadingStore } from '../../lambdas/core/reading-store.ts';
import { EsiidDays } from '../../lambdas/core/smt/esiid-days.ts';
import { readMetricTotals } from '../../local/cloudwatch.ts';
import { toSqsEvent } from '../../local/iot-bridge.ts';
import { buildReadyDelivery, toApiGatewayEvent } from '../../local/ready-http.ts';
import { toS3NotificationBody } from '../../local/s3-server.ts';
import { createGpgKeyring, disposeSmtFile, writeSmtFile, type GpgKeyring, type SmtFile } from '../../local/smt-files.ts';
import { shareTree, startLocalSmtServers, type LocalSmtServers } from '../../local/smt-servers.ts';
import { appContext, synthesize, type Assembly, type SynthesizedFunction } from './support/assembly.ts';
import { evaluate, resolveCfn, roleStatements, type PolicyStatement } from './support/iam.ts';
import { bundleProblems, createRuntimeRoot, runBundle, runtimeEnvironment, type BundleRun, type RuntimeRoot } from './support/lambda-sandbox.ts';
import { SESSION_TOKEN_PREFIX, type RecordedCall } from './support/recorder.ts';
import { ACCOUNT, provision, REGION, startStandIns, type Provisioned, type StandIns } from './support/stand-ins.ts';

/** CDK's own deploy-time handlers (inline code, not our bundles): named so a new function cannot slip past. */
const CDK_PROVIDED = [/^BucketNotificationsHandler[0-9a-f]{32}/];

const READY_CLIENT_SECRET = 'artifact-ready-client-secret';
/** Signatures are required by default (requireSignature): the secret carries a data key of its own. */
const READY_SIGNING_KEY = 'artifact-ready-signing-key';
const ESIID = '10443720000000001';

let standIns: StandIns;
let servers: LocalSmtServers;
let keyring: GpgKeyring;
let runtime: RuntimeRoot;
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'mb-artifact-'));
  // proftpd serves `served` as an unprivileged user, who must be able to pass through here.
  await chmod(work, 0o711);
  standIns = await startStandIns();
  [servers, keyring, runtime] = await Promise.all([
    startLocalSmtServers({ root: join(work, 'served'), stateDir: join(work, 'servers') }),
    createGpgKeyring('rsa'),
    createRuntimeRoot(),
  ]);
});

after(async () => {
  await Promise.allSettled([standIns?.stop(), servers?.stop(), keyring?.dispose(), runtime?.dispose()]);
  if (work) await rm(work, { recursive: true, force: true });
});

interface Stage {
  title: string;
  name: string;
  /** Context on top of cdk.json's, as `cdk synth -c` would pass it. */
  context: () => Record<string, unknown>;
  smt: 'off' | 'ftps' | 'sftp';
}

const stages: Stage[] = [
  { title: 'SMT disabled (the dev stage as shipped)', name: 'dev', context: () => ({}), smt: 'off' },
  {
    title: 'SMT enabled over FTPS',
    name: 'art-ftps',
    context: () => smtStage('art-ftps', { protocol: 'ftps', host: '127.0.0.1', port: servers.ftps.port, tlsServerName: servers.ftps.servername }),
    smt: 'ftps',
  },
  {
    title: 'SMT enabled over SFTP',
    name: 'art-sftp',
    context: () => smtStage('art-sftp', { protocol: 'sftp', host: '127.0.0.1', port: servers.sftp.port }),
    smt: 'sftp',
  },
];

function smtStage(stage: string, smt: Record<string, unknown>): Record<string, unknown> {
  return {
    'meterbridge:stage': stage,
    'meterbridge:stages': {
      [stage]: {
        alarmEmail: '',
        blockTimeZone: 'America/Chicago',
        logRetentionDays: 30,
        removalPolicy: 'destroy',
        smt: { enabled: true, folders: ['intervaldata'], ...smt },
      },
    },
  };
}

/** What one stage run leaves for the assertions. */
interface StageRun {
  assembly: Assembly;
  provisioned: Provisioned;
  runs: Array<{ fn: SynthesizedFunction; scenario: string; run: BundleRun; problems: string[] }>;
  calls: RecordedCall[];
  unmapped: string[];
  statements: Map<string, PolicyStatement[]>;
  outcomes: string[];
}

for (const stage of stages) {
  describe(`shipped bundles, ${stage.title}`, () => {
    let result: StageRun;

    before(async () => {
      result = await runStage(stage);
    });

    it("every function in the template has a bundle in the cloud assembly, on nodejs22.x, or is one of CDK's named deploy-time handlers", () => {
      const ours = result.assembly.functions.filter((fn) => !CDK_PROVIDED.some((pattern) => pattern.test(fn.logicalId)));
      assert.ok(ours.length >= 4, `functions: ${ours.map((fn) => fn.logicalId).join(', ')}`);
      for (const fn of ours) {
        assert.equal(fn.runtime, 'nodejs22.x', fn.logicalId);
        assert.ok(fn.bundleDir, `${fn.logicalId} has a bundle`);
      }
      for (const fn of result.assembly.functions.filter((f) => !ours.includes(f)))
        assert.equal(fn.bundleDir, undefined, `${fn.logicalId} is CDK inline code`);
    });

    it("every bundle loads and handles its events on Node 22 with only the template's environment and the runtime's SDK", () => {
      const problems = result.runs.flatMap(({ fn, scenario, problems: p }) => p.map((problem) => `${fn.logicalId} (${scenario}): ${problem}`));
      assert.deepEqual(problems, [], detail(result));
      assert.equal(result.runs.filter((r) => r.run.loaded).length, result.runs.length);
    });

    it('the events leave the expected stored outcome', () => {
      assert.deepEqual(result.outcomes, [], detail(result));
    });

    it('every AWS call each function made is allowed by the IAM policies the template attaches to its role', () => {
      assert.deepEqual(result.unmapped, [], 'requests the recorder could not map to an IAM action');
      const ours = new Set(result.runs.map((r) => r.fn.logicalId));
      assert.deepEqual(
        result.calls.filter((call) => !ours.has(call.caller)).map((c) => `${c.caller}: ${c.action}`),
        [],
        'calls from an unknown caller',
      );
      assert.ok(result.calls.length > 10, `recorded ${result.calls.length} calls`);
      const denied = result.calls.flatMap((call) => {
        const decision = evaluate(result.statements.get(call.caller) ?? [], call);
        return decision.allowed ? [] : [`${call.caller}: ${call.request}: ${decision.reason}`];
      });
      assert.deepEqual(denied, []);
    });

    it('least privilege: removing any one statement that allowed a call denies some call of that function', () => {
      const redundant: string[] = [];
      for (const [caller, statements] of result.statements) {
        const calls = result.calls.filter((call) => call.caller === caller);
        const used = new Set(
          calls.flatMap((call) => {
            const decision = evaluate(statements, call);
            return decision.allowed ? decision.by : [];
          }),
        );
        for (const statement of used) {
          const without = statements.filter((s) => s !== statement);
          const nowDenied = calls.filter((call) => !evaluate(without, call).allowed);
          if (nowDenied.length === 0) redundant.push(`${caller}: ${statement.source} (${statement.Action?.join(',')})`);
        }
      }
      assert.deepEqual(redundant, []);
    });
  });
}

/** Synthesizes the stage, provisions its resources and runs every function's scenario. */
async function runStage(stage: Stage): Promise<StageRun> {
  const outdir = await mkdtemp(join(tmpdir(), `mb-assembly-${stage.name}-`));
  const assembly = await synthesize(outdir, await appContext(stage.context()));
  const smtFetch = assembly.functions.find((fn) => /^SmtFetchFunction/.test(fn.logicalId));
  const smtProcess = assembly.functions.find((fn) => /^SmtProcessFunction/.test(fn.logicalId));
  const namedSecrets: Record<string, string> = {};
  const transportName = smtFetch?.environment.SMT_TRANSPORT_SECRET;
  const pgpName = smtProcess?.environment.SMT_PGP_SECRET;
  if (typeof transportName === 'string') {
    namedSecrets[transportName] = JSON.stringify(
      stage.smt === 'ftps'
        ? {
            user: servers.ftps.user,
            password: servers.ftps.password,
            clientCert: servers.ftps.clientCert,
            clientKey: servers.ftps.clientKey,
            ca: servers.ftps.ca,
          }
        : { username: servers.sftp.username, privateKey: servers.sftp.privateKey, hostKeySha256: servers.sftp.hostKeySha256 },
    );
  }
  if (typeof pgpName === 'string') namedSecrets[pgpName] = JSON.stringify({ armoredKey: keyring.armoredPrivateKey, passphrase: keyring.passphrase });
  const provisioned = await provision(standIns, assembly.template, {
    secretValues: (id) =>
      /^ReadyCredentials/.test(id)
        ? JSON.stringify({ tenantId: 't', clientId: 'c', clientSecret: READY_CLIENT_SECRET, signingKey: READY_SIGNING_KEY })
        : '{}',
    namedSecrets,
  });

  const statements = new Map<string, PolicyStatement[]>();
  for (const fn of assembly.functions) {
    if (!CDK_PROVIDED.some((pattern) => pattern.test(fn.logicalId)))
      statements.set(fn.logicalId, roleStatements(assembly.template, fn.roleLogicalId, provisioned.physical));
  }
  standIns.policies.clear();
  for (const [id, s] of statements) standIns.policies.set(id, s);
  for (const recorder of Object.values(standIns.recorders)) {
    recorder.calls.length = 0;
    recorder.unmapped.length = 0;
  }

  const runs: StageRun['runs'] = [];
  const outcomes: string[] = [];
  const check = (ok: boolean, message: string) => {
    if (!ok) outcomes.push(message);
  };
  const invoke = async (fn: SynthesizedFunction, scenario: string, events: unknown[]) => {
    const task = await runtime.install(fn.bundleDir!, fn.logicalId);
    const templateEnv = resolveCfn(fn.environment, provisioned.physical) as Record<string, string>;
    const env = {
      ...runtimeEnvironment(
        {
          logicalId: fn.logicalId,
          handler: fn.handler,
          memoryMb: fn.memoryMb,
          logFormat: fn.logFormat,
          sessionToken: `${SESSION_TOKEN_PREFIX}${fn.logicalId}`,
        },
        task,
        standIns.endpoints,
        REGION,
      ),
      ...templateEnv,
    };
    const run = await runBundle({
      taskDir: task,
      handler: fn.handler,
      env,
      events, // The template's timeout: the fetch step stops claiming files when less than 2 minutes remain.
      timeoutMs: fn.timeoutSeconds * 1000,
    });
    runs.push({ fn, scenario, run, problems: bundleProblems(run) });
    return run;
  };
  const value = (run: BundleRun, index = 0) => run.invocations[index]?.value as Record<string, unknown> | undefined;

  // Readers run after the writers, so they have something to read.
  const readers: SynthesizedFunction[] = [];
  // The readings feed runs last, over the stream of everything the writers stored.
  const feeds: SynthesizedFunction[] = [];
  // The SMT missing-days check runs after the process step noted its ESIID's day.
  const smtChecks: SynthesizedFunction[] = [];
  for (const fn of assembly.functions) {
    if (CDK_PROVIDED.some((pattern) => pattern.test(fn.logicalId))) continue;
    const env = resolveCfn(fn.environment, provisioned.physical) as Record<string, string>;
    const store = () => new ReadingStore({ client: standIns.clients.dynamodb, tableName: env.READINGS_TABLE!, blockTimeZone: env.BLOCK_TIME_ZONE! });
    const day = { from: new Date('2026-11-23T00:00:00Z'), to: new Date('2026-11-24T12:00:00Z') };

    if (/^IotIngestFunction/.test(fn.logicalId)) {
      // An SQS batch as the topic rule makes it: a good message and one that is not JSON.
      const rule = `meterbridge_${stage.name.replace(/-/g, '_')}_telemetry`;
      const body = (payload: string) =>
        JSON.stringify({
          payload: Buffer.from(payload).toString('base64'),
          topic: `$aws/rules/${rule}/gateways/gw-art/telemetry`,
          receivedAt: Date.now(),
        });
      const good = {
        v: 1,
        gatewayId: 'gw-art',
        seq: 1,
        sentAt: '2026-11-23T11:59:00Z',
        blocks: [
          {
            meterId: 'art-meter-1',
            channel: 'energy.active.import',
            start: '2026-11-23T10:00:00Z',
            intervalSeconds: 900,
            unit: 'kWh',
            values: [0.1, 0.2, 0.3, 0.4],
          },
        ],
      };
      const run = await invoke(fn, 'SQS batch from the topic rule', [toSqsEvent([body(JSON.stringify(good)), body('{not json')])]);
      check(JSON.stringify(value(run)) === JSON.stringify({ batchItemFailures: [] }), `iot: batch answer ${JSON.stringify(value(run))}`);
      const stored = await store().query({ meterId: 'art-meter-1', channel: 'energy.active.import', ...day });
      check(stored.length === 4 && stored.map((r) => r.value).join() === '0.1,0.2,0.3,0.4', `iot: stored ${stored.length} readings`);
      const dlq = await standIns.clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: env.DEAD_LETTER_QUEUE_URL!, MaxNumberOfMessages: 10 }));
      const parked = (dlq.Messages ?? []).map((m) =>
        Buffer.from((JSON.parse(m.Body ?? '{}') as { payload?: string }).payload ?? '', 'base64').toString(),
      );
      check(JSON.stringify(parked) === JSON.stringify(['{not json']), `iot: DLQ holds ${JSON.stringify(parked)}, expected the malformed message`);
      check(
        (await metricTotal('ReadingsStored', stage.name, 'iot')) === 4,
        `iot: ReadingsStored read back from CloudWatch = ${await metricTotal('ReadingsStored', stage.name, 'iot')}`,
      );
      check(
        (await metricTotal('MessagesRejected', stage.name, 'iot')) === 1,
        `iot: MessagesRejected = ${await metricTotal('MessagesRejected', stage.name, 'iot')}`,
      );
    } else if (/^ReadyWebhookFunction/.test(fn.logicalId)) {
      const apiEvent = (method: string, path: string, query: string, body = Buffer.alloc(0)) =>
        toApiGatewayEvent({
          method,
          path: `/prod${path}`,
          stage: 'prod',
          headers: {
            host: 'api.example',
            ...(body.length
              ? {
                  'content-type': 'application/json',
                  'x-ready-signature': `sha256=${createHmac('sha256', READY_SIGNING_KEY).update(body).digest('base64')}`,
                }
              : {}),
          },
          query: new URLSearchParams(query),
          body,
          sourceIp: '203.0.113.9',
        });
      const start = new Date('2026-11-23T14:00:00Z');
      const delivery = buildReadyDelivery({
        deliveryId: `art-${randomUUID()}`,
        subscriptionId: 'sub-art',
        meters: [{ meterId: 'kam-art-1' }],
        start,
        intervalsPerHour: 4,
      });
      const run = await invoke(fn, 'API Gateway: handshake, data callback', [
        apiEvent('GET', '/data', 'verificationToken=tok-1'),
        apiEvent('POST', '/data', '', Buffer.from(JSON.stringify(delivery.body))),
      ]);
      const handshake = value(run, 0);
      check(
        handshake?.statusCode === 200 && String(handshake.body).includes(createHmac('sha256', READY_CLIENT_SECRET).update('tok-1').digest('base64')),
        `ready: handshake answered ${JSON.stringify(handshake)}`,
      );
      check(value(run, 1)?.statusCode === 200, `ready: delivery answered ${JSON.stringify(value(run, 1))}`);
      const stored = await store().query({ meterId: 'kam-art-1', channel: 'water.volume.interval', ...day });
      check(stored.length === 4, `ready: stored ${stored.length} interval readings`);
      const archived = await standIns.s3.client.send(new ListObjectsV2Command({ Bucket: env.ARCHIVE_BUCKET!, Prefix: 'ready/data/' }));
      check((archived.Contents ?? []).length === 1, `ready: ${(archived.Contents ?? []).length} archived deliveries`);
      check(
        (await metricTotal('ReadingsStored', stage.name, 'ready')) === delivery.readings,
        `ready: ReadingsStored = ${await metricTotal('ReadingsStored', stage.name, 'ready')} of ${delivery.readings}`,
      );
    } else if (/^SmtFetchFunction/.test(fn.logicalId)) {
      if (stage.smt === 'off') {
        // Switched off: the schedule is disabled and the host unset, so nothing invokes it; it must still start.
        await invoke(fn, 'cold start only (schedule disabled)', []);
        continue;
      }
      const file = await smtFile();
      const run = await invoke(fn, `scheduled event, ${stage.smt.toUpperCase()}`, [scheduledEvent()]);
      const refused = standIns.recorders.s3.calls.filter((c) => c.caller === fn.logicalId && c.status === 403).map((c) => `${c.request} -> 403`);
      check(
        value(run)?.archived === 1 && value(run)?.error === undefined,
        `smt fetch: report ${JSON.stringify(value(run))}${refused.length ? `; S3 refused: ${refused.join(', ')}` : ''}`,
      );
      const key = `smt/intervaldata/${file.name}`;
      const archived = await standIns.s3.client.send(new ListObjectsV2Command({ Bucket: env.ARCHIVE_BUCKET!, Prefix: 'smt/' }));
      check(
        (archived.Contents ?? []).some((o) => o.Key === key && o.Size === file.size),
        `smt fetch: archive holds ${JSON.stringify((archived.Contents ?? []).map((o) => [o.Key, o.Size]))}, expected ${key} (${file.size} B)`,
      );
      const left = await readdir(join(servers.root, 'intervaldata'));
      check(!left.includes(file.name), `smt fetch: ${file.name} still on the server`);
      check(
        (await metricTotal('FilesFetched', stage.name, 'smt')) === 1,
        `smt fetch: FilesFetched = ${await metricTotal('FilesFetched', stage.name, 'smt')}`,
      );
      await disposeSmtFile(file);
    } else if (/^SmtProcessFunction/.test(fn.logicalId)) {
      // The file the fetch step archived (SMT on), or one put into the archive as the fetch step would (SMT off).
      const listed = await standIns.s3.client.send(new ListObjectsV2Command({ Bucket: env.ARCHIVE_BUCKET!, Prefix: 'smt/' }));
      let key = listed.Contents?.[0]?.Key;
      let size = listed.Contents?.[0]?.Size ?? 0;
      if (key === undefined) {
        const file = await smtFile();
        key = `smt/intervaldata/${file.name}`;
        const bytes = await readFile(file.path);
        size = bytes.length;
        await standIns.s3.client.send(new PutObjectCommand({ Bucket: env.ARCHIVE_BUCKET!, Key: key, Body: bytes }));
        await rm(file.path, { force: true });
        await disposeSmtFile(file);
      }
      const run = await invoke(fn, 'S3 object-created event through SQS', [
        toSqsEvent([toS3NotificationBody({ bucket: env.ARCHIVE_BUCKET!, key, size })]),
      ]);
      check(JSON.stringify(value(run)) === JSON.stringify({ batchItemFailures: [] }), `smt process: batch answer ${JSON.stringify(value(run))}`);
      const stored = await store().query({
        meterId: ESIID,
        channel: 'energy.active.import',
        from: new Date('2026-11-22T00:00:00Z'),
        to: new Date('2026-11-25T00:00:00Z'),
      });
      check(stored.length === 96, `smt process: stored ${stored.length} of 96 intervals of ${ESIID}`);
      check(
        (await metricTotal('FilesProcessed', stage.name, 'smt')) === 1,
        `smt process: FilesProcessed = ${await metricTotal('FilesProcessed', stage.name, 'smt')}`,
      );
    } else if (/^QueryFunction/.test(fn.logicalId)) {
      readers.push(fn);
    } else if (/^IotFleetFunction/.test(fn.logicalId)) {
      await fleetScenario(fn, env, stage, invoke, check);
    } else if (/^FeedFunction/.test(fn.logicalId)) {
      feeds.push(fn);
    } else if (/^SmtMissingDaysFunction/.test(fn.logicalId)) {
      smtChecks.push(fn);
    } else {
      outcomes.push(`${fn.logicalId}: no scenario for this function; add one to test/artifact/bundles.test.ts`);
    }
  }
  for (const fn of readers) {
    // The query API over what the IoT scenario stored: the meter is in the catalog, its day comes back as CSV.
    const apiEvent = (path: string, query: string) =>
      toApiGatewayEvent({
        method: 'GET',
        path: `/prod${path}`,
        stage: 'prod',
        headers: { host: 'api.example' },
        query: new URLSearchParams(query),
        body: Buffer.alloc(0),
        sourceIp: '203.0.113.9',
      });
    const run = await invoke(fn, "API Gateway: list meters, one meter's readings as CSV", [
      apiEvent('/meters', ''),
      apiEvent('/meters/art-meter-1/readings', 'from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z&format=csv'),
    ]);
    const meters = value(run, 0);
    check(
      meters?.statusCode === 200 && String(meters.body).includes('art-meter-1'),
      `query: meters answered ${JSON.stringify(meters)?.slice(0, 300)}`,
    );
    const csv = value(run, 1);
    const rows = String(csv?.body ?? '')
      .trim()
      .split('\n');
    check(
      csv?.statusCode === 200 && rows.length === 5 && rows.slice(1).every((row) => row.startsWith('art-meter-1,energy.active.import,')),
      `query: readings answered ${JSON.stringify(csv)?.slice(0, 300)}`,
    );
  }

  for (const fn of smtChecks) await smtMissingDaysScenario(fn, provisioned, invoke, check, stage.name);
  for (const fn of feeds) await feedScenario(fn, assembly, provisioned, invoke, check, stage.name);

  const calls = [...standIns.recorders.dynamodb.calls, ...standIns.recorders.s3.calls, ...standIns.recorders.moto.calls];
  const unmapped = [...standIns.recorders.dynamodb.unmapped, ...standIns.recorders.s3.unmapped, ...standIns.recorders.moto.unmapped];
  await rm(outdir, { recursive: true, force: true });
  return {
    assembly,
    provisioned,
    runs,
    calls,
    unmapped,
    statements: new Map([...statements].filter(([id]) => runs.some((r) => r.fn.logicalId === id))),
    outcomes,
  };
}

/**
 * The feed bundle over the real stream of the readings table (DynamoDB Local), as the event source
 * mapping hands it over: one event per block write on moto's bus (a rule sends them to a queue we
 * read), one row per stored reading through moto's Firehose into moto's S3 (JSON: moto does not
 * convert to Parquet), FeedEventsPublished read back from CloudWatch.
 */
async function feedScenario(
  fn: SynthesizedFunction,
  assembly: Assembly,
  provisioned: Provisioned,
  invoke: (fn: SynthesizedFunction, scenario: string, events: unknown[]) => Promise<BundleRun>,
  check: (ok: boolean, message: string) => void,
  stageName: string,
): Promise<void> {
  const idOf = (type: string) => Object.entries(assembly.template.Resources).find(([, r]) => r.Type === type)?.[0];
  const tableName = [...provisioned.names].find(([id]) => /^StorageReadings/.test(id))?.[1];
  const busName = provisioned.physical.ref(idOf('AWS::Events::EventBus')!)!;
  const firehoseBucket = provisioned.physical.getAtt(idOf('AWS::KinesisFirehose::DeliveryStream')!, 'MotoBucket')!;
  const queue = await standIns.clients.sqs.send(new CreateQueueCommand({ QueueName: `feed-subscriber-${randomUUID().slice(0, 8)}` }));
  const queueArn = (await standIns.clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: queue.QueueUrl!, AttributeNames: ['QueueArn'] })))
    .Attributes!.QueueArn!;
  const rule = `feed-subscriber-${stageName}`;
  await standIns.clients.events.send(
    new PutRuleCommand({ Name: rule, EventBusName: busName, EventPattern: JSON.stringify({ source: [FEED_EVENT_SOURCE] }) }),
  );
  await standIns.clients.events.send(new PutTargetsCommand({ Rule: rule, EventBusName: busName, Targets: [{ Id: 'queue', Arn: queueArn }] }));

  // The records the mapping would deliver: the table's stream from its start.
  const streams = new DynamoDBStreamsClient({
    endpoint: standIns.dynamo.endpoint,
    region: REGION,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  const streamArn = (await standIns.clients.dynamodb.send(new DescribeTableCommand({ TableName: tableName! }))).Table!.LatestStreamArn!;
  const records: StreamsRecord[] = [];
  for (const shard of (await streams.send(new DescribeStreamCommand({ StreamArn: streamArn }))).StreamDescription?.Shards ?? []) {
    let iterator = (
      await streams.send(new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }))
    ).ShardIterator;
    while (iterator) {
      const page = await streams.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 1000 }));
      records.push(...(page.Records ?? []));
      if ((page.Records ?? []).length === 0) break;
      iterator = page.NextShardIterator;
    }
  }
  streams.destroy();
  const blockWrites = records.filter((r) => r.eventName !== 'REMOVE' && !(r.dynamodb?.Keys?.pk?.S ?? '#').startsWith('#')).length;
  const event = {
    Records: records.map((record) => ({
      ...toLambdaRecord(record),
      eventSource: 'aws:dynamodb',
      awsRegion: REGION,
      eventSourceARN: streamArn,
      eventVersion: '1.1',
    })),
  };
  const run = await invoke(fn, 'DynamoDB stream batch of every block write', [event]);
  const answer = run.invocations[0]?.value as { batchItemFailures?: unknown[] } | undefined;
  check(JSON.stringify(answer) === JSON.stringify({ batchItemFailures: [] }), `feed: batch answer ${JSON.stringify(answer)}`);

  const received: string[] = [];
  for (let round = 0; round < 20 && received.length < blockWrites; round++) {
    const page = await standIns.clients.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queue.QueueUrl!, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
    );
    received.push(...(page.Messages ?? []).map((m) => m.Body ?? ''));
  }
  const details = received.map((body) => (JSON.parse(body) as { detail: { dedupeKey: string; intervalsChanged: number } }).detail);
  check(blockWrites > 0 && details.length === blockWrites, `feed: ${details.length} events for ${blockWrites} block writes in the stream`);
  const stored = await scanStoredReadings(standIns.clients.dynamodb, tableName!);
  check(
    details.reduce((sum, d) => sum + d.intervalsChanged, 0) === stored.length,
    `feed: events name ${details.reduce((sum, d) => sum + d.intervalsChanged, 0)} changed readings, the store holds ${stored.length}`,
  );
  const objects = await standIns.clients.motoS3.send(new ListObjectsV2Command({ Bucket: firehoseBucket }));
  let rows = 0;
  for (const object of objects.Contents ?? []) {
    const body = await standIns.clients.motoS3.send(new GetObjectCommand({ Bucket: firehoseBucket, Key: object.Key! }));
    rows += (await body.Body!.transformToString()).split('\n').filter((line) => line.trim() !== '').length;
  }
  check(rows === stored.length, `feed: ${rows} lake rows through Firehose, the store holds ${stored.length} readings`);
  const published = (await readMetricTotals(standIns.clients.cloudwatch))
    .filter((t) => t.name === 'FeedEventsPublished' && t.dimensions.Stage === stageName)
    .reduce((sum, t) => sum + t.sum, 0);
  check(published === blockWrites, `feed: FeedEventsPublished = ${published} of ${blockWrites}`);
}

/** One day (2026-11-23) of one ESIID, encrypted to the test keyring, dropped into the served intervaldata folder. */
async function smtFile(): Promise<SmtFile> {
  const dir = join(servers.root, 'intervaldata');
  const file = await writeSmtFile({ dir, keyring, esiids: [ESIID], days: ['2026-11-23'], revision: '11/24/2026 06:00:00' });
  await shareTree(dir);
  return file;
}

/**
 * The daily SMT missing-days check after the process scenario stored ESIID's 2026-11-23: a second
 * ESIID last delivered 2026-11-21 (noted as the process step notes it) is missing the newest day.
 */
async function smtMissingDaysScenario(
  fn: SynthesizedFunction,
  provisioned: Provisioned,
  invoke: (fn: SynthesizedFunction, scenario: string, events: unknown[]) => Promise<BundleRun>,
  check: (ok: boolean, message: string) => void,
  stageName: string,
): Promise<void> {
  const env = resolveCfn(fn.environment, provisioned.physical) as Record<string, string>;
  const stopped = '10443720000000099';
  await new EsiidDays(standIns.clients.dynamodb, env.READINGS_TABLE!).note(new Map([[stopped, '2026-11-21']]));
  const run = await invoke(fn, 'daily schedule', [scheduledEvent()]);
  const outcome = run.invocations[0]?.value;
  check(
    JSON.stringify(outcome) === JSON.stringify({ newestDay: '2026-11-23', missing: 1, reporting: 1 }),
    `smt missing days: outcome ${JSON.stringify(outcome)}`,
  );
  // Warnings go to stderr, as on Lambda (both streams land in the function's log group).
  const logged = run.stdout + run.stderr;
  check(logged.includes(`${stopped} last 2026-11-21`), `smt missing days: the log does not name ${stopped}: ${logged.slice(-800)}`);
  const total = await metricTotal('SmtMissingEsiidDays', stageName, 'smt');
  check(total === 1, `smt missing days: SmtMissingEsiidDays read back from CloudWatch = ${total}`);
}

/** Sum of a metric over every dimension set with the stage and source, read back from moto's CloudWatch. */
/**
 * The fleet function (rotation and status) on moto's IoT control plane: a thing with its old
 * certificate ACTIVE and attached and a new one PENDING_ACTIVATION (as the CreateCertificateFromCsr
 * MQTT API leaves it); the fleet rule's events activate the new one, report status, retire the old.
 */
async function fleetScenario(
  fn: SynthesizedFunction,
  env: Record<string, string>,
  stage: Stage,
  invoke: (fn: SynthesizedFunction, scenario: string, events: unknown[]) => Promise<BundleRun>,
  check: (ok: boolean, message: string) => void,
): Promise<void> {
  const iot = standIns.clients.iot;
  const thingName = `gw-art-${stage.name}`;
  const policyName = env.GATEWAY_POLICY_NAME!;
  await iot.send(new CreatePolicyCommand({ policyName, policyDocument: '{"Version":"2012-10-17","Statement":[]}' })).catch(() => undefined);
  await iot.send(new CreateThingCommand({ thingName }));
  const old = await iot.send(new CreateKeysAndCertificateCommand({ setAsActive: true }));
  await iot.send(new AttachPolicyCommand({ policyName, target: old.certificateArn }));
  await iot.send(new AttachThingPrincipalCommand({ thingName, principal: old.certificateArn }));
  const next = await iot.send(new CreateKeysAndCertificateCommand({ setAsActive: false }));
  await iot.send(new UpdateCertificateCommand({ certificateId: next.certificateId, newStatus: 'PENDING_ACTIVATION' }));
  const event = (kind: string, principal: string, body: object) => ({
    payload: Buffer.from(JSON.stringify({ v: 1, gatewayId: thingName, sentAt: new Date().toISOString(), ...body })).toString('base64'),
    topic: `gateways/${thingName}/${kind}`,
    principal,
    receivedAt: Date.now(),
  });
  const status = {
    version: '0.1.0',
    spoolDepth: 12,
    oldestUnsentSeconds: 60,
    readErrors: 2,
    clock: 'synchronized',
    certificate: {
      id: next.certificateId,
      notBefore: new Date(Date.now() - 86_400_000).toISOString(),
      notAfter: new Date(Date.now() + 86_400_000).toISOString(),
    },
  };
  const run = await invoke(fn, 'fleet rule: activate, status, retire', [
    event('rotation', old.certificateId!, { phase: 'activate', certificateId: next.certificateId }),
    event('status', next.certificateId!, status),
    event('rotation', next.certificateId!, { phase: 'retire', certificateId: old.certificateId }),
  ]);
  const actions = run.invocations.map((i) => JSON.stringify(i.value));
  check(actions[0]?.includes('"activated"') === true && actions[2]?.includes('"retired"') === true, `fleet: outcomes ${actions.join(' ')}`);
  const statusOf = async (certificateId: string) =>
    (await iot.send(new DescribeCertificateCommand({ certificateId }))).certificateDescription?.status;
  check((await statusOf(next.certificateId!)) === 'ACTIVE', `fleet: new certificate ${await statusOf(next.certificateId!)}`);
  check((await statusOf(old.certificateId!)) === 'REVOKED', `fleet: old certificate ${await statusOf(old.certificateId!)}`);
  const { principals = [] } = await iot.send(new ListThingPrincipalsCommand({ thingName }));
  check(JSON.stringify(principals) === JSON.stringify([next.certificateArn]), `fleet: thing principals ${JSON.stringify(principals)}`);
  check(
    (await metricTotal('GatewaysReporting', stage.name, 'iot')) === 1,
    `fleet: GatewaysReporting = ${await metricTotal('GatewaysReporting', stage.name, 'iot')}`,
  );
  check(
    (await metricTotal('CertificatesRotated', stage.name, 'iot')) === 2,
    `fleet: CertificatesRotated = ${await metricTotal('CertificatesRotated', stage.name, 'iot')}`,
  );
}

async function metricTotal(name: string, stageName: string, source: string): Promise<number> {
  const totals = await readMetricTotals(standIns.clients.cloudwatch);
  return totals
    .filter((t) => t.name === name && t.dimensions.Stage === stageName && t.dimensions.Source === source)
    .reduce((sum, t) => sum + t.sum, 0);
}

function detail(result: StageRun): string {
  return result.runs
    .map(
      ({ fn, scenario, run, problems }) =>
        `--- ${fn.logicalId} (${scenario}) loaded=${run.loaded} problems=${problems.length}\n${run.loadError ?? ''}${run.invocations.map((i) => (i.ok ? '' : i.error)).join('\n')}\nstderr: ${run.stderr.slice(-1500)}\nstdout: ${run.stdout.slice(-1500)}`,
    )
    .join('\n');
}

/** The event an EventBridge schedule hands its target (the SMT fetch and the missing-days check). */
function scheduledEvent() {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account: ACCOUNT,
    time: new Date().toISOString(),
    region: REGION,
    resources: [],
    detail: {},
  };
}
