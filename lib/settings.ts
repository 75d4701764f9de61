/**
 * Per-stage settings, read from CDK context (cdk.json `meterbridge:stages`, stage picked by
 * `meterbridge:stage`, overridable with `-c meterbridge:stage=prod`).
 *
 * Everything is validated up front so a typo fails `cdk synth` with a message that names the
 * key, instead of surfacing as a CloudFormation error half-way through a deploy.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { IConstruct } from 'constructs';
import { parseReadySettings, type ReadySettings } from './ready-settings.ts';
import { parseSmtSettings, type SmtSettings } from './smt-settings.ts';
import { METRIC_CATALOG, type MetricName, type MetricSource } from '../lambdas/core/metric-catalog.ts';
import { isRecord } from './settings-values.ts';

/** Context key holding the name of the stage to synthesize. */
export const STAGE_CONTEXT_KEY = 'meterbridge:stage';
/** Context key holding the settings of every stage, keyed by stage name. */
export const STAGES_CONTEXT_KEY = 'meterbridge:stages';
/** Used when neither cdk.json nor the command line names a stage. */
export const DEFAULT_STAGE = 'dev';

export interface StageSettings {
  /** Stage name, e.g. `dev` or `prod`; part of the stack name and of every resource's tags. */
  readonly stage: string;
  /** Where alarm notifications are e-mailed; undefined when none is configured. */
  readonly alarmEmail: string | undefined;
  /** IANA time zone in which interval blocks are grouped into local days. */
  readonly blockTimeZone: string;
  /** Retention of every Lambda log group. */
  readonly logRetention: logs.RetentionDays;
  /** What CloudFormation does with stateful resources (tables, keys, log groups) on removal. */
  readonly removalPolicy: RemovalPolicy;
  /** Whether the DynamoDB tables refuse DeleteTable until this is turned off. */
  readonly deletionProtection: boolean;
  /** Alarm thresholds (cdk.json `alarms`); every field has a default, see {@link DEFAULT_ALARM_SETTINGS}. */
  readonly alarms: AlarmSettings;
  /** Smart Meter Texas pull (cdk.json `smt`); absent = deployed but switched off. See lib/smt-settings.ts. */
  readonly smt: SmtSettings;
  /** Kamstrup READY webhook (cdk.json `ready`); every field has a default. See lib/ready-settings.ts. */
  readonly ready: ReadySettings;
  /** Query API (cdk.json `query`); absent = the defaults of lib/query-api.ts (IAM only, no API keys). */
  readonly query?: QuerySettings;
}

/** The query API's per-stage settings (lib/query-api.ts). */
export interface QuerySettings {
  /** Also require an API key (x-api-key) on every method, with a usage plan; callers still sign with SigV4. */
  readonly apiKeys: boolean;
  /** Steady requests per second across the stage. */
  readonly throttleRateLimit: number;
  /** Burst of requests across the stage. */
  readonly throttleBurstLimit: number;
}

export const DEFAULT_QUERY_SETTINGS: QuerySettings = { apiKeys: false, throttleRateLimit: 20, throttleBurstLimit: 40 };

/** Validates the optional `query` block of a stage. */
export function parseQuerySettings(value: unknown, key: string): QuerySettings {
  if (value === undefined) return DEFAULT_QUERY_SETTINGS;
  if (!isRecord(value)) throw new StageSettingsError(key, 'must be an object {apiKeys, throttleRateLimit, throttleBurstLimit}');
  const known = Object.keys(DEFAULT_QUERY_SETTINGS);
  for (const name of Object.keys(value))
    if (!known.includes(name)) throw new StageSettingsError(`${key}.${name}`, `unknown query setting; known: ${known.join(', ')}`);
  const apiKeys = value.apiKeys ?? DEFAULT_QUERY_SETTINGS.apiKeys;
  if (typeof apiKeys !== 'boolean') throw new StageSettingsError(`${key}.apiKeys`, 'must be true or false');
  const limit = (name: 'throttleRateLimit' | 'throttleBurstLimit') => {
    const n = value[name] ?? DEFAULT_QUERY_SETTINGS[name];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 10_000)
      throw new StageSettingsError(`${key}.${name}`, 'must be a whole number from 1 to 10000');
    return n;
  };
  return { apiKeys, throttleRateLimit: limit('throttleRateLimit'), throttleBurstLimit: limit('throttleBurstLimit') };
}

