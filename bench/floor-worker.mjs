// One source's run of the floor bench (bench/floor.bench.ts), in a Node 22 child started with
// exactly the function's environment, from a folder under the runtime root where only the AWS SDK
// resolves (as test/artifact/support/lambda-runner.mjs plays the runtime). Loads the shipped
// bundle, then alternates, event by event: the handler on the event, and the floor on the same
// event — JSON.parse of its payloads plus one plain UpdateItem per block carrying the block's
// values, through the same SDK (the runtime's) to the same null endpoint. CPU of each is summed
// over the measured rounds and written as JSON.
//
// Plain JavaScript on purpose: no loader (tsx) may sit between the runtime and the bundle.
// argv: <task dir> <handler, e.g. index.handler> <spec.json> <result.json>
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';

const [taskDir, handlerSpec, specFile, resultFile] = process.argv.slice(2);
/** @type {{ source: 'iot' | 'ready', events: unknown[], readingsPerEvent: number, rounds: number, warmup: number, table: string, check: string }} */
const spec = JSON.parse(readFileSync(specFile, 'utf8'));
const dot = handlerSpec.lastIndexOf('.');
const handler = (await import(pathToFileURL(join(taskDir, `${handlerSpec.slice(0, dot)}.mjs`)).href))[handlerSpec.slice(dot + 1)];
// The client as the wiring ships it (lambdas/core/wiring.ts, QUIET_SDK_LOGGER: a logger without info
// or error, so the SDK's logger middleware skips its walk of every request): the floor gets every
// setting the handler gets, so that a client setting is not counted as the handler's gain.
const ignore = () => undefined;
const client = new DynamoDBClient({ logger: { trace: ignore, debug: ignore, warn: ignore } });

/** Each block of an event as [key, values]: what the floor writes. */
function blocksOf(event) {
  if (spec.source === 'iot') {
    const blocks = [];
    for (const record of event.Records) {
      const envelope = JSON.parse(record.body);
      const message = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8'));
      for (const block of message.blocks ?? []) blocks.push([`${block.meterId}#${block.channel}`, block.start.slice(0, 10), block.values]);
      for (const reading of message.readings ?? [])
        blocks.push([`${reading.meterId}#${reading.channel}`, reading.start.slice(0, 10), [reading.value]]);
    }
    return blocks;
  }
  const delivery = JSON.parse(Buffer.from(event.body, 'base64').toString('utf8'));
  const blocks = [];
  for (const meter of delivery.meters) {
    for (const interval of meter.intervals ?? [])
      blocks.push([`${meter.meterId}#${interval.register}`, interval.start.slice(0, 10), interval.values]);
    for (const register of meter.registers ?? [])
      blocks.push([`${meter.meterId}#${register.register}`, register.readAt.slice(0, 10), [register.value]]);
  }
  return blocks;
}

/**
 * The floor's request for a block: its values as one list. Shape 'slots' (measured beside it when
 * spec.floorShape is 'slots', BENCH_FLOOR_SHAPE): the block as the store lays it out today
 * (interval-block.ts: one attribute per slot holding [value, revision, origin hash], no condition),
 * what the item encoding alone costs through the SDK, so the gap splits into the encoding's share
 * and the rest of the handler's.
 */
function floorRequest([pk, sk, values], shape) {
  const request = { TableName: spec.table, Key: { pk: { S: pk }, sk: { S: sk } } };
  if (shape !== 'slots') {
    return { ...request, UpdateExpression: 'SET v = :v', ExpressionAttributeValues: { ':v': { L: values.map((value) => ({ N: String(value) })) } } };
  }
  const sets = [];
  const attributeValues = {};
  values.forEach((value, i) => {
    if (value === null) return;
    sets.push(`s${i * 900} = :s${i}`);
    attributeValues[`:s${i}`] = { L: [{ N: String(value) }, { N: '0' }, { S: 'AbCdEf' }] };
  });
  return { ...request, UpdateExpression: `SET ${sets.join(', ')}`, ExpressionAttributeValues: attributeValues };
}

async function floor(event, shape = 'values') {
  const blocks = blocksOf(event);
  const write = (block) => client.send(new UpdateItemCommand(floorRequest(block, shape)));
  for (let i = 0; i < blocks.length; i += 16) await Promise.all(blocks.slice(i, i + 16).map(write));
}

let invocation = 0;
async function invoke(event) {
  invocation += 1;
  const context = {
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    awsRequestId: `bench-${invocation}`,
    getRemainingTimeInMillis: () => 900_000,
  };
  const result = await handler(event, context);
  // A refused or retried event would measure the refusal, not the ingest.
  if (spec.check === 'iot' && result.batchItemFailures.length > 0) throw new Error(`handler failed ${result.batchItemFailures.length} records`);
  if (spec.check === 'ready' && result.statusCode !== 200) throw new Error(`handler answered ${result.statusCode}: ${result.body}`);
}

const cpu = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
for (let i = 0; i < spec.warmup; i++) {
  const event = spec.events[i % spec.events.length];
  await floor(event);
  await invoke(event);
}
let handlerMicros = 0;
let floorMicros = 0;
let slotsFloorMicros = 0;
let events = 0;
// A profile of one side alone (spec.only) says where that side's time goes; the figures then lack the other.
for (let round = 0; round < spec.rounds; round++) {
  for (const event of spec.events) {
    let t = cpu();
    if (spec.only !== 'handler') await floor(event);
    floorMicros += cpu() - t;
    if (spec.floorShape === 'slots') {
      t = cpu();
      await floor(event, 'slots');
      slotsFloorMicros += cpu() - t;
    }
    t = cpu();
    if (spec.only !== 'floor') await invoke(event);
    handlerMicros += cpu() - t;
    events += 1;
  }
}
writeFileSync(resultFile, JSON.stringify({ handlerMicros, floorMicros, slotsFloorMicros, events, readings: events * spec.readingsPerEvent }));
process.exit(0);
