/**
 * CPU per reading of the shipped handler bundles against the floor, per source, in one process
 * each (bench/floor-worker.mjs): the bundles `cdk synth` produces, run on Node 22 with the
 * template's environment from a runtime root where only the AWS SDK resolves, every AWS call
 * answered by a null loopback endpoint (bench/null-endpoint.mjs, its own process). The floor is
 * what the data needs at the least: JSON.parse of the same payloads plus one plain UpdateItem per
 * block carrying its values, through the same SDK to the same endpoint.
 *
 * BENCH_ASSEMBLY=<cdk.out> reuses a synthesized assembly (synth takes a minute); BENCH_FLOOR_SCALE
 * (default 1) scales the events for quick iteration; BENCH_CPU_PROF=<dir> writes a --cpu-prof
 * profile of each worker there; BENCH_FLOOR_ONLY=<prefix> runs only the sources whose "source shape" starts with it;
 * BENCH_FLOOR_SIDE=handler|floor measures (and profiles) that side alone, to see where its own time goes;
 * BENCH_FLOOR_SHAPE=slots also measures a floor writing each block in the store's per-slot layout (what the encoding costs).
 */
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SQSEvent } from 'aws-lambda';
import { buildReadyDelivery, toApiGatewayEvent } from '../local/ready-http.ts';
import { appContext, readAssembly, synthesize, type SynthesizedFunction } from '../test/artifact/support/assembly.ts';
import { createRuntimeRoot, node22Binary, runtimeEnvironment } from '../test/artifact/support/lambda-sandbox.ts';

const WORKER = fileURLToPath(new URL('./floor-worker.mjs', import.meta.url));
const NULL_ENDPOINT = fileURLToPath(new URL('./null-endpoint.mjs', import.meta.url));
const SIGNING_KEY = 'bench-signing-key';
const READY_SECRET = JSON.stringify({ tenantId: 'bench', clientId: 'bench', clientSecret: 'bench-secret', signingKey: SIGNING_KEY });
/** Local midnight in America/Chicago (the template's BLOCK_TIME_ZONE) of a day well in the past. */
const DAY = Date.parse('2026-11-22T06:00:00Z');
const THING = 'gw-bench';

export interface FloorFigure {
  source: string;
  shape: string;
  readings: number;
  handlerMicrosPerReading: number;
  floorMicrosPerReading: number;
  /** With BENCH_FLOOR_SHAPE=slots: the floor writing each block in the store's per-slot layout, same events, same process. */
  slotsFloorMicrosPerReading?: number;
  /** The goal, as a multiple of the floor. */
  goal: number;
}

interface SourceRun {
  source: string;
  shape: string;
  fn: SynthesizedFunction;
  check: 'iot' | 'ready';
  events: unknown[];
  readingsPerEvent: number;
  rounds: number;
  goal: number;
}

let seq = 0;
function sqsRecord(message: Record<string, unknown>): SQSEvent['Records'][number] {
  seq += 1;
  const payload = Buffer.from(JSON.stringify({ v: 1, gatewayId: THING, seq, sentAt: new Date(DAY + 86_400_000).toISOString(), ...message }));
  const body = JSON.stringify({ payload: payload.toString('base64'), topic: `gateways/${THING}/telemetry`, receivedAt: DAY + 86_400_000 });
  return {
    messageId: `bench-${seq}`,
    receiptHandle: `bench-${seq}`,
    body,
    attributes: {} as SQSEvent['Records'][number]['attributes'],
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:bench',
    awsRegion: 'us-east-1',
  };
}

const value = (i: number, m: number) => Math.round(((i * 31 + m) % 97) * 13.7) / 1000;

/** SQS batches of 10 messages, each 100 meters x 96 intervals as blocks (a gateway's day). */
function iotBlockEvents(batches: number, meters: number): SQSEvent[] {
  return Array.from({ length: batches }, () => ({
    Records: Array.from({ length: 10 }, () =>
      sqsRecord({
        blocks: Array.from({ length: meters }, (_, m) => ({
          meterId: `meter-${m}`,
          channel: 'energy.active.import',
          start: new Date(DAY).toISOString(),
          intervalSeconds: 900,
          unit: 'kWh',
          values: Array.from({ length: 96 }, (_, i) => value(i, m)),
        })),
      }),
    ),
  }));
}

