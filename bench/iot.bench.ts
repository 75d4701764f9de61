/**
 * IoT ingest figures: CPU time per reading of the core path (decode + validate + block
 * encoding, with the store's DynamoDB calls left out), and DynamoDB write units per reading for
 * telemetry carrying one reading per meter per message versus a 96-interval block per meter.
 */
import { decodeTelemetry } from '../shared/telemetry.ts';
import { buildBlockUpdate, initialGuard, locate, roundsOfDistinctSlots } from '../lambdas/core/interval-block.ts';
import { ReadingStore } from '../lambdas/core/reading-store.ts';
import type { Reading } from '../shared/reading.ts';
import { startDynamoDbLocal } from '../test/support/dynamodb-local.ts';

export interface IotBenchResult {
  cpuMicrosPerReadingBlocks: number;
  cpuMicrosPerReadingFlat: number;
  writeUnitsPerReadingOnePerMessage: number;
  writeUnitsPerReadingBlockOf96: number;
  messageBytesBlockOf96: number;
}

const NOW = new Date('2026-11-23T12:00:00Z');
const DAY = Date.parse('2026-11-22T06:00:00Z'); // local midnight in Chicago (CST)

function blockMessage(meters: number, seq: number): Buffer {
  const blocks = Array.from({ length: meters }, (_, m) => ({
    meterId: `meter-${m}`,
    channel: 'energy.active.import',
    start: new Date(DAY).toISOString(),
    intervalSeconds: 900,
    unit: 'kWh',
    values: Array.from({ length: 96 }, (_, i) => Math.round(((i * 31 + m) % 97) * 13.7) / 1000),
  }));
  return Buffer.from(JSON.stringify({ v: 1, gatewayId: 'gw-bench', seq, sentAt: NOW.toISOString(), blocks }));
}

function flatMessage(meters: number, interval: number, seq: number): Buffer {
  const start = new Date(DAY + interval * 900_000);
  const readings = Array.from({ length: meters }, (_, m) => ({
    meterId: `meter-${m}`,
    channel: 'energy.active.import',
    start: start.toISOString(),
    end: new Date(start.getTime() + 900_000).toISOString(),
    value: Math.round(((interval * 31 + m) % 97) * 13.7) / 1000,
    unit: 'kWh',
    quality: 'actual',
  }));
  return Buffer.from(JSON.stringify({ v: 1, gatewayId: 'gw-bench', seq, sentAt: NOW.toISOString(), readings }));
}

/** The store's CPU work short of the network: locate, group, build the UpdateItem. */
function prepareWrites(readings: Reading[]): number {
  const blocks = new Map<string, Array<{ reading: Reading; slot: string; blockStart: number }>>();
  for (const reading of readings) {
    const { key, slot, blockStart } = locate(reading, 'America/Chicago');
    const id = `${key.pk}|${key.sk}`;
    blocks.set(id, [...(blocks.get(id) ?? []), { reading, slot, blockStart }]);
  }
  let expressions = 0;
  for (const writes of blocks.values()) {
    for (const round of roundsOfDistinctSlots(writes)) {
      expressions += buildBlockUpdate(round, initialGuard(round), { blockStart: writes[0]!.blockStart, now: 0 }).UpdateExpression.length;
    }
  }
  return expressions;
}

function cpuPerReading(messages: Buffer[]): number {
  let readings = 0;
  const before = process.cpuUsage();
  for (const payload of messages) {
    const decoded = decodeTelemetry(payload, { topicThingName: 'gw-bench', now: NOW });
    if (!decoded.ok) throw new Error(decoded.reason);
    prepareWrites(decoded.readings);
    readings += decoded.readings.length;
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / readings;
}

export async function runIotBench(): Promise<IotBenchResult> {
  const meters = 10;
  const blockMessages = Array.from({ length: 50 }, (_, i) => blockMessage(meters, i + 1));
  const flatMessages = Array.from({ length: 96 * 5 }, (_, i) => flatMessage(meters, i % 96, i + 1));
  cpuPerReading(blockMessages.slice(0, 5)); // warm up the JIT and the Intl formatters
  const cpuBlocks = cpuPerReading(blockMessages);
  const cpuFlat = cpuPerReading(flatMessages);

  const dynamo = await startDynamoDbLocal();
  try {
    const units = async (messages: Buffer[]) => {
      const tables = await dynamo.freshTables();
      const store = new ReadingStore({ client: dynamo.client, tableName: tables.readings, blockTimeZone: 'America/Chicago' });
      let writeUnits = 0;
      let readings = 0;
      for (const payload of messages) {
        const decoded = decodeTelemetry(payload, { topicThingName: 'gw-bench', now: NOW });
        if (!decoded.ok) throw new Error(decoded.reason);
        writeUnits += (await store.write(decoded.readings)).writeUnits;
        readings += decoded.readings.length;
      }
      return writeUnits / readings;
    };
    return {
      cpuMicrosPerReadingBlocks: cpuBlocks,
      cpuMicrosPerReadingFlat: cpuFlat,
      writeUnitsPerReadingOnePerMessage: await units(Array.from({ length: 96 }, (_, i) => flatMessage(meters, i, i + 1))),
      writeUnitsPerReadingBlockOf96: await units([blockMessage(meters, 1)]),
      messageBytesBlockOf96: blockMessage(1, 1).byteLength,
    };
  } finally {
    await dynamo.stop();
  }
}
