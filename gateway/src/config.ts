/**
 * The gateway's one configuration file (`gateway.yaml`, see gateway/gateway.example.yaml),
 * validated strictly: every problem comes back with the path of the key that is wrong, e.g.
 * `meters[2].registers[0].type: expected one of uint16|int16|uint32|int32|float32`.
 *
 * Limits that AWS IoT Core enforces per connection (docs/design.md §3: 100 publishes/s, 512 KiB/s,
 * 128 KB per message, 100 unacknowledged QoS 1 publishes) are upper bounds here, so a gateway
 * cannot be configured into being throttled or disconnected.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { QUALITIES, UNITS } from '../../shared/reading.ts';
import { MAX_MESSAGE_BYTES, telemetryTopic as basicIngestTopic, THING_NAME_PATTERN, THING_NAME_RULE } from '../../shared/telemetry.ts';

/** AWS IoT Core per-connection limits (docs/design.md §3). */
export const IOT_LIMITS = {
  publishesPerSecond: 100,
  bytesPerSecond: 512 * 1024,
  messageBytes: MAX_MESSAGE_BYTES,
  inFlightQos1: 100,
} as const;

const METER_ID = /^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$/;
const CHANNEL = /^[a-z0-9][a-z0-9._\-]{0,63}$/;

/** "512MiB", "4 MiB", "100kB" or a plain number of bytes. */
const byteSize = z.union([z.number(), z.string()], { error: 'must be a size: a number of bytes or e.g. 512MiB' }).transform((input, ctx) => {
  const factor: Record<string, number> = { B: 1, kB: 1e3, KB: 1e3, KiB: 1024, MB: 1e6, MiB: 1024 ** 2, GB: 1e9, GiB: 1024 ** 3 };
  const match = typeof input === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|KiB|MB|MiB|GB|GiB)?\s*$/.exec(input) : null;
  const bytes = typeof input === 'number' ? input : match ? Math.floor(Number(match[1]) * factor[match[2] ?? 'B']!) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(input)} is not a size (e.g. 512MiB, 64 kB, 1048576)` });
    return z.NEVER;
  }
  return bytes;
});

export const REGISTER_TYPES = ['uint16', 'int16', 'uint32', 'int32', 'float32'] as const;
export type RegisterType = (typeof REGISTER_TYPES)[number];

const registerSchema = z.strictObject({
  /** Channel the values are stored under, e.g. energy.active.import. */
  channel: z.string().regex(CHANNEL, 'must be 1-64 lower-case letters, digits or ._- (e.g. energy.active.import)'),
  /** Zero-based register address as sent on the wire (not the 4xxxx "register number"). */
  address: z.number().int().min(0).max(65_535),
  type: z.enum(REGISTER_TYPES, { error: `expected one of ${REGISTER_TYPES.join('|')}` }),
  /** 32-bit values: `big` = high word first (Modbus convention), `little` = low word first. */
  wordOrder: z.enum(['big', 'little']).default('big'),
  /** Holding registers (function 3) or input registers (function 4). */
  table: z.enum(['holding', 'input']).default('holding'),
  /** Multiplies the raw register value into `unit`, e.g. 0.001 for a Wh register reported in kWh. */
  scale: z.number().positive().finite().default(1),
  unit: z.enum(UNITS, { error: (issue) => `unknown unit ${JSON.stringify(issue.input)}; known: ${UNITS.join(', ')}` }),
  /**
   * `delta`: the register is a cumulative index (energy, volume); each interval's value is the
   * difference between the reads at its two ends. `interval`: the register already holds the
   * value of the interval that just ended (e.g. a demand register), stored as read.
   */
  mode: z.enum(['delta', 'interval']).default('delta'),
  quality: z.enum(QUALITIES).default('actual'),
});

const meterSchema = z.strictObject({
  id: z.string().regex(METER_ID, 'must be 1-128 letters, digits or ._:- and start with a letter or digit'),
  /** Modbus TCP: the meter's (or TCP gateway's) address. Exactly one of `host` and `bus`. */
  host: z.string().min(1).optional(),
  port: z.number().int().min(1).max(65_535).default(502),
  /** Modbus RTU: the `id` of an entry in `buses` (RS-485 line) the meter is wired to. */
  bus: z.string().min(1).optional(),
  /** Modbus unit (slave) id; on an RTU bus 1-247 and unique per bus (0 is broadcast). */
  unitId: z.number().int().min(0).max(255).default(1),
  registers: z.array(registerSchema).min(1, 'a meter needs at least one register'),
});

export const PARITIES = ['none', 'even', 'odd'] as const;

/** An RS-485 line (Modbus RTU): one serial device shared by the meters that name it, polled one at a time. */
const busSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits or ._- (e.g. rs485-1)'),
  /** The serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/usb-FTDI_...-if00-port0 (stable across reboots). */
  device: z.string().regex(/^\/\S+$/, 'must be an absolute device path (e.g. /dev/ttyUSB0)'),
  baudRate: z
    .union(
      [1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200].map((rate) => z.literal(rate)),
      { error: 'expected one of 1200|2400|4800|9600|19200|38400|57600|115200' },
    )
    .default(9600),
  dataBits: z.union([z.literal(7), z.literal(8)]).default(8),
  /** Modbus RTU's default is even parity with 1 stop bit; `none` is usually paired with 2 stop bits. */
  parity: z.enum(PARITIES, { error: `expected one of ${PARITIES.join('|')}` }).default('even'),
  stopBits: z.union([z.literal(1), z.literal(2)]).default(1),
  /** Silence before each request (Modbus t3.5). @default 3.5 character times, at least 1.75 ms (the spec's value above 19200 baud) */
  interFrameMs: z.number().min(0).max(1000).optional(),
  /** Per request on this bus. @default polling.timeoutMs */
  timeoutMs: z.number().int().min(20).max(60_000).optional(),
});

const configSchema = z
  .strictObject({
    thingName: z.string().regex(THING_NAME_PATTERN, THING_NAME_RULE),
    iot: z.strictObject({
      /** ATS data endpoint, e.g. a1b2c3-ats.iot.us-east-1.amazonaws.com. */
      endpoint: z.string().min(1),
      /** 8883 (MQTT over TLS), or 443 with ALPN `x-amzn-mqtt-ca` where 8883 is blocked. */
      port: z.number().int().min(1).max(65_535).default(8883),
      /** Topic rule name: publishes go to its Basic Ingest topic (shared/telemetry.ts telemetryTopic). */
      ruleName: z.string().regex(/^[a-zA-Z0-9_]+$/, 'must be a topic rule name ([a-zA-Z0-9_])'),
      certFile: z.string().min(1),
      keyFile: z.string().min(1),
      caFile: z.string().min(1),
      /** 5 for IoT Core; 4 (3.1.1) for brokers that speak only that, such as the local aedes stand-in. */
      protocolVersion: z.union([z.literal(4), z.literal(5)]).default(5),
      keepaliveSeconds: z.number().int().min(30).max(1200).default(60),
      connectTimeoutSeconds: z.number().positive().max(120).default(15),
    }),
    polling: z
      .strictObject({
        /** Interval length; polls happen on its boundaries (:00, :15, ... for 900). */
        intervalSeconds: z.number().int().min(60).max(86_400).default(900),
        /** Per Modbus request. */
        timeoutMs: z.number().int().min(50).max(60_000).default(2000),
        /** Meters read at the same time. */
        concurrency: z.number().int().min(1).max(256).default(16),
        /**
         * A read that completes later than this after its boundary no longer measures the interval
         * exactly: the intervals it ends and starts are stored with quality `estimated`.
         */
        maxReadDelaySeconds: z.number().min(1).max(86_400).default(60),
      })
      .default({ intervalSeconds: 900, timeoutMs: 2000, concurrency: 16, maxReadDelaySeconds: 60 }),
    meters: z.array(meterSchema).min(1, 'configure at least one meter'),
    buses: z.array(busSchema).default([]),
    spool: z.strictObject({
      /** Where segments, the outbox and the cursor live (systemd: StateDirectory). */
      directory: z.string().min(1),
      maxBytes: byteSize.default(512 * 1024 ** 2),
      segmentBytes: byteSize.default(4 * 1024 ** 2),
      /** `drop-oldest`: delete the oldest segment to make room; `stop-accepting`: keep old data, lose new readings. */
      whenFull: z.enum(['drop-oldest', 'stop-accepting']).default('drop-oldest'),
      warnAtPercent: z.number().min(1).max(100).default(80),
    }),
    publish: z
      .strictObject({
        maxPublishesPerSecond: z.number().positive().max(IOT_LIMITS.publishesPerSecond).default(90),
        maxBytesPerSecond: z
          .number()
          .int()
          .positive()
          .max(IOT_LIMITS.bytesPerSecond)
          .default(460 * 1024),
        maxInFlight: z.number().int().min(1).max(IOT_LIMITS.inFlightQos1).default(50),
        /**
         * The two budgets above hold over every window of this many seconds. Longer than 1 s is a
         * margin: network and broker delays can bunch publishes together on arrival.
         */
        rateWindowSeconds: z.number().min(1).max(10).default(1.25),
        maxMessageBytes: z
          .number()
          .int()
          .min(4096)
          .max(IOT_LIMITS.messageBytes)
          .default(120 * 1024),
        /** Publish once the oldest unpublished reading ended this long ago (batching = fewer, cheaper writes). */
        holdSeconds: z.number().min(0).max(86_400).default(3600),
        /** Readings regrouped per meter at once while draining a backlog (longer blocks, cheaper writes). */
        drainWindowReadings: z.number().int().min(1).max(1_000_000).default(100_000),
        /** Random wait before draining after a (re)connect, so a fleet does not burst at once. */
        drainStartDelayMaxSeconds: z.number().min(0).max(3600).default(30),
      })
      .default({
        maxPublishesPerSecond: 90,
        maxBytesPerSecond: 460 * 1024,
        maxInFlight: 50,
        rateWindowSeconds: 1.25,
        maxMessageBytes: 120 * 1024,
        holdSeconds: 3600,
        drainWindowReadings: 100_000,
        drainStartDelayMaxSeconds: 30,
      }),
    backoff: z
      .strictObject({
        initialSeconds: z.number().positive().max(3600).default(1),
        maxSeconds: z.number().positive().max(86_400).default(300),
      })
      .default({ initialSeconds: 1, maxSeconds: 300 }),
    /**
     * Demos and tests only: run the agent's clock faster than real time from a fixed origin
     * (virtual = virtualStart + (real - realStart) × speedup), so that a day of 15-minute
     * intervals passes in seconds. Real gateways leave this out.
     */
    demoClock: z
      .strictObject({
        virtualStart: z.iso.datetime({ offset: true }),
        realStart: z.iso.datetime({ offset: true }),
        speedup: z.number().min(1).max(1_000_000),
      })
      .optional(),
    /** Seconds between status.json writes. */
    statusEverySeconds: z.number().min(0.1).max(3600).default(10),
    /**
     * Certificate rotation over MQTT (CreateCertificateFromCsr API; docs/gateway.md): a new key and
     * certificate every `intervalDays`, kept in `directory` (default `<spool.directory>/credentials`,
     * writable under the unit's StateDirectory) and swapped in with a reconnect.
     */
    rotation: z
      .strictObject({
        enabled: z.boolean().default(true),
        intervalDays: z.number().min(1).max(3650).default(90),
        directory: z.string().min(1).optional(),
        /** How often the certificate's age (and a forced rotation, `meterbridge-gateway rotate`) is checked. */
        checkEverySeconds: z.number().min(0.1).max(86_400).default(3600),
        /** Wait for the accepted/rejected answer. */
        responseTimeoutSeconds: z.number().min(1).max(600).default(30),
        /** Time the cloud gets to activate and attach the new certificate before the gateway switches to it. */
        activationWaitSeconds: z.number().min(0).max(3600).default(10),
        /** Failed connects with the new certificate before going back to the old one (and retrying later). */
        maxConnectFailures: z.number().int().min(1).max(100).default(3),
      })
      .default({
        enabled: true,
        intervalDays: 90,
        checkEverySeconds: 3600,
        responseTimeoutSeconds: 30,
        activationWaitSeconds: 10,
        maxConnectFailures: 3,
      }),
    /** Status reports to the cloud (fleet rule, `status` topic): spool, read errors, certificate, clock, version. */
    health: z.strictObject({ reportEverySeconds: z.number().min(0.1).max(86_400).default(300) }).default({ reportEverySeconds: 300 }),
    /** System clock synchronization (timedatectl NTPSynchronized): checked before polling and at most this often while running. */
    clock: z.strictObject({ checkEverySeconds: z.number().min(1).max(86_400).default(60) }).default({ checkEverySeconds: 60 }),
  })
  .superRefine((config, ctx) => {
    const ids = new Map<string, number>();
    config.meters.forEach((meter, index) => {
      const first = ids.get(meter.id);
      if (first !== undefined)
        ctx.addIssue({ code: 'custom', path: ['meters', index, 'id'], message: `"${meter.id}" is already used by meters[${first}]` });
      else ids.set(meter.id, index);
      if ((meter.host === undefined) === (meter.bus === undefined)) {
        ctx.addIssue({ code: 'custom', path: ['meters', index], message: 'needs exactly one of host (Modbus TCP) and bus (Modbus RTU)' });
      }
      if (meter.bus !== undefined) {
        const bus = config.buses.find((b) => b.id === meter.bus);
        if (!bus)
          ctx.addIssue({
            code: 'custom',
            path: ['meters', index, 'bus'],
            message: `no bus "${meter.bus}" in buses (${config.buses.map((b) => b.id).join(', ') || 'none configured'})`,
          });
        if (meter.unitId < 1 || meter.unitId > 247)
          ctx.addIssue({ code: 'custom', path: ['meters', index, 'unitId'], message: 'must be 1-247 on an RTU bus (0 is broadcast)' });
        const twin = config.meters.findIndex((other) => other.bus === meter.bus && other.unitId === meter.unitId);
        if (twin < index)
          ctx.addIssue({
            code: 'custom',
            path: ['meters', index, 'unitId'],
            message: `${meter.unitId} is already used on bus "${meter.bus}" by meters[${twin}]`,
          });
      }
      const channels = new Set<string>();
      meter.registers.forEach((register, r) => {
        if (channels.has(register.channel))
          ctx.addIssue({
            code: 'custom',
            path: ['meters', index, 'registers', r, 'channel'],
            message: `"${register.channel}" appears twice on this meter`,
          });
        channels.add(register.channel);
      });
    });
    const busIds = new Map<string, number>();
    const devices = new Map<string, number>();
    config.buses.forEach((bus, index) => {
      const first = busIds.get(bus.id);
      if (first !== undefined)
        ctx.addIssue({ code: 'custom', path: ['buses', index, 'id'], message: `"${bus.id}" is already used by buses[${first}]` });
      else busIds.set(bus.id, index);
      const sameDevice = devices.get(bus.device);
      if (sameDevice !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['buses', index, 'device'],
          message: `${bus.device} is already buses[${sameDevice}]: one bus per serial device`,
        });
      else devices.set(bus.device, index);
    });
    if (config.spool.segmentBytes * 4 > config.spool.maxBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['spool', 'segmentBytes'],
        message: 'must be at most a quarter of spool.maxBytes (the cap is enforced by whole segments)',
      });
    }
    if (config.backoff.maxSeconds < config.backoff.initialSeconds) {
      ctx.addIssue({ code: 'custom', path: ['backoff', 'maxSeconds'], message: 'must be at least backoff.initialSeconds' });
    }
    if (config.publish.maxMessageBytes > config.publish.maxBytesPerSecond) {
      ctx.addIssue({ code: 'custom', path: ['publish', 'maxMessageBytes'], message: 'must not exceed publish.maxBytesPerSecond' });
    }
  });

export type GatewayConfig = z.output<typeof configSchema>;
export type GatewayConfigInput = z.input<typeof configSchema>;
export type MeterConfig = GatewayConfig['meters'][number];
export type RegisterConfig = MeterConfig['registers'][number];
export type BusConfig = GatewayConfig['buses'][number];

export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    source: string,
  ) {
    super(`invalid gateway configuration (${source}):\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** `meters[2].registers[0].type` for a zod path. */
function keyPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const part of path) text += typeof part === 'number' ? `[${part}]` : `${text ? '.' : ''}${String(part)}`;
  return text || '(top level)';
}

/** Validates an already-parsed object. Relative file paths are taken relative to `baseDir`. */
export function parseConfig(input: unknown, options: { source?: string; baseDir?: string } = {}): GatewayConfig {
  const source = options.source ?? 'object';
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        // An unknown key is reported on its parent; name the key itself.
        const keys = issue.code === 'unrecognized_keys' ? ` (${issue.keys.join(', ')})` : '';
        const message = /received undefined$/.test(issue.message) ? 'is required' : issue.message;
        return `${keyPath(issue.path)}: ${message}${keys}`;
      }),
      source,
    );
  }
  const config = parsed.data;
  if (options.baseDir) {
    const base = options.baseDir;
    config.iot.certFile = resolve(base, config.iot.certFile);
    config.iot.keyFile = resolve(base, config.iot.keyFile);
    config.iot.caFile = resolve(base, config.iot.caFile);
    config.spool.directory = resolve(base, config.spool.directory);
    if (config.rotation.directory !== undefined) config.rotation.directory = resolve(base, config.rotation.directory);
  }
  return config;
}

/** Reads and validates a YAML configuration file. */
export function loadConfig(path: string): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError([`cannot read the file: ${(error as Error).message}`], path);
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new ConfigError([`not valid YAML: ${(error as Error).message}`], path);
  }
  return parseConfig(document, { source: path, baseDir: dirname(resolve(path)) });
}

/** Fails at start, naming the key, when a certificate or key file cannot be read (rather than retrying forever). */
export function assertTlsFilesReadable(config: GatewayConfig): void {
  const problems: string[] = [];
  for (const key of ['certFile', 'keyFile', 'caFile'] as const) {
    try {
      accessSync(config.iot[key], constants.R_OK);
    } catch (error) {
      problems.push(`iot.${key}: cannot read ${config.iot[key]} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems, 'TLS files');
}

/** The Basic Ingest topic this gateway publishes to. */
export function telemetryTopic(config: Pick<GatewayConfig, 'thingName' | 'iot'>): string {
  return basicIngestTopic(config.iot.ruleName, config.thingName);
}

/** Where rotated credentials live: `rotation.directory`, or `<spool.directory>/credentials`. */
export function credentialsDirectory(config: Pick<GatewayConfig, 'rotation' | 'spool'>): string {
  return config.rotation.directory ?? resolve(config.spool.directory, 'credentials');
}
