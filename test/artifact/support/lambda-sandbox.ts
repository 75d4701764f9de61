/**
 * Runs a synthesized Lambda bundle the way the nodejs22.x runtime does, on Node 22, in a child
 * process (test/artifact/support/lambda-runner.mjs):
 *
 * - the bundle folder is copied under a runtime root whose only node_modules holds the AWS SDK v3
 *   (@aws-sdk/*, @smithy/*: what the runtime provides; their own dependencies resolve from their
 *   real location), and no folder above the root has a node_modules, so an import of anything
 *   else fails as it would on Lambda;
 * - the environment is exactly the template's variables for the function plus the variables the
 *   Lambda runtime sets ({@link RUNTIME_PROVIDED_ENV}, the one list of them) — nothing inherited.
 *
 * {@link bundleProblems} is the checker's verdict on a run: what makes this stage fail.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const RUNNER = fileURLToPath(new URL('./lambda-runner.mjs', import.meta.url));

/** Package scopes the Lambda Node.js runtime ships (/var/runtime/node_modules): the AWS SDK v3. */
export const RUNTIME_PROVIDED_SCOPES = ['@aws-sdk', '@smithy'] as const;

/**
 * Every environment variable a function gets besides the template's: what the Lambda runtime sets
 * (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime),
 * and, for the test only, the endpoint overrides that point the SDK at the local stand-ins.
 */
export const RUNTIME_PROVIDED_ENV = [
  '_HANDLER',
  'AWS_REGION',
  'AWS_DEFAULT_REGION',
  'AWS_EXECUTION_ENV',
  'AWS_LAMBDA_FUNCTION_NAME',
  'AWS_LAMBDA_FUNCTION_MEMORY_SIZE',
  'AWS_LAMBDA_FUNCTION_VERSION',
  'AWS_LAMBDA_INITIALIZATION_TYPE',
  'AWS_LAMBDA_LOG_GROUP_NAME',
  'AWS_LAMBDA_LOG_STREAM_NAME',
  'AWS_LAMBDA_LOG_FORMAT',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'LAMBDA_TASK_ROOT',
  'LAMBDA_RUNTIME_DIR',
  'LANG',
  'PATH',
  'LD_LIBRARY_PATH',
  'TZ',
  // Test only: where the SDK finds the stand-ins (each behind a recording proxy).
  'AWS_ENDPOINT_URL_DYNAMODB',
  'AWS_ENDPOINT_URL_S3',
  'AWS_ENDPOINT_URL_SQS',
  'AWS_ENDPOINT_URL_EVENTBRIDGE',
  'AWS_ENDPOINT_URL_FIREHOSE',
  'AWS_ENDPOINT_URL_SECRETS_MANAGER',
  'AWS_ENDPOINT_URL_CLOUDWATCH',
  'AWS_ENDPOINT_URL_IOT',
] as const;
export type RuntimeVariable = (typeof RUNTIME_PROVIDED_ENV)[number];

/**
 * Unset variables a bundle may look at: the runtime's and libraries' optional settings (the SDK's
 * AWS_*, Powertools' POWERTOOLS_*, Node's NODE_*, X-Ray's _X_AMZN_*). Application settings must not
 * use these prefixes; any other unset name a bundle reads fails the stage.
 */
const PLATFORM_PREFIXES = ['AWS_', 'POWERTOOLS_', 'NODE_', '_X_AMZN_', 'LAMBDA_'];
/** Unset names outside those prefixes that libraries look at, each with who reads it. */
const LIBRARY_OPTIONAL_ENV: Readonly<Record<string, string>> = {
  HOME: 'the SDK (~/.aws/config lookup)',
  HOMEDRIVE: 'the SDK (home folder on Windows)',
  HOMEPATH: 'the SDK (home folder on Windows)',
  USERPROFILE: 'the SDK (home folder on Windows)',
  FORCE_COLOR: "Node's console (colour detection)",
  WATCH_REPORT_DEPENDENCIES: "Node's module loader (--watch)",
  LOG_LEVEL: 'Powertools Logger (legacy log level)',
  ENVIRONMENT: 'Powertools Logger (environment key)',
  READABLE_STREAM: "readable-stream, ssh2's dependency (opt-out switch)",
};

export interface FunctionIdentity {
  logicalId: string;
  handler: string;
  memoryMb: number;
  /** Template LoggingConfig.LogFormat (the runtime sets AWS_LAMBDA_LOG_FORMAT from it). */
  logFormat?: string;
  /** The caller token the recording proxies attribute calls by (see recorder.ts). */
  sessionToken: string;
}

