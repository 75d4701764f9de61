/**
 * The local data lake: the rows the feed sends to Firehose in the cloud are written here as Parquet
 * files (with DuckDB) into the local S3 stand-in, under the same readings/day=<day>/source=<source>/
 * keys Firehose's dynamic partitioning makes; and DuckDB stands in for Athena over those files, with
 * the readings visible as the table `readings` (columns and partition keys from lake-schema.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import type { LakeSink } from '../lambdas/core/feed/feed.ts';
import type { Reading } from '../shared/reading.ts';
import {
  LAKE_COLUMNS,
  LAKE_PARTITION_KEYS,
  LAKE_PREFIX,
  LAKE_TABLE,
  LATEST_SQL,
  lakePartitionPrefix,
  type LakeRow,
} from '../lambdas/core/feed/lake-schema.ts';
import { LOCAL_LAKE_BUCKET } from './defaults.ts';
import { storedObjectFiles } from './s3-server.ts';

/** Where s3rver keeps local mode's buckets under a state folder (the lake's Parquet files too). */
export function localS3Directory(stateDir: string): string {
  return join(stateDir, 's3');
}

/** The local lake's Parquet files under a state folder (readable after local mode stopped). */
export function localLakeFiles(stateDir: string): string[] {
  return storedObjectFiles(localS3Directory(stateDir), LOCAL_LAKE_BUCKET, LAKE_PREFIX);
}

const quote = (text: string) => `'${text.replace(/'/g, "''")}'`;

/** Writes each put as one Parquet file per (day, source) partition, like one Firehose buffer. */
export class LocalParquetLake implements LakeSink {
  private files = 0;
  private rows = 0;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
  ) {}

  /** Files and rows written so far. */
  written(): { files: number; rows: number } {
    return { files: this.files, rows: this.rows };
  }

  async put(rows: readonly LakeRow[]): Promise<void> {
    const partitions = new Map<string, LakeRow[]>();
    for (const row of rows) {
      const key = lakePartitionPrefix(row.day, row.source);
      partitions.set(key, [...(partitions.get(key) ?? []), row]);
    }
    for (const [prefix, partition] of partitions) {
      const body = await toParquet(partition);
      await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: `${prefix}${Date.now()}-${randomUUID()}.parquet`, Body: body }));
      this.files += 1;
      this.rows += partition.length;
    }
  }
}

/** The rows as one Parquet file (the data columns only: day and source are in the key, as Firehose writes them). */
export async function toParquet(rows: readonly LakeRow[]): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'mb-lake-'));
  const json = join(dir, 'rows.ndjson');
  const parquet = join(dir, 'rows.parquet');
  try {
    await writeFile(json, rows.map((row) => JSON.stringify(row)).join('\n'));
    // Timestamps come as epoch milliseconds, as Firehose's deserializer reads them (timestampFormats: millis).
    const read = LAKE_COLUMNS.map(({ name, duckType }) => `${name}: ${quote(duckType === 'TIMESTAMP' ? 'BIGINT' : duckType)}`).join(', ');
    const select = LAKE_COLUMNS.map(({ name, duckType }) => (duckType === 'TIMESTAMP' ? `epoch_ms(${name}) AS ${name}` : name)).join(', ');
    await withDuckDb(async (connection) => {
      await connection.run(
        `COPY (SELECT ${select} FROM read_json(${quote(json)}, format = 'newline_delimited', columns = {${read}})) TO ${quote(parquet)} (FORMAT parquet, COMPRESSION snappy)`,
      );
    });
    return await readFile(parquet);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function withDuckDb<T>(work: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    return await work(connection);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

export interface SqlResult {
  columns: string[];
  /** Rows as JSON values (big integers as strings, timestamps as ISO-like text). */
  rows: unknown[][];
}

/**
 * Runs SQL over Parquet files of the lake, with `readings` defined over them (hive partitions
 * day and source from the paths) and `readings_latest` as the latest revision per interval.
 * No files: `readings` is empty with the same columns.
 */
export async function queryLake(files: readonly string[], sql: string): Promise<SqlResult> {
  return withDuckDb(async (connection) => {
    const columns = [...LAKE_COLUMNS, ...LAKE_PARTITION_KEYS];
    const hiveTypes = LAKE_PARTITION_KEYS.map(({ name }) => `${quote(name)}: 'VARCHAR'`).join(', ');
    const source =
      files.length === 0
        ? `SELECT ${columns.map(({ name, duckType }) => `NULL::${duckType} AS ${name}`).join(', ')} WHERE false`
        : `SELECT ${columns.map(({ name }) => name).join(', ')} FROM read_parquet([${files.map(quote).join(', ')}], hive_partitioning = true, hive_types = {${hiveTypes}})`;
    await connection.run(`CREATE VIEW ${LAKE_TABLE} AS ${source}`);
    await connection.run(`CREATE VIEW ${LAKE_TABLE}_latest AS ${LATEST_SQL}`);
    const result = await connection.runAndReadAll(sql);
    return { columns: result.columnNames(), rows: result.getRowsJson() };
  });
}

/** The result as an aligned text table. */
export function formatTable(result: SqlResult): string {
  const cells = [result.columns, ...result.rows.map((row) => row.map((value) => (value === null ? 'NULL' : String(value))))];
  const widths = result.columns.map((_, index) => Math.max(...cells.map((row) => (row[index] ?? '').length)));
  const line = (row: string[]) => row.map((cell, index) => cell.padEnd(widths[index]!)).join(' | ');
  return [
    line(cells[0]!),
    widths.map((w) => '-'.repeat(w)).join('-+-'),
    ...cells.slice(1).map(line),
    `(${result.rows.length} row${result.rows.length === 1 ? '' : 's'})`,
  ].join('\n');
}

export interface LakeCheck {
  ok: boolean;
  /** Rows in the lake: every changed reading, superseded ones and retried deliveries included. */
  rows: number;
  /** Rows after "latest revision per interval" (readings_latest): must equal the store's readings. */
  latest: number;
  storeReadings: number;
  /** Per source: count and sum of values, in the store and in the lake's latest revisions. */
  perSource: Record<string, { store: { count: number; sum: number }; lake: { count: number; sum: number } }>;
}

/** Compares the lake's latest revision per interval with what the store holds, per source (count and sum of values). */
export async function checkLakeAgainstStore(files: readonly string[], stored: readonly Reading[]): Promise<LakeCheck> {
  const perSource: LakeCheck['perSource'] = {};
  const entry = (source: string) => (perSource[source] ??= { store: { count: 0, sum: 0 }, lake: { count: 0, sum: 0 } });
  for (const reading of stored) {
    const tally = entry(reading.source).store;
    tally.count += 1;
    tally.sum += reading.value;
  }
  const bySource = await queryLake(files, 'SELECT source, count(*), sum(value) FROM readings_latest GROUP BY source');
  for (const [source, count, sum] of bySource.rows as [string, number | string, number][]) {
    entry(source).lake = { count: Number(count), sum: Number(sum) };
  }
  const rows = Number((await queryLake(files, 'SELECT count(*) FROM readings')).rows[0]?.[0] ?? 0);
  const latest = Object.values(perSource).reduce((total, { lake }) => total + lake.count, 0);
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(a), Math.abs(b));
  const ok =
    latest === stored.length && Object.values(perSource).every(({ store, lake }) => store.count === lake.count && close(store.sum, lake.sum));
  return { ok, rows, latest, storeReadings: stored.length, perSource };
}
