/**
 * The data lake's row: one changed interval (or register) reading, as the feed sends it to
 * Firehose and as local mode writes it to Parquet. Defined once here: the Glue table's columns
 * and partition keys (lib/readings-lake.ts), Firehose's record format conversion (which reads the
 * Glue table), the local Parquet writer (local/lake.ts) and `meterbridge readings sql` all come
 * from these lists, so the cloud and the local lake cannot drift apart.
 *
 * Superseded readings stay: every changed value is a new row with its revision, so the lake is the
 * history of the store. "Latest revision per interval" is a query (docs/readings-feed.md, LATEST_SQL).
 */
import { SOURCES, type Reading, type Source } from '../../../shared/reading.ts';

export interface LakeColumn {
  name: string;
  /** Glue / Athena (Hive) type. */
  glueType: 'string' | 'double' | 'bigint' | 'timestamp' | 'date';
  /** DuckDB type of the same column (local Parquet writer and `readings sql`). */
  duckType: 'VARCHAR' | 'DOUBLE' | 'BIGINT' | 'TIMESTAMP' | 'DATE';
  comment: string;
}

/** Data columns, in file order. Timestamps travel as epoch milliseconds in the JSON records. */
export const LAKE_COLUMNS: readonly LakeColumn[] = [
  { name: 'meter_id', glueType: 'string', duckType: 'VARCHAR', comment: 'meter id' },
  { name: 'channel', glueType: 'string', duckType: 'VARCHAR', comment: 'measured quantity, e.g. energy.active.import' },
  { name: 'kind', glueType: 'string', duckType: 'VARCHAR', comment: 'interval or register' },
  { name: 'interval_start', glueType: 'timestamp', duckType: 'TIMESTAMP', comment: 'interval start (UTC); the read time of a register read' },
  { name: 'interval_end', glueType: 'timestamp', duckType: 'TIMESTAMP', comment: 'interval end (UTC); null for a register read' },
  { name: 'value', glueType: 'double', duckType: 'DOUBLE', comment: 'reading value in unit' },
  { name: 'unit', glueType: 'string', duckType: 'VARCHAR', comment: 'unit of value' },
  { name: 'quality', glueType: 'string', duckType: 'VARCHAR', comment: 'actual or estimated' },
  { name: 'revision', glueType: 'bigint', duckType: 'BIGINT', comment: 'revision of this value; a higher one supersedes it' },
  { name: 'origin_id', glueType: 'string', duckType: 'VARCHAR', comment: 'unit of work that carried it (message, file, delivery)' },
  { name: 'block_version', glueType: 'bigint', duckType: 'BIGINT', comment: 'version of the store block write that changed it' },
  { name: 'ingested_at', glueType: 'timestamp', duckType: 'TIMESTAMP', comment: 'when the store wrote it (UTC)' },
];

/** Hive partition keys, in path order: readings/day=YYYY-MM-DD/source=<source>/. Not inside the files. */
export const LAKE_PARTITION_KEYS: readonly LakeColumn[] = [
  { name: 'day', glueType: 'date', duckType: 'DATE', comment: "the store block's local day (the stage's block time zone)" },
  { name: 'source', glueType: 'string', duckType: 'VARCHAR', comment: 'iot, smt or ready' },
];

/** The values of the source partition key (Athena's partition projection lists them). */
export const LAKE_SOURCES: readonly Source[] = SOURCES;

/** Object key prefix of the lake's readings in the lake bucket. */
export const LAKE_PREFIX = 'readings/';
/** The name of the readings table in Glue and in `meterbridge readings sql`. */
export const LAKE_TABLE = 'readings';

export function lakePartitionPrefix(day: string, source: string): string {
  return `${LAKE_PREFIX}day=${day}/source=${source}/`;
}

/** One row as a JSON record (Firehose input; the local writer reads the same objects). */
export interface LakeRow {
  meter_id: string;
  channel: string;
  kind: Reading['kind'];
  interval_start: number;
  interval_end: number | null;
  value: number;
  unit: string;
  quality: string;
  revision: number;
  origin_id: string;
  block_version: number;
  ingested_at: number;
  /** Partition keys: used by Firehose's dynamic partitioning, not stored in the Parquet file. */
  day: string;
  source: Source;
}

export function lakeRow(reading: Reading, block: { day: string; version: number; ingestedAt: number }): LakeRow {
  return {
    meter_id: reading.meterId,
    channel: reading.channel,
    kind: reading.kind,
    interval_start: (reading.kind === 'interval' ? reading.start : reading.at).getTime(),
    interval_end: reading.kind === 'interval' ? reading.end.getTime() : null,
    value: reading.value,
    unit: reading.unit,
    quality: reading.quality,
    revision: reading.revision,
    origin_id: reading.originId,
    block_version: block.version,
    ingested_at: block.ingestedAt,
    day: block.day,
    source: reading.source,
  };
}

/**
 * The latest revision of every interval: what the store holds. Rows repeat when a stream batch is
 * retried (at-least-once), and superseded values stay as older revisions; this keeps one per
 * identity, the same order the store uses (revision, then actual over estimated, then the later write).
 */
export const LATEST_SQL = `SELECT * FROM (
  SELECT *, row_number() OVER (
    PARTITION BY meter_id, channel, interval_start
    ORDER BY revision DESC, CASE quality WHEN 'actual' THEN 1 ELSE 0 END DESC, block_version DESC, ingested_at DESC
  ) AS rank_in_identity
  FROM ${LAKE_TABLE}
) WHERE rank_in_identity = 1`;