/** The runtime's own variables for one function, with test credentials and stand-in endpoints. */
export function runtimeEnvironment(
  fn: FunctionIdentity,
  taskDir: string,
  endpoints: Partial<Record<RuntimeVariable, string>>,
  region = 'us-east-1',
): Record<string, string> {
  const name = `meterbridge-artifact-${fn.logicalId}`;
  const env: Record<string, string> = {
    _HANDLER: fn.handler,
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x',
    AWS_LAMBDA_FUNCTION_NAME: name,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.memoryMb),
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${name}`,
    AWS_LAMBDA_LOG_STREAM_NAME: '2026/11/30/[$LATEST]artifact',
    // s3rver accepts only this key pair; DynamoDB Local and moto accept any.
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_SESSION_TOKEN: fn.sessionToken,
    LAMBDA_TASK_ROOT: taskDir,
    LAMBDA_RUNTIME_DIR: '/var/runtime',
    LANG: 'en_US.UTF-8',
    PATH: '/usr/local/bin:/usr/bin/:/bin',
    LD_LIBRARY_PATH: '/lib64:/usr/lib64',
    TZ: ':UTC',
    ...(fn.logFormat === 'JSON' ? { AWS_LAMBDA_LOG_FORMAT: 'JSON' } : {}),
    ...endpoints,
  };
  for (const key of Object.keys(env)) {
    if (!(RUNTIME_PROVIDED_ENV as readonly string[]).includes(key)) throw new Error(`${key} is not in RUNTIME_PROVIDED_ENV`);
  }
  return env;
}

/** The Node 22 binary: this process's when it runs on 22 (npm test), else the one scripts/node22.sh installs. */
export function node22Binary(): string {
  if (process.versions.node.split('.')[0] === '22') return process.execPath;
  return join(execFileSync('bash', [join(REPO, 'scripts/node22.sh')], { encoding: 'utf8' }).trim(), 'node');
}

export interface RuntimeRoot {
  root: string;
  /** Copies a bundle folder into a fresh task folder under the root; returns its path. */
  install(bundleDir: string, name: string): Promise<string>;
  dispose(): Promise<void>;
}

/** A folder standing in for the runtime's file system: node_modules with the SDK, task folders beside it. */
export async function createRuntimeRoot(): Promise<RuntimeRoot> {
  const root = await mkdtemp(join(tmpdir(), 'mb-lambda-runtime-'));
  // Module resolution walks up from the bundle: nothing above the root may offer packages.
  for (let dir = dirname(root); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'node_modules')))
      throw new Error(`${join(dir, 'node_modules')} exists: bundles under ${root} could resolve packages the Lambda runtime lacks`);
    if (dir === parse(dir).root) break;
  }
  for (const scope of RUNTIME_PROVIDED_SCOPES) {
    await mkdir(join(root, 'node_modules', scope), { recursive: true });
    for (const name of await readdir(join(REPO, 'node_modules', scope))) {
      await symlink(join(REPO, 'node_modules', scope, name), join(root, 'node_modules', scope, name), 'dir');
    }
  }
  let count = 0;
  return {
    root,
    async install(bundleDir, name) {
      count += 1;
      const task = join(root, `${name}-${count}`);
      await cp(bundleDir, task, { recursive: true });
      return task;
    },
    dispose: () => rm(root, { recursive: true, force: true }),
  };
}

export interface Invocation {
  ok: boolean;
  value?: unknown;
  error?: string;
}

export interface BundleRun {
  loaded: boolean;
  loadError?: string;
  invocations: Invocation[];
  /** Environment variables read although not set, in the order of their names. */
  unsetEnvReads: string[];
  stdout: string;
  stderr: string;
  exitCode: number | null;
}

/** Loads the bundle in `taskDir` in a Node 22 child with `env` only, and invokes `handler` with each event. */
export async function runBundle(options: {
  taskDir: string;
  handler: string;
  env: Record<string, string>;
  events: unknown[];
  timeoutMs: number;
}): Promise<BundleRun> {
  const work = await mkdtemp(join(tmpdir(), 'mb-lambda-run-'));
  try {
    const eventsFile = join(work, 'events.json');
    const resultFile = join(work, 'result.json');
    await writeFile(eventsFile, JSON.stringify(options.events));
    const child = spawn(node22Binary(), [RUNNER, options.taskDir, options.handler, eventsFile, resultFile, String(options.timeoutMs)], {
      cwd: options.taskDir,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs * Math.max(1, options.events.length) + 60_000);
    const exitCode = await new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    clearTimeout(killer);
    let result: Omit<BundleRun, 'stdout' | 'stderr' | 'exitCode'>;
    try {
      result = JSON.parse(await readFile(resultFile, 'utf8')) as typeof result;
    } catch {
      result = {
        loaded: false,
        loadError: `the runner wrote no result (exit ${exitCode}): ${stderr.slice(-2000)}`,
        invocations: [],
        unsetEnvReads: [],
      };
    }
    return { ...result, stdout, stderr, exitCode };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The checker: everything about a run that fails the stage. A bundle that does not load (a missing
 * package, `__dirname` in ES module scope, a required variable unset), an invocation that threw,
 * an application variable read but not set by the template, or the SDK's Node version warning.
 */
export function bundleProblems(run: BundleRun): string[] {
  const problems: string[] = [];
  if (!run.loaded) problems.push(`does not load: ${firstLine(run.loadError)}`);
  for (const [index, invocation] of run.invocations.entries()) {
    if (!invocation.ok) problems.push(`invocation ${index + 1} threw: ${firstLine(invocation.error)}`);
  }
  for (const name of run.unsetEnvReads) {
    if (!PLATFORM_PREFIXES.some((prefix) => name.startsWith(prefix)) && LIBRARY_OPTIONAL_ENV[name] === undefined)
      problems.push(`reads environment variable ${name}, which the template does not set`);
  }
  const warning = run.stderr.search(NODE_VERSION_WARNING);
  if (warning >= 0) problems.push(`prints a Node version warning: ${firstLine(run.stderr.slice(warning))}`);
  return problems;
}

/** The SDK's (NodeVersionSupportWarning: "... will require node >=22") and Node's own deprecation warnings. */
const NODE_VERSION_WARNING = /NodeVersionSupportWarning|NodeDeprecationWarning|require node >=\d+/i;

function firstLine(text: string | undefined): string {
  return (text ?? '').split('\n').slice(0, 2).join(' | ');
}
