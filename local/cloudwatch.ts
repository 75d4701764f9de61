/**
 * CloudWatch on loopback for tests and local mode: moto's server (CloudWatch has no official local
 * emulator), with the read-back the tests and local mode's progress use — ListMetrics to find every
 * metric (name + full dimension set) in a namespace, then GetMetricData for its Sum and SampleCount.
 * What is asserted or shown is what CloudWatch stored, not what a client sent.
 */
import { CloudWatchClient, GetMetricDataCommand, ListMetricsCommand, type Metric } from '@aws-sdk/client-cloudwatch';
import { startMoto, type Moto } from './moto.ts';

export interface MetricTotal {
  name: string;
  dimensions: Record<string, string>;
  /** Sum of every value stored (a distribution's values count once per Counts entry). */
  sum: number;
  sampleCount: number;
}

export interface LocalCloudWatch {
  endpoint: string;
  moto: Moto;
  /** A client for the moto endpoint (one shared instance; destroyed by stop()). */
  client(): CloudWatchClient;
  /** Every metric of the namespace (or only those named) with its totals over the read-back window. */
  totals(namespace?: string, names?: readonly string[]): Promise<MetricTotal[]>;
  /** Sum of `name` over every dimension set that includes `dimension` (all of them when not given). */
  sum(name: string, dimension?: { name: string; value: string }, namespace?: string): Promise<number>;
  /** Forgets every stored metric (and everything else moto holds). */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export const DEFAULT_NAMESPACE = 'Meterbridge';
/** Tests pin their clocks to dates days in the past; read back everything from 90 days ago to tomorrow. */
const WINDOW_MS = 90 * 86_400_000;

/**
 * moto 5.2's server gunzips a `Content-Encoding: gzip` body twice (once in its request wrapper, once
 * in the response class) and answers 500, so clients talking to it send bodies uncompressed. A
 * process that builds its own client (a Lambda entry run as a child) gets AWS_DISABLE_REQUEST_COMPRESSION
 * from `motoClientEnvironment`.
 */
export function motoCloudWatchClient(moto: Pick<Moto, 'endpoint' | 'region' | 'credentials'>): CloudWatchClient {
  return new CloudWatchClient({
    endpoint: moto.endpoint,
    region: moto.region,
    credentials: moto.credentials,
    maxAttempts: 3,
    disableRequestCompression: true,
  });
}

/** Environment for a child process whose SDK clients should talk to moto's CloudWatch. */
export function motoClientEnvironment(moto: Pick<Moto, 'endpoint' | 'region' | 'credentials'>): Record<string, string> {
  return {
    AWS_REGION: moto.region,
    AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey,
    AWS_ENDPOINT_URL_CLOUDWATCH: moto.endpoint,
    AWS_DISABLE_REQUEST_COMPRESSION: 'true',
  };
}

/**
 * Every metric of the namespace (or only those named: moto's ListMetrics costs the square of the
 * datums it holds per name, so local mode's progress asks only for what it shows) with its totals.
 */
export async function readMetricTotals(
  client: CloudWatchClient,
  namespace = DEFAULT_NAMESPACE,
  now = Date.now(),
  names?: readonly string[],
): Promise<MetricTotal[]> {
  const metrics: Metric[] = [];
  const seen = new Set<string>();
  for (const name of names ?? [undefined]) await listInto(client, namespace, name, metrics, seen);
  return totalsOf(client, metrics, now);
}

async function listInto(client: CloudWatchClient, namespace: string, name: string | undefined, metrics: Metric[], seen: Set<string>): Promise<void> {
  let nextToken: string | undefined;
  do {
    const page = await client.send(new ListMetricsCommand({ Namespace: namespace, MetricName: name, NextToken: nextToken }));
    for (const metric of page.Metrics ?? []) {
      // moto 5.2 lists a metric with two or more dimensions once per datum (its are_dimensions_same
      // compares every pair of dimensions), where CloudWatch lists it once: keep the first.
      const key = JSON.stringify([metric.MetricName, (metric.Dimensions ?? []).map((d) => [d.Name, d.Value]).sort()]);
      if (seen.has(key)) continue;
      seen.add(key);
      metrics.push(metric);
    }
    nextToken = page.NextToken;
  } while (nextToken);
}

async function totalsOf(client: CloudWatchClient, metrics: Metric[], now: number): Promise<MetricTotal[]> {
  const startTime = new Date(now - WINDOW_MS);
  const endTime = new Date(now + 86_400_000);
  // One period covering the whole window, so each query returns at most one value.
  const period = Math.ceil((endTime.getTime() - startTime.getTime()) / 1000);
  const totals: MetricTotal[] = metrics.map((metric) => ({
    name: metric.MetricName ?? '',
    dimensions: Object.fromEntries((metric.Dimensions ?? []).map((d) => [d.Name ?? '', d.Value ?? ''])),
    sum: 0,
    sampleCount: 0,
  }));
  const perCall = 250; // GetMetricData takes up to 500 queries: two per metric
  for (let offset = 0; offset < metrics.length; offset += perCall) {
    const chunk = metrics.slice(offset, offset + perCall);
    const queries = chunk.flatMap((metric, i) =>
      (['Sum', 'SampleCount'] as const).map((stat) => ({
        Id: `m${offset + i}${stat.toLowerCase()}`,
        MetricStat: { Metric: metric, Period: period, Stat: stat },
      })),
    );
    const answer = await client.send(new GetMetricDataCommand({ MetricDataQueries: queries, StartTime: startTime, EndTime: endTime }));
    for (const result of answer.MetricDataResults ?? []) {
      const match = /^m(\d+)(sum|samplecount)$/.exec(result.Id ?? '');
      if (!match) continue;
      const total = totals[Number(match[1])]!;
      const value = (result.Values ?? []).reduce((s, v) => s + v, 0);
      if (match[2] === 'sum') total.sum += value;
      else total.sampleCount += value;
    }
  }
  return totals;
}

export function sumOf(totals: readonly MetricTotal[], name: string, dimension?: { name: string; value: string }): number {
  return totals
    .filter((total) => total.name === name && (!dimension || total.dimensions[dimension.name] === dimension.value))
    .reduce((sum, total) => sum + total.sum, 0);
}

/** Starts moto (or uses the one given) and wraps it as the CloudWatch stand-in. */
export async function startLocalCloudWatch(options: { moto?: Moto; port?: number } = {}): Promise<LocalCloudWatch> {
  const moto = options.moto ?? (await startMoto({ port: options.port }));
  const owned = !options.moto;
  const client = motoCloudWatchClient(moto);
  // moto loads a service's backend on its first request, which can take longer than the 2 s a
  // Metrics flush allows: warm CloudWatch up before handing it out.
  await client.send(new ListMetricsCommand({ Namespace: DEFAULT_NAMESPACE }));
  return {
    endpoint: moto.endpoint,
    moto,
    client: () => client,
    totals: (namespace, names) => readMetricTotals(client, namespace, Date.now(), names),
    sum: async (name, dimension, namespace) => sumOf(await readMetricTotals(client, namespace), name, dimension),
    reset: () => moto.reset(),
    async stop() {
      client.destroy();
      if (owned) await moto.stop();
    },
  };
}
