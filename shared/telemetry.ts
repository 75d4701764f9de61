/**
 * Telemetry contract v1, the one definition of it: what a gateway publishes to its Basic Ingest
 * topic `$aws/rules/<rule>/gateways/<thingName>/telemetry` (docs/iot.md). The gateway, the ingest
 * core, device provisioning, the local broker and the CDK stack all import the topic, the
 * thing-name pattern and the limits from here.
 *
 *   { "v": 1, "gatewayId": "<thing name>", "seq": <per-gateway increasing integer>,
 *     "sentAt": "<ISO-8601>",
 *     "readings": [ { meterId, channel, start, end | at, value, unit, quality? } ],
 *     "blocks":   [ { meterId, channel, start, intervalSeconds, unit, values: [..], quality?: [..] } ] }
 *
 * A block is one meter's consecutive intervals without repeating names and timestamps; a null
 * in `values` is a missing interval (skipped, never stored as zero). The message id is
 * (gatewayId, seq). Everything is validated strictly: a message is stored whole or not at all.
 */
import { z } from 'zod';
import {
  EARLIEST_PLAUSIBLE,
  MAX_INTERVAL_SECONDS,
  MIN_INTERVAL_SECONDS,
  QUALITIES,
  UNITS,
  unitOfWorkProblems,
  validateReading,
  type IntervalReading,
  type Reading,
  type ValidationOptions,
} from './reading.ts';
import { parseUntrustedJson, preview } from './untrusted-json.ts';

/** IoT Core refuses larger messages; anything bigger reaching us did not come through it. */
export const MAX_MESSAGE_BYTES = 128 * 1024;
/** Most readings one message may carry. */
export const MAX_READINGS_PER_MESSAGE = 5000;
/** Most blocks one message may carry. */
export const MAX_BLOCKS_PER_MESSAGE = 1000;
/** Most values one block may carry: a day of 1-minute intervals. */
export const MAX_VALUES_PER_BLOCK = 1440;

/**
 * Thing names as IoT Core allows them (API reference): 1-128 of `[a-zA-Z0-9:_-]`. A gateway's
 * thing name is also its MQTT client id and its certificate's CN, and it is a topic level.
 */
export const THING_NAME_PATTERN = /^[a-zA-Z0-9:_-]{1,128}$/;
/** What THING_NAME_PATTERN allows, for refusals. */
export const THING_NAME_RULE = 'must be an IoT thing name (1-128 of a-z A-Z 0-9 : _ -)';
/** Topic rule names as IoT Core allows them: 1-128 of `[a-zA-Z0-9_]`. */
export const RULE_NAME_PATTERN = /^[a-zA-Z0-9_]{1,128}$/;

/**
 * Basic Ingest: a publish to `$aws/rules/<rule>/...` goes straight to that topic rule (no broker
 * fan-out, no messaging charge); nobody can subscribe to such topics.
 */
export const BASIC_INGEST_PREFIX = '$aws/rules/';

/** The topic levels around the thing name: `gateways/<thingName>/telemetry`. */
const GATEWAYS_LEVEL = 'gateways';
const TELEMETRY_LEVEL = 'telemetry';

/** The topic filter of the telemetry rule (what `topic()` matches once IoT has removed the Basic Ingest prefix). */
export const TELEMETRY_TOPIC_FILTER = `${GATEWAYS_LEVEL}/+/${TELEMETRY_LEVEL}`;

/** `$aws/rules/<rule>/gateways`: gateway `<thingName>` publishes to `<prefix>/<thingName>/telemetry`. */
export function basicIngestTopicPrefix(ruleName: string): string {
  return `${BASIC_INGEST_PREFIX}${ruleName}/${GATEWAYS_LEVEL}`;
}

/** The Basic Ingest topic gateway `thingName` publishes its telemetry to. */
export function telemetryTopic(ruleName: string, thingName: string): string {
  return `${basicIngestTopicPrefix(ruleName)}/${thingName}/${TELEMETRY_LEVEL}`;
}