/** SQS batches of 10 messages, each one flat reading per meter (a poll cycle). */
function iotFlatEvents(batches: number, meters: number): SQSEvent[] {
  return Array.from({ length: batches }, (_, b) => ({
    Records: Array.from({ length: 10 }, (_, r) => {
      const start = new Date(DAY + ((b * 10 + r) % 96) * 900_000);
      return sqsRecord({
        readings: Array.from({ length: meters }, (_, m) => ({
          meterId: `meter-${m}`,
          channel: 'energy.active.import',
          start: start.toISOString(),
          end: new Date(start.getTime() + 900_000).toISOString(),
          value: value(b, m),
          unit: 'kWh',
          quality: 'actual',
        })),
      });
    }),
  }));
}

/** Signed READY deliveries of 10 water meters, 4 x 15-min values + 1 register each (50 readings), through API Gateway's proxy event. */
function readyEvents(count: number): unknown[] {
  const meters = Array.from({ length: 10 }, (_, i) => ({ meterId: `kam-${i}` }));
  return Array.from({ length: count }, (_, d) => {
    const body = Buffer.from(
      JSON.stringify(
        buildReadyDelivery({
          deliveryId: `bench-${d}`,
          subscriptionId: 'sub-bench',
          meters,
          start: new Date(DAY + d * 3_600_000),
          intervalsPerHour: 4,
        }).body,
      ),
    );
    const signature = `sha256=${createHmac('sha256', SIGNING_KEY).update(body).digest('base64')}`;
    return toApiGatewayEvent({
      method: 'POST',
      path: '/prod/data',
      stage: 'prod',
      headers: { 'content-type': 'application/json', 'x-ready-signature': signature },
      query: new URLSearchParams(),
      body,
      sourceIp: '127.0.0.1',
    });
  });
}

/** The null loopback endpoint (bench/null-endpoint.mjs) in a process of its own. */
export async function startNullEndpoint(): Promise<{ url: string; stop(): void }> {
  const child = spawn(node22Binary(), [NULL_ENDPOINT], {
    env: { PATH: process.env.PATH, NULL_ENDPOINT_SECRET: READY_SECRET },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()));
    child.once('exit', (code) => reject(new Error(`null endpoint exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill() };
}

/** The template's variables with every Ref/GetAtt replaced by a plausible name (the null endpoint accepts any). */
function templateEnvironment(fn: SynthesizedFunction): Record<string, string> {
  return Object.fromEntries(
    Object.entries(fn.environment).map(([key, v]) => [
      key,
      typeof v === 'string'
        ? v
        : key.endsWith('_URL')
          ? `https://sqs.us-east-1.amazonaws.com/000000000000/bench-${key}`
          : `bench-${key.toLowerCase()}`,
    ]),
  );
}