/** Per-stage alarm thresholds; the operations construct (lib/operations) applies them. */
export interface AlarmSettings {
  /**
   * Minutes without a newly stored reading after which a source's freshness alarm fires.
   * A source not listed here uses its ingestion path's own `expectedSilenceMinutes`.
   */
  readonly freshnessMinutes: Readonly<Partial<Record<MetricSource, number>>>;
  /**
   * Age in minutes of the oldest message on a source's work queues that alarms; an unlisted source
   * uses a full retry cycle of each queue plus 15 minutes, at least 30.
   */
  readonly queueAgeMinutes: Readonly<Partial<Record<MetricSource, number>>>;
  /** Lambda errors per 5 minutes that count as a bad period (two bad periods of three alarm). */
  readonly lambdaErrors: number;
  /** Lambda throttles per 5 minutes that count as a bad period (two bad periods of three alarm). */
  readonly lambdaThrottles: number;
  /** DynamoDB read + write throttle events per 5 minutes that count as a bad period (two of three alarm). */
  readonly tableThrottles: number;
  /** Threshold overrides for the alarms on catalog metrics (`watch: 'alarm'`), by metric name. */
  readonly metricThresholds: Readonly<Partial<Record<MetricName, number>>>;
}

/** Used for every alarm setting a stage leaves out. */
export const DEFAULT_ALARM_SETTINGS: AlarmSettings = {
  freshnessMinutes: {},
  queueAgeMinutes: {},
  lambdaErrors: 1,
  lambdaThrottles: 1,
  tableThrottles: 1,
  metricThresholds: {},
};

/** The least oldest-message age that alarms on a queue whose source has no `queueAgeMinutes` entry. */
export const DEFAULT_QUEUE_AGE_MINUTES = 30;

// CloudWatch evaluates an alarm over at most 7 days (period x evaluation periods).
const MAX_FRESHNESS_MINUTES = 7 * 24 * 60;
const ALARM_KEYS = ['freshnessMinutes', 'queueAgeMinutes', 'lambdaErrors', 'lambdaThrottles', 'tableThrottles', 'metricThresholds'] as const;
const SOURCES: readonly MetricSource[] = ['iot', 'smt', 'ready'];

const KNOWN_KEYS = [
  'alarmEmail',
  'blockTimeZone',
  'logRetentionDays',
  'removalPolicy',
  'deletionProtection',
  'alarms',
  'smt',
  'ready',
  'query',
] as const;

const REMOVAL_POLICIES: Readonly<Record<string, RemovalPolicy>> = {
  retain: RemovalPolicy.RETAIN,
  destroy: RemovalPolicy.DESTROY,
};

// RetentionDays is a numeric TS enum, so Object.values also yields its reverse-mapped names.
const RETENTION_DAYS: ReadonlySet<number> = new Set(Object.values(logs.RetentionDays).filter((value): value is number => typeof value === 'number'));

// Deliberately loose: SNS sends a confirmation mail anyway, this only catches obvious slips
// (a missing @, a stray space) before a subscription is created for an address that cannot exist.
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

// The stage name becomes part of the stack name, which CloudFormation limits to this alphabet.
const STAGE_NAME = /^[A-Za-z][A-Za-z0-9-]{0,63}$/;

/** Thrown for any invalid setting; the message always starts with the offending context key. */
export class StageSettingsError extends Error {
  constructor(key: string, problem: string) {
    super(`${key}: ${problem}`);
    this.name = 'StageSettingsError';
  }
}

/**
 * Validates the raw context values and turns them into typed settings.
 *
 * Pure (no construct tree) so it can be unit-tested with plain objects.
 *
 * @param stageValue value of `meterbridge:stage`; `undefined` selects {@link DEFAULT_STAGE}
 * @param stagesValue value of `meterbridge:stages`; a JSON string is accepted because
 *   `cdk -c key=value` passes every value as a string
 */