/**
 * AWS IoT Core's CreateCertificateFromCsr MQTT API (fleet provisioning API, JSON payload format):
 * the device publishes `{"certificateSigningRequest": "<PEM>"}` to the request topic and gets
 * `{"certificateId", "certificatePem", "certificateOwnershipToken"}` on `/accepted` or
 * `{"statusCode", "errorCode", "errorMessage"}` on `/rejected`, on its own connection only. The
 * new certificate is PENDING_ACTIVATION and attached to nothing: the gateway fleet rule's
 * rotation notice has the cloud activate and attach it (docs/gateway.md "Certificate rotation").
 */
export const CREATE_FROM_CSR_TOPIC = '$aws/certificates/create-from-csr/json';
export const CREATE_FROM_CSR_ACCEPTED_TOPIC = `${CREATE_FROM_CSR_TOPIC}/accepted`;
export const CREATE_FROM_CSR_REJECTED_TOPIC = `${CREATE_FROM_CSR_TOPIC}/rejected`;

/**
 * What a gateway tells the cloud about itself, beside telemetry, on the Basic Ingest topics of the
 * fleet rule: `rotation` notices (activate the new certificate, retire the old one) and `status`
 * reports (health). One rule, one function: both are small, rare and per gateway.
 */
export const GATEWAY_EVENT_KINDS = ['rotation', 'status'] as const;
export type GatewayEventKind = (typeof GATEWAY_EVENT_KINDS)[number];

/** The topic filter of the fleet rule (after IoT removed the Basic Ingest prefix). */
export const GATEWAY_EVENTS_TOPIC_FILTER = `${GATEWAYS_LEVEL}/+/+`;

/** The fleet rule's name beside a telemetry rule: `meterbridge_<stage>_telemetry` -> `meterbridge_<stage>_fleet`. */
export function fleetRuleName(telemetryRuleName: string): string {
  return `${telemetryRuleName.replace(/_telemetry$/, '')}_fleet`;
}

/** The Basic Ingest topic gateway `thingName` publishes its `kind` events to. */
export function gatewayEventTopic(telemetryRuleName: string, thingName: string, kind: GatewayEventKind): string {
  return `${basicIngestTopicPrefix(fleetRuleName(telemetryRuleName))}/${thingName}/${kind}`;
}

/** Thing name and kind of a gateway event topic, with or without the Basic Ingest prefix. */
export function gatewayEventFromTopic(topic: string): { thingName: string; kind: GatewayEventKind } | undefined {
  const [first, thingName, kind, ...more] = withoutBasicIngestPrefix(topic).split('/');
  if (first !== GATEWAYS_LEVEL || more.length > 0 || !thingName || !THING_NAME_PATTERN.test(thingName)) return undefined;
  return (GATEWAY_EVENT_KINDS as readonly string[]).includes(kind ?? '') ? { thingName, kind: kind as GatewayEventKind } : undefined;
}

/** The topic as the rule sees it: IoT strips `$aws/rules/<rule>/` before the rule runs. */
export function withoutBasicIngestPrefix(topic: string): string {
  if (!topic.startsWith(BASIC_INGEST_PREFIX)) return topic;
  const ruleEnd = topic.indexOf('/', BASIC_INGEST_PREFIX.length);
  // No rule name, or nothing after it: not a Basic Ingest topic, left as it is (and refused by the caller).
  return ruleEnd > BASIC_INGEST_PREFIX.length ? topic.slice(ruleEnd + 1) : topic;
}
/**
 * A v1 message nests four levels (message, blocks, block, values); anything much deeper is not
 * one, and is refused before it is parsed (see shared/untrusted-json.ts for why).
 */
export const MAX_MESSAGE_DEPTH = 8;

const instantString = z.iso.datetime({ offset: true });

const readingEntry = z.strictObject({
  meterId: z.string(),
  channel: z.string(),
  start: instantString.optional(),
  end: instantString.optional(),
  at: instantString.optional(),
  value: z.number({ error: 'must be a finite number' }),
  unit: z.enum(UNITS, { error: (issue) => `unknown unit ${preview(issue.input)}` }),
  quality: z.enum(QUALITIES).default('actual'),
});

const blockEntry = z.strictObject({
  meterId: z.string(),
  channel: z.string(),
  start: instantString,
  intervalSeconds: z.number().int().min(60).max(86_400),
  unit: z.enum(UNITS, { error: (issue) => `unknown unit ${preview(issue.input)}` }),
  values: z
    .array(z.number({ error: 'must be a finite number or null' }).nullable())
    .min(1)
    .max(MAX_VALUES_PER_BLOCK),
  quality: z.array(z.enum(QUALITIES)).optional(),
});

