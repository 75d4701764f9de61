/**
 * Turns spooled readings into telemetry contract v1 messages (shared/telemetry.ts) made of
 * interval blocks: one block per run of consecutive intervals of a meter channel, so a backlog of
 * 96 intervals per meter is one block per meter rather than 96 readings (docs/iot.md:
 * 0.031 write units per reading instead of 2.7). Messages stay under the configured byte size
 * and the contract's 1,000 blocks and 1,440 values per block.
 */
import { MAX_BLOCKS_PER_MESSAGE, MAX_VALUES_PER_BLOCK } from '../../shared/telemetry.ts';
import type { SpooledReading } from './spool.ts';

export interface TelemetryBlock {
  meterId: string;
  channel: string;
  start: string;
  intervalSeconds: number;
  unit: SpooledReading['unit'];
  values: number[];
  quality?: SpooledReading['quality'][];
}

export interface BuiltMessage {
  seq: number;
  body: string;
  /** Readings (values) it carries. */
  readings: number;
  blocks: number;
}

interface Run {
  meterId: string;
  channel: string;
  unit: SpooledReading['unit'];
  intervalSeconds: number;
  start: number;
  values: number[];
  qualities: SpooledReading['quality'][];
}

/**
 * Groups readings into runs of consecutive intervals per (meter, channel, interval length, unit).
 * Runs keep the order in which their meter channels first appear; within one, oldest first.
 */
export function toBlocks(readings: readonly SpooledReading[]): TelemetryBlock[] {
  const groups = new Map<string, SpooledReading[]>();
  for (const reading of readings) {
    const key = `${reading.meterId}\u0000${reading.channel}\u0000${reading.intervalSeconds}\u0000${reading.unit}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = []));
    group.push(reading);
  }
  const blocks: TelemetryBlock[] = [];
  for (const group of groups.values()) {
    group.sort((a, b) => a.start - b.start);
    let run: Run | undefined;
    for (const reading of group) {
      const continues = run && reading.start === run.start + run.values.length * run.intervalSeconds && run.values.length < MAX_VALUES_PER_BLOCK;
      if (!continues) {
        if (run) blocks.push(toBlock(run));
        run = {
          meterId: reading.meterId,
          channel: reading.channel,
          unit: reading.unit,
          intervalSeconds: reading.intervalSeconds,
          start: reading.start,
          values: [],
          qualities: [],
        };
      }
      run!.values.push(reading.value);
      run!.qualities.push(reading.quality);
    }
    if (run) blocks.push(toBlock(run));
  }
  return blocks;
}

function toBlock(run: Run): TelemetryBlock {
  const block: TelemetryBlock = {
    meterId: run.meterId,
    channel: run.channel,
    start: new Date(run.start * 1000).toISOString().replace('.000Z', 'Z'),
    intervalSeconds: run.intervalSeconds,
    unit: run.unit,
    values: run.values,
  };
  // `quality` defaults to actual; spelled out only when a block has an estimate.
  if (run.qualities.some((q) => q !== 'actual')) block.quality = run.qualities;
  return block;
}

/** Splits a block in two halves (by values) until each half serializes within `budget` bytes. */
function fitBlock(block: TelemetryBlock, budget: number): TelemetryBlock[] {
  if (Buffer.byteLength(JSON.stringify(block)) <= budget || block.values.length === 1) return [block];
  const half = Math.ceil(block.values.length / 2);
  const secondStart = new Date(Date.parse(block.start) + half * block.intervalSeconds * 1000).toISOString().replace('.000Z', 'Z');
  const first: TelemetryBlock = {
    ...block,
    values: block.values.slice(0, half),
    ...(block.quality ? { quality: block.quality.slice(0, half) } : {}),
  };
  const second: TelemetryBlock = {
    ...block,
    start: secondStart,
    values: block.values.slice(half),
    ...(block.quality ? { quality: block.quality.slice(half) } : {}),
  };
  return [...fitBlock(first, budget), ...fitBlock(second, budget)];
}

export interface BuildOptions {
  gatewayId: string;
  maxMessageBytes: number;
  /** ISO-8601 send time written into every message. */
  sentAt: string;
  /** Called once per message, in order, for its seq. */
  allocateSeq: () => number;
}

/** Packs readings into as few messages as the size and count limits allow. */
export function buildMessages(readings: readonly SpooledReading[], options: BuildOptions): BuiltMessage[] {
  const { gatewayId, maxMessageBytes, sentAt } = options;
  // Envelope bytes with the longest possible seq, plus the two brackets of `blocks`.
  const envelope = Buffer.byteLength(JSON.stringify({ v: 1, gatewayId, seq: Number.MAX_SAFE_INTEGER, sentAt, blocks: [] }));
  const budget = maxMessageBytes - envelope;
  if (budget < 256) throw new Error(`maxMessageBytes ${maxMessageBytes} leaves no room for readings`);

  const messages: BuiltMessage[] = [];
  let current: string[] = [];
  let size = 0;
  let values = 0;
  const flush = () => {
    if (current.length === 0) return;
    const seq = options.allocateSeq();
    const head = JSON.stringify({ v: 1, gatewayId, seq, sentAt });
    messages.push({ seq, body: `${head.slice(0, -1)},"blocks":[${current.join(',')}]}`, readings: values, blocks: current.length });
    current = [];
    size = 0;
    values = 0;
  };
  for (const whole of toBlocks(readings)) {
    for (const block of fitBlock(whole, budget)) {
      const json = JSON.stringify(block);
      const bytes = Buffer.byteLength(json) + 1;
      if (current.length > 0 && (size + bytes > budget || current.length >= MAX_BLOCKS_PER_MESSAGE)) flush();
      current.push(json);
      size += bytes;
      values += block.values.length;
    }
  }
  flush();
  return messages;
}