export function parseStageSettings(stageValue: unknown, stagesValue: unknown): StageSettings {
  const stage = stageValue ?? DEFAULT_STAGE;
  if (typeof stage !== 'string' || !STAGE_NAME.test(stage)) {
    throw new StageSettingsError(STAGE_CONTEXT_KEY, `${JSON.stringify(stage)} is not a valid stage name (a letter, then letters, digits or '-')`);
  }

  let stages = stagesValue;
  if (typeof stages === 'string') {
    try {
      stages = JSON.parse(stages) as unknown;
    } catch {
      throw new StageSettingsError(STAGES_CONTEXT_KEY, 'is a string but not valid JSON');
    }
  }
  if (!isRecord(stages)) {
    throw new StageSettingsError(STAGES_CONTEXT_KEY, 'missing or not an object of stage name -> settings (see cdk.json)');
  }
  const raw = stages[stage];
  if (raw === undefined) {
    const known = Object.keys(stages).join(', ') || '(none)';
    throw new StageSettingsError(STAGE_CONTEXT_KEY, `unknown stage "${stage}"; ${STAGES_CONTEXT_KEY} defines: ${known}`);
  }
  const prefix = `${STAGES_CONTEXT_KEY}.${stage}`;
  if (!isRecord(raw)) {
    throw new StageSettingsError(prefix, 'must be an object');
  }

  // A misspelt key would otherwise be ignored silently and its default used instead.
  for (const key of Object.keys(raw)) {
    if (!(KNOWN_KEYS as readonly string[]).includes(key)) {
      throw new StageSettingsError(`${prefix}.${key}`, `unknown setting; known settings: ${KNOWN_KEYS.join(', ')}`);
    }
  }

  const alarmEmail = raw.alarmEmail ?? '';
  if (typeof alarmEmail !== 'string' || (alarmEmail !== '' && !EMAIL.test(alarmEmail))) {
    throw new StageSettingsError(`${prefix}.alarmEmail`, `${JSON.stringify(alarmEmail)} is not an e-mail address (use "" for none)`);
  }

  const blockTimeZone = raw.blockTimeZone;
  if (typeof blockTimeZone !== 'string' || blockTimeZone === '' || !isTimeZone(blockTimeZone)) {
    throw new StageSettingsError(`${prefix}.blockTimeZone`, `${JSON.stringify(blockTimeZone)} is not an IANA time zone (e.g. America/Chicago, UTC)`);
  }

  const logRetentionDays = raw.logRetentionDays;
  if (typeof logRetentionDays !== 'number' || !RETENTION_DAYS.has(logRetentionDays)) {
    throw new StageSettingsError(
      `${prefix}.logRetentionDays`,
      `${JSON.stringify(logRetentionDays)} is not a CloudWatch Logs retention; allowed: ${[...RETENTION_DAYS].join(', ')}`,
    );
  }

  const removalPolicyName = raw.removalPolicy ?? 'retain';
  const removalPolicy = typeof removalPolicyName === 'string' ? REMOVAL_POLICIES[removalPolicyName] : undefined;
  if (removalPolicy === undefined) {
    throw new StageSettingsError(`${prefix}.removalPolicy`, `${JSON.stringify(removalPolicyName)} must be "retain" or "destroy"`);
  }

  // Production data is protected unless a stage says otherwise; scratch stages stay easy to tear down.
  const deletionProtection = raw.deletionProtection ?? stage === 'prod';
  if (typeof deletionProtection !== 'boolean') {
    throw new StageSettingsError(`${prefix}.deletionProtection`, `${JSON.stringify(deletionProtection)} must be true or false`);
  }
  if (deletionProtection && removalPolicy === RemovalPolicy.DESTROY) {
    // Otherwise `cdk destroy` would fail on the tables after deleting everything else.
    throw new StageSettingsError(`${prefix}.deletionProtection`, 'cannot be true when removalPolicy is "destroy"');
  }

  return {
    stage,
    alarmEmail: alarmEmail === '' ? undefined : alarmEmail,
    blockTimeZone,
    logRetention: logRetentionDays as logs.RetentionDays,
    removalPolicy,
    deletionProtection,
    alarms: parseAlarmSettings(raw.alarms, `${prefix}.alarms`),
    smt: parseSmtSettings(raw.smt, `${prefix}.smt`, stage),
    ready: parseReadySettings(raw.ready, `${prefix}.ready`),
    ...(raw.query !== undefined ? { query: parseQuerySettings(raw.query, `${prefix}.query`) } : {}),
  };
}