const messageSchema = z
  .strictObject({
    v: z.literal(1, { error: 'unsupported contract version (this handler reads v1)' }),
    gatewayId: z.string().regex(THING_NAME_PATTERN, THING_NAME_RULE),
    seq: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    sentAt: instantString,
    readings: z.array(readingEntry).max(MAX_READINGS_PER_MESSAGE).default([]),
    blocks: z.array(blockEntry).max(MAX_BLOCKS_PER_MESSAGE).default([]),
  })
  .refine((message) => message.readings.length + message.blocks.length > 0, 'a message carries at least one reading or block');

export type TelemetryMessage = z.output<typeof messageSchema>;

/**
 * Why a message was refused, as a metric can count it: `too-large` and `too-deep` (refused
 * unparsed), `invalid` (not JSON, not the contract, or a reading the model refuses),
 * `gateway-mismatch` (speaks for another thing than its topic's), `inconsistent` (the same
 * identity twice or overlapping intervals: it could not be stored whole).
 */
export const TELEMETRY_REFUSALS = ['too-large', 'too-deep', 'invalid', 'gateway-mismatch', 'inconsistent'] as const;
export type TelemetryRefusal = (typeof TELEMETRY_REFUSALS)[number];

export type DecodeResult =
  | { ok: true; message: TelemetryMessage; readings: Reading[] }
  | { ok: false; code: TelemetryRefusal; reason: string; gatewayId?: string; seq?: number };

export interface DecodeOptions extends ValidationOptions {
  /** The thing name the message was published under (from the topic): the only gateway it may speak for. */
  topicThingName: string;
}

/**
 * Decodes and validates one published message into readings. Never throws: every way a
 * message can be wrong comes back as a reason an operator can act on.
 */
export function decodeTelemetry(payload: Uint8Array, options: DecodeOptions): DecodeResult {
  if (payload.byteLength > MAX_MESSAGE_BYTES)
    return { ok: false, code: 'too-large', reason: `message is ${payload.byteLength} bytes; the limit is ${MAX_MESSAGE_BYTES}` };
  const json = parseUntrustedJson(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'), MAX_MESSAGE_DEPTH);
  if (!json.ok) return { ok: false, code: json.code === 'too-deep' ? 'too-deep' : 'invalid', reason: json.reason };
  const parsed = messageSchema.safeParse(json.value);
  const identity = identityOf(json.value);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 5).map((issue) => `${issue.path.join('.') || 'message'}: ${issue.message}`);
    return { ok: false, code: 'invalid', reason: `invalid message: ${issues.join('; ')}`, ...identity };
  }
  const message = parsed.data;
  if (message.gatewayId !== options.topicThingName) {
    return {
      ok: false,
      code: 'gateway-mismatch',
      reason: `gatewayId "${message.gatewayId}" does not match the thing name ${preview(options.topicThingName)} of the topic it was published to`,
      ...identity,
    };
  }

  const originId = `${message.gatewayId}/${message.seq}`;
  const candidates: unknown[] = [];
  for (const entry of message.readings) {
    const { start, end, at, ...rest } = entry;
    const common = { ...rest, revision: 0, source: 'iot', originId };
    candidates.push(
      at !== undefined ? { ...common, kind: 'register', at, ...(start || end ? { start, end } : {}) } : { ...common, kind: 'interval', start, end },
    );
  }
  for (const [blockIndex, block] of message.blocks.entries()) {
    if (block.quality && block.quality.length !== block.values.length) {
      return {
        ok: false,
        code: 'invalid',
        reason: `blocks.${blockIndex}.quality: has ${block.quality.length} entries for ${block.values.length} values`,
        ...identity,
      };
    }
    const first = Date.parse(block.start);
    const stepMs = block.intervalSeconds * 1000;
    // The end of one interval is the start of the next: one Date for both (readings are never mutated).
    let previousEnd: Date | undefined;
    block.values.forEach((value, i) => {
      if (value === null) {
        previousEnd = undefined;
        return; // a missing interval: nothing to store
      }
      const start = previousEnd ?? new Date(first + i * stepMs);
      const end = new Date(start.getTime() + stepMs);
      previousEnd = end;
      candidates.push(
        blockValue({
          kind: 'interval',
          meterId: block.meterId,
          channel: block.channel,
          start,
          end,
          value,
          unit: block.unit,
          quality: block.quality?.[i] ?? 'actual',
          revision: 0,
          source: 'iot',
          originId,
        }),
      );
    });
  }

  const readings: Reading[] = [];
  // Readings of one block share every field but the instants, the value and the quality; once the
  // schema accepted one of them (`vouched`), the others need only what can differ checked (see
  // surelyValid). Anything that check does not pass goes through the full validation, so the
  // refusals and their reasons are exactly validateReading's.
  let vouched: BlockValue | undefined;
  const timeline = timelineBounds(options);
  for (const [index, candidate] of candidates.entries()) {
    if (candidate instanceof BlockValue && vouched !== undefined && candidate.sameBlockAs(vouched) && candidate.surelyValid(timeline)) {
      readings.push(candidate.reading);
      continue;
    }
    const result = validateReading(candidate instanceof BlockValue ? candidate.reading : candidate, options);
    if (!result.ok) return { ok: false, code: 'invalid', reason: `reading ${index}: ${result.reasons.join('; ')}`, ...identity };
    readings.push(result.reading);
    if (candidate instanceof BlockValue) vouched = candidate;
  }
  // Stored whole or not at all: a message that carries one identity twice, or intervals that
  // overlap, cannot be (the store would keep one and report the other).
  const problems = unitOfWorkProblems(readings);
  if (problems.length > 0) return { ok: false, code: 'inconsistent', reason: `readings of one message overlap: ${problems.join('; ')}`, ...identity };
  return { ok: true, message, readings };
}