async function runWorker(run: SourceRun, taskDir: string, endpoint: string, work: string): Promise<FloorFigure> {
  const specFile = join(work, `${run.source}-${run.shape}-spec.json`.replace(/\W+/g, '-'));
  const resultFile = `${specFile}.result`;
  await writeFile(
    specFile,
    JSON.stringify({
      source: run.check,
      check: run.check,
      events: run.events,
      readingsPerEvent: run.readingsPerEvent,
      rounds: run.rounds,
      warmup: 1,
      table: 'bench-floor',
      ...(process.env.BENCH_FLOOR_SIDE ? { only: process.env.BENCH_FLOOR_SIDE } : {}),
      ...(process.env.BENCH_FLOOR_SHAPE ? { floorShape: process.env.BENCH_FLOOR_SHAPE } : {}),
    }),
  );
  const endpoints = {
    AWS_ENDPOINT_URL_DYNAMODB: endpoint,
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ENDPOINT_URL_SQS: endpoint,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint,
    AWS_ENDPOINT_URL_CLOUDWATCH: endpoint,
  };
  const env = { ...templateEnvironment(run.fn), ...runtimeEnvironment({ ...run.fn, sessionToken: 'bench' }, taskDir, endpoints) };
  const profile = process.env.BENCH_CPU_PROF
    ? [
        '--cpu-prof',
        '--cpu-prof-dir',
        process.env.BENCH_CPU_PROF,
        '--cpu-prof-name',
        `${run.source}-${run.shape}.cpuprofile`.replace(/[^\w.-]+/g, '-'),
      ]
    : [];
  const child = spawn(node22Binary(), [...profile, join(taskDir, '..', 'floor-worker.mjs'), taskDir, run.fn.handler, specFile, resultFile], {
    env,
    stdio: ['ignore', process.env.BENCH_FLOOR_LOGS ? 'inherit' : 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`floor worker for ${run.source} (${run.shape}) exited with ${code}: ${stderr.slice(-2000)}`);
  const result = JSON.parse(await readFile(resultFile, 'utf8')) as {
    handlerMicros: number;
    floorMicros: number;
    slotsFloorMicros: number;
    readings: number;
  };
  return {
    source: run.source,
    shape: run.shape,
    readings: result.readings,
    handlerMicrosPerReading: result.handlerMicros / result.readings,
    floorMicrosPerReading: result.floorMicros / result.readings,
    ...(process.env.BENCH_FLOOR_SHAPE === 'slots' ? { slotsFloorMicrosPerReading: result.slotsFloorMicros / result.readings } : {}),
    goal: run.goal,
  };
}

export async function runFloorBench(): Promise<FloorFigure[]> {
  const scale = Number(process.env.BENCH_FLOOR_SCALE ?? 1);
  let outdir = process.env.BENCH_ASSEMBLY;
  const work = await mkdtemp(join(tmpdir(), 'mb-floor-bench-'));
  if (!outdir) {
    process.stderr.write('bench: synthesizing the app for its bundles...\n');
    outdir = join(work, 'cdk.out');
  }
  const assembly = process.env.BENCH_ASSEMBLY ? await readAssembly(outdir) : await synthesize(outdir, await appContext({}));
  const fn = (prefix: string) => {
    const found = assembly.functions.find((f) => f.logicalId.startsWith(prefix));
    if (!found?.bundleDir) throw new Error(`no ${prefix} bundle in the assembly`);
    return found;
  };
  const iot = fn('IotIngestFunction');
  const ready = fn('ReadyWebhookFunction');
  const blockMeters = Math.max(1, Math.round(100 * scale));
  const runs: SourceRun[] = [
    {
      source: 'IoT',
      shape: `blocks: SQS batch of 10 messages x ${blockMeters} meters x 96 intervals`,
      fn: iot,
      check: 'iot',
      events: iotBlockEvents(1, blockMeters),
      readingsPerEvent: 960 * blockMeters,
      rounds: 2,
      goal: 2,
    },
    {
      source: 'IoT',
      shape: 'flat: SQS batch of 10 messages x 100 meters x 1 reading',
      fn: iot,
      check: 'iot',
      events: iotFlatEvents(Math.max(1, Math.round(5 * scale)), 100),
      readingsPerEvent: 1000,
      rounds: 2,
      goal: 3,
    },
    {
      source: 'READY',
      shape: 'delivery of 10 meters x (4 intervals + 1 register)',
      fn: ready,
      check: 'ready',
      events: readyEvents(Math.max(1, Math.round(60 * scale))),
      readingsPerEvent: 50,
      rounds: 2,
      goal: 3,
    },
  ];
  const root = await createRuntimeRoot();
  const endpoint = await startNullEndpoint();
  try {
    await copyFile(WORKER, join(root.root, 'floor-worker.mjs'));
    const figures: FloorFigure[] = [];
    const only = process.env.BENCH_FLOOR_ONLY;
    for (const run of runs.filter((r) => !only || `${r.source} ${r.shape}`.startsWith(only))) {
      process.stderr.write(`bench: floor, ${run.source} ${run.shape}...\n`);
      const taskDir = await root.install(run.fn.bundleDir!, run.fn.logicalId);
      figures.push(await runWorker(run, taskDir, endpoint.url, work));
    }
    return figures;
  } finally {
    endpoint.stop();
    await root.dispose();
    await rm(work, { recursive: true, force: true });
  }
}
