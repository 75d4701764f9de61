// Plays the Lambda Node.js runtime for one bundle, in a child process started with exactly the
// function's environment: imports the handler module the way the runtime does (ES module by file
// URL, from a folder where only node built-ins and the runtime's AWS SDK resolve), then invokes it
// with each event in turn (one warm container) and writes what happened as JSON.
//
// Also records every read of an environment variable that is not set, so a bundle relying on a
// setting the template does not give fails even when it falls back to a default.
//
// Plain JavaScript on purpose: no loader (tsx) may sit between the runtime and the bundle.
// argv: <task dir> <handler, e.g. index.handler> <events.json> <result.json> <timeout ms>
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [taskDir, handlerSpec, eventsFile, resultFile, timeoutText] = process.argv.slice(2);
const unsetReads = new Set();
const realEnv = process.env;
process.env = new Proxy(realEnv, {
  get(target, key) {
    if (typeof key === 'string' && !Object.prototype.hasOwnProperty.call(target, key)) unsetReads.add(key);
    return Reflect.get(target, key);
  },
  has(target, key) {
    if (typeof key === 'string' && !Object.prototype.hasOwnProperty.call(target, key)) unsetReads.add(key);
    return Reflect.has(target, key);
  },
});

const result = { loaded: false, loadError: undefined, invocations: [], unsetEnvReads: [] };
const finish = async () => {
  // Let what was scheduled run before the process ends, as it would in a live container: process
  // warnings (the SDK's Node version warning) are printed on a later tick.
  await new Promise((resolve) => setTimeout(resolve, 20));
  result.unsetEnvReads = [...unsetReads].sort();
  writeFileSync(resultFile, JSON.stringify(result));
  process.exit(0);
};
const describe = (error) => (error instanceof Error ? `${error.name}: ${error.message}\n${error.stack ?? ''}` : String(error));

const dot = handlerSpec.lastIndexOf('.');
const moduleName = handlerSpec.slice(0, dot);
const exportName = handlerSpec.slice(dot + 1);
// The runtime's order: .js, .mjs, .cjs.
const file = ['.js', '.mjs', '.cjs'].map((ext) => join(taskDir, moduleName + ext)).find((path) => existsSync(path));

let handler;
try {
  if (!file) throw new Error(`no ${moduleName}.js/.mjs/.cjs in ${taskDir}`);
  const module = await import(pathToFileURL(file).href);
  handler = module[exportName];
  if (typeof handler !== 'function') throw new Error(`${file} exports no function ${exportName}`);
  result.loaded = true;
} catch (error) {
  result.loadError = describe(error);
  await finish();
}

const events = JSON.parse(readFileSync(eventsFile, 'utf8'));
const timeoutMs = Number(timeoutText);
for (const event of events) {
  const deadline = Date.now() + timeoutMs;
  const context = {
    functionName: realEnv.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: realEnv.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: `arn:aws:lambda:${realEnv.AWS_REGION}:123456789012:function:${realEnv.AWS_LAMBDA_FUNCTION_NAME}`,
    memoryLimitInMB: realEnv.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: randomUUID(),
    logGroupName: realEnv.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: realEnv.AWS_LAMBDA_LOG_STREAM_NAME,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  try {
    const value = await handler(event, context);
    result.invocations.push({ ok: true, value: value === undefined ? null : value });
  } catch (error) {
    result.invocations.push({ ok: false, error: describe(error) });
  }
}
await finish();