/** One value of a block as the reading it becomes, not yet validated. */
class BlockValue {
  constructor(readonly reading: IntervalReading) {}

  /** The fields every reading of a block shares, by identity of the same strings. */
  sameBlockAs(other: BlockValue): boolean {
    const a = this.reading;
    const b = other.reading;
    return a.meterId === b.meterId && a.channel === b.channel && a.unit === b.unit && a.originId === b.originId && a.revision === b.revision;
  }

  /**
   * What validateReading checks of the fields that differ within a block, true only when it would
   * surely accept them: whole-second instants inside the plausible range, an interval of
   * MIN..MAX_INTERVAL_SECONDS. The value passed the message schema's z.number() (finite) and
   * the quality its enum. `latest` is taken before validateReading's own now, so it is stricter.
   */
  surelyValid(bounds: { earliest: number; latest: number }): boolean {
    const start = this.reading.start.getTime();
    const end = this.reading.end.getTime();
    const seconds = (end - start) / 1000;
    return (
      start % 1000 === 0 &&
      end % 1000 === 0 &&
      start >= bounds.earliest &&
      end <= bounds.latest &&
      seconds >= MIN_INTERVAL_SECONDS &&
      seconds <= MAX_INTERVAL_SECONDS &&
      typeof this.reading.value === 'number' &&
      Number.isFinite(this.reading.value)
    );
  }
}

const blockValue = (reading: IntervalReading) => new BlockValue(reading);

function timelineBounds(options: ValidationOptions): { earliest: number; latest: number } {
  return { earliest: EARLIEST_PLAUSIBLE, latest: (options.now ?? new Date()).getTime() + (options.maxFutureSkewMs ?? 3_600_000) };
}

/** Best-effort gatewayId/seq of an invalid message, so rejections can still be attributed. */
function identityOf(json: unknown): { gatewayId?: string; seq?: number } {
  if (typeof json !== 'object' || json === null) return {};
  const { gatewayId, seq } = json as Record<string, unknown>;
  return {
    ...(typeof gatewayId === 'string' ? { gatewayId: gatewayId.slice(0, 128) } : {}),
    ...(typeof seq === 'number' ? { seq } : {}),
  };
}

/** The thing name inside a telemetry topic, with or without the Basic Ingest prefix. */
export function thingNameFromTopic(topic: string): string | undefined {
  const [first, thingName, last, ...more] = withoutBasicIngestPrefix(topic).split('/');
  return first === GATEWAYS_LEVEL && last === TELEMETRY_LEVEL && more.length === 0 && thingName ? thingName : undefined;
}