/** Validates the optional `alarms` block of a stage; absent keys take {@link DEFAULT_ALARM_SETTINGS}. */
export function parseAlarmSettings(value: unknown, key: string): AlarmSettings {
  if (value === undefined) return DEFAULT_ALARM_SETTINGS;
  if (!isRecord(value)) throw new StageSettingsError(key, 'must be an object (see cdk.json)');
  for (const name of Object.keys(value)) {
    if (!(ALARM_KEYS as readonly string[]).includes(name)) {
      throw new StageSettingsError(`${key}.${name}`, `unknown alarm setting; known: ${ALARM_KEYS.join(', ')}`);
    }
  }
  const count = (name: 'lambdaErrors' | 'lambdaThrottles' | 'tableThrottles'): number => {
    const raw = value[name] ?? DEFAULT_ALARM_SETTINGS[name];
    if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 1) {
      throw new StageSettingsError(`${key}.${name}`, `${JSON.stringify(raw)} must be a whole number of at least 1 (events per 5 minutes)`);
    }
    return raw;
  };
  return {
    freshnessMinutes: bySource(value.freshnessMinutes, `${key}.freshnessMinutes`, 5, MAX_FRESHNESS_MINUTES),
    queueAgeMinutes: bySource(value.queueAgeMinutes, `${key}.queueAgeMinutes`, 1, 14 * 24 * 60),
    lambdaErrors: count('lambdaErrors'),
    lambdaThrottles: count('lambdaThrottles'),
    tableThrottles: count('tableThrottles'),
    metricThresholds: metricThresholds(value.metricThresholds, `${key}.metricThresholds`),
  };
}

/** `{ "<source>": <whole minutes> }`, each within [min, max]. */
function bySource(value: unknown, key: string, min: number, max: number): Partial<Record<MetricSource, number>> {
  if (value === undefined) return {};
  if (!isRecord(value)) throw new StageSettingsError(key, `must be an object of source -> minutes, e.g. { "iot": 60 }`);
  const result: Partial<Record<MetricSource, number>> = {};
  for (const [source, minutes] of Object.entries(value)) {
    if (!(SOURCES as readonly string[]).includes(source)) {
      throw new StageSettingsError(`${key}.${source}`, `unknown source; sources: ${SOURCES.join(', ')}`);
    }
    if (typeof minutes !== 'number' || !Number.isInteger(minutes) || minutes < min || minutes > max) {
      throw new StageSettingsError(`${key}.${source}`, `${JSON.stringify(minutes)} must be whole minutes from ${min} to ${max}`);
    }
    result[source as MetricSource] = minutes;
  }
  return result;
}

/** `{ "<catalog metric with watch 'alarm'>": <positive number> }`. */
function metricThresholds(value: unknown, key: string): Partial<Record<MetricName, number>> {
  if (value === undefined) return {};
  if (!isRecord(value)) throw new StageSettingsError(key, 'must be an object of metric name -> threshold');
  const catalog: Readonly<Record<string, { watch: string }>> = METRIC_CATALOG;
  const result: Partial<Record<MetricName, number>> = {};
  for (const [name, threshold] of Object.entries(value)) {
    const spec = catalog[name];
    if (spec === undefined || spec.watch !== 'alarm') {
      const alarmed = Object.keys(catalog).filter((metric) => catalog[metric]?.watch === 'alarm');
      throw new StageSettingsError(`${key}.${name}`, `not an alarmed metric of lambdas/core/metric-catalog.ts; alarmed: ${alarmed.join(', ')}`);
    }
    if (name === 'ReadingsStored') {
      throw new StageSettingsError(`${key}.${name}`, 'is watched by the freshness alarms: set freshnessMinutes instead');
    }
    if (typeof threshold !== 'number' || !Number.isFinite(threshold) || threshold <= 0) {
      throw new StageSettingsError(`${key}.${name}`, `${JSON.stringify(threshold)} must be a positive number`);
    }
    result[name as MetricName] = threshold;
  }
  return result;
}

/** Reads and validates the settings of the stage selected in the construct tree's context. */
export function loadStageSettings(scope: IConstruct): StageSettings {
  return parseStageSettings(scope.node.tryGetContext(STAGE_CONTEXT_KEY), scope.node.tryGetContext(STAGES_CONTEXT_KEY));
}

function isTimeZone(timeZone: string): boolean {
  try {
    // Throws RangeError for names the runtime's tz database does not know; the Lambda code
    // (lambdas/core/time.ts) uses the same Intl machinery, so what passes here works there.
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}
