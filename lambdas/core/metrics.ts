/**
 * Custom CloudWatch metrics, buffered for one invocation and flushed once with PutMetricData.
 *
 * Counters with the same name and dimensions are summed into one datum; values (latencies,
 * sizes) become Values/Counts pairs. A request carries at most 1,000 datums and 1 MB (the SDK
 * gzips bodies over 10 KB). Dimensions are low-cardinality by construction: only the names in
 * ALLOWED_DIMENSIONS are accepted, so a meter id can never become a dimension and a metric bill.
 *
 * flush() never throws: CloudWatch being slow or down must not fail a batch of readings that
 * was stored fine. It logs, counts the loss, and gives up after a short timeout.
 */
import { PutMetricDataCommand, type CloudWatchClient, type MetricDatum } from '@aws-sdk/client-cloudwatch';
import { consoleLog, type Log } from '../../shared/log.ts';
import { ALLOWED_DIMENSIONS, type DimensionName, type MetricName, type MetricUnit } from './metric-catalog.ts';

export type Dimensions = Partial<Record<DimensionName, string>>;

/** PutMetricData limits: datums per request, and distinct values per datum. */
const MAX_DATUMS_PER_REQUEST = 1000;
const MAX_VALUES_PER_DATUM = 150;
/** Stay under the 1 MB request limit with room for JSON overhead (before gzip). */
const MAX_REQUEST_BYTES = 900_000;

export interface MetricsOptions {
  client: CloudWatchClient;
  /** @default 'Meterbridge' */
  namespace?: string;
  /** Added to every datum, e.g. { Stage: 'prod', Source: 'iot' }. */
  defaultDimensions?: Dimensions;
  /** Give up on a PutMetricData request after this long. @default 2000 */
  timeoutMs?: number;
  log?: Log;
  /** @default () => new Date() */
  clock?: () => Date;
}

export interface FlushReport {
  datums: number;
  requests: number;
  failedRequests: number;
  /** Datums that did not reach CloudWatch. */
  lostDatums: number;
}

interface Series {
  name: string;
  unit: MetricUnit;
  dimensions: Dimensions;
  timestamp: Date;
  /** value -> how many times it was recorded */
  values: Map<number, number>;
}

export class Metrics {
  private readonly client: CloudWatchClient;
  private readonly namespace: string;
  private readonly defaultDimensions: Dimensions;
  private readonly timeoutMs: number;
  private readonly log: Log;
  private readonly clock: () => Date;
  private series = new Map<string, Series>();
  private counters = new Map<string, Series & { sum: number }>();

  constructor(options: MetricsOptions) {
    this.client = options.client;
    this.namespace = options.namespace ?? 'Meterbridge';
    this.defaultDimensions = checkDimensions(options.defaultDimensions ?? {});
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.log = options.log ?? consoleLog;
    this.clock = options.clock ?? (() => new Date());
  }

  /** Adds to a counter (summed per flush). Zero is recorded too: a zero is data, a gap is not. */
  count(name: MetricName, increment = 1, dimensions: Dimensions = {}): void {
    const dims = this.dimensionsFor(dimensions);
    const key = seriesKey(name, 'Count', dims);
    const counter = this.counters.get(key);
    if (counter) counter.sum += increment;
    else this.counters.set(key, { name, unit: 'Count', dimensions: dims, timestamp: this.clock(), values: new Map(), sum: increment });
  }

  /** Records an observation of a value (a latency, a size), `times` times; CloudWatch keeps the distribution. */
  record(name: MetricName, value: number, unit: MetricUnit, dimensions: Dimensions = {}, times = 1): void {
    if (!Number.isFinite(value) || times <= 0) return;
    const dims = this.dimensionsFor(dimensions);
    const key = seriesKey(name, unit, dims);
    let series = this.series.get(key);
    if (!series) this.series.set(key, (series = { name, unit, dimensions: dims, timestamp: this.clock(), values: new Map() }));
    series.values.set(value, (series.values.get(value) ?? 0) + times);
  }

  /** Datums waiting to be flushed (for tests and for the handler's own log line). */
  pending(): MetricDatum[] {
    const datums: MetricDatum[] = [];
    for (const counter of this.counters.values()) {
      datums.push({
        MetricName: counter.name,
        Unit: counter.unit,
        Value: counter.sum,
        Timestamp: counter.timestamp,
        Dimensions: toCloudWatch(counter.dimensions),
      });
    }
    for (const series of this.series.values()) {
      const entries = [...series.values];
      for (let i = 0; i < entries.length; i += MAX_VALUES_PER_DATUM) {
        const chunk = entries.slice(i, i + MAX_VALUES_PER_DATUM);
        datums.push({
          MetricName: series.name,
          Unit: series.unit,
          Values: chunk.map(([value]) => value),
          Counts: chunk.map(([, count]) => count),
          Timestamp: series.timestamp,
          Dimensions: toCloudWatch(series.dimensions),
        });
      }
    }
    return datums;
  }

  /** Sends everything buffered and empties the buffer. Never throws. */
  async flush(): Promise<FlushReport> {
    const datums = this.pending();
    this.counters = new Map();
    this.series = new Map();
    const report: FlushReport = { datums: datums.length, requests: 0, failedRequests: 0, lostDatums: 0 };
    for (const batch of batches(datums)) {
      report.requests += 1;
      try {
        await this.client.send(new PutMetricDataCommand({ Namespace: this.namespace, MetricData: batch }), {
          abortSignal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (error) {
        report.failedRequests += 1;
        report.lostDatums += batch.length;
        this.log.warn('metrics flush failed; datums dropped', {
          namespace: this.namespace,
          datums: batch.length,
          error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
        });
      }
    }
    return report;
  }

  private dimensionsFor(dimensions: Dimensions): Dimensions {
    return { ...this.defaultDimensions, ...checkDimensions(dimensions) };
  }
}

function checkDimensions(dimensions: Dimensions): Dimensions {
  for (const name of Object.keys(dimensions)) {
    if (!(ALLOWED_DIMENSIONS as readonly string[]).includes(name)) {
      throw new Error(
        `metric dimension "${name}" is not allowed (allowed: ${ALLOWED_DIMENSIONS.join(', ')}); high-cardinality dimensions multiply the metric bill`,
      );
    }
  }
  return dimensions;
}

function seriesKey(name: string, unit: string, dimensions: Dimensions): string {
  const dims = Object.entries(dimensions)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return `${name}|${unit}|${dims}`;
}

function toCloudWatch(dimensions: Dimensions): Array<{ Name: string; Value: string }> {
  return Object.entries(dimensions)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([Name, Value]) => ({ Name, Value }));
}

/** Splits datums into requests within PutMetricData's count and size limits. */
export function batches(datums: MetricDatum[]): MetricDatum[][] {
  const result: MetricDatum[][] = [];
  let current: MetricDatum[] = [];
  let bytes = 0;
  for (const datum of datums) {
    const size = JSON.stringify(datum).length;
    if (current.length > 0 && (current.length === MAX_DATUMS_PER_REQUEST || bytes + size > MAX_REQUEST_BYTES)) {
      result.push(current);
      current = [];
      bytes = 0;
    }
    current.push(datum);
    bytes += size;
  }
  if (current.length > 0) result.push(current);
  return result;
}
