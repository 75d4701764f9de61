/**
 * The shipped-artifact checker fails what would fail on Lambda: deliberately broken bundles, built
 * the way MeterbridgeFunction builds (esbuild, ESM, node22, the SDK external), run through the same
 * sandbox and verdict (support/lambda-sandbox.ts) as the synthesized bundles in bundles.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { build } from 'esbuild';
import { DEFAULT_BUNDLING } from '../../lib/meterbridge-function.ts';
import { SMT_BUNDLING } from '../../lib/smt-ingestion.ts';
import { bundleProblems, createRuntimeRoot, runBundle, runtimeEnvironment, type BundleRun, type RuntimeRoot } from './support/lambda-sandbox.ts';

/** The banner before the SMT fetch fix: `require` only, no `__dirname`/`__filename`. */
const PRE_FIX_BANNER =
  "import { createRequire as __meterbridgeCreateRequire } from 'module'; const require = __meterbridgeCreateRequire(import.meta.url);";

let runtime: RuntimeRoot;
let work: string;
before(async () => {
  runtime = await createRuntimeRoot();
  work = await mkdtemp(join(tmpdir(), 'mb-checker-'));
});
after(async () => {
  await runtime?.dispose();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Bundles a fixture as the construct does (options from DEFAULT_BUNDLING) and runs it in the sandbox. */
async function check(
  fixture: string,
  options: { entry?: string; banner?: string; external?: string[]; env?: Record<string, string>; events?: unknown[] } = {},
): Promise<{ run: BundleRun; problems: string[] }> {
  const out = join(work, `${fixture}-${Math.random().toString(36).slice(2)}`);
  await build({
    entryPoints: [options.entry ?? fileURLToPath(new URL(`./fixtures/${fixture}.ts`, import.meta.url))],
    outfile: join(out, 'index.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: DEFAULT_BUNDLING.target,
    mainFields: ['module', 'main'],
    banner: { js: options.banner ?? DEFAULT_BUNDLING.banner! },
    external: [...(DEFAULT_BUNDLING.externalModules ?? []), ...(options.external ?? [])],
    logLevel: 'silent',
  });
  const task = await runtime.install(out, fixture);
  const env = {
    ...runtimeEnvironment({ logicalId: fixture, handler: 'index.handler', memoryMb: 256, sessionToken: 'fixture' }, task, {}),
    ...options.env,
  };
  const run = await runBundle({ taskDir: task, handler: 'index.handler', env, events: options.events ?? [{ n: 21 }], timeoutMs: 30_000 });
  return { run, problems: bundleProblems(run) };
}

describe('the shipped-artifact checker', () => {
  it("passes a sound bundle: it loads, imports the runtime's SDK, reads only its own settings and answers", async () => {
    const { run, problems } = await check('sound', { env: { ARCHIVE_BUCKET: 'b' } });
    assert.deepEqual(problems, [], run.stderr);
    assert.deepEqual(run.invocations, [{ ok: true, value: { bucket: 'b', region: 'us-east-1', doubled: 42, here: true } }]);
  });

  it('fails a bundle that touches __dirname at load without the banner defining it (the SMT fetch bug)', async () => {
    const { run, problems } = await check('touches-dirname', { banner: PRE_FIX_BANNER });
    assert.equal(run.loaded, false);
    assert.match(problems.join('\n'), /does not load: ReferenceError: __dirname is not defined in ES module scope/);
  });

  it('passes the same __dirname bundle built with the shipped banner', async () => {
    const { run, problems } = await check('touches-dirname');
    assert.deepEqual(problems, []);
    assert.equal(run.invocations[0]?.ok, true);
  });

  it('the SMT fetch handler does not evaluate ssh2 unless the stage uses SFTP: built with the pre-fix banner it still cold-starts for FTPS', async () => {
    // Before the transports were loaded lazily, ssh2 ran at module load and this bundle died with
    // "__dirname is not defined" whatever the protocol.
    const env = {
      SMT_PROTOCOL: 'ftps',
      SMT_HOST: '127.0.0.1',
      SMT_PORT: '21',
      SMT_TLS_SERVERNAME: '',
      SMT_TRANSPORT_SECRET: 'meterbridge/test/smt/transport',
      SMT_FOLDERS: 'intervaldata',
      SMT_AFTER_ARCHIVE: 'delete',
      SMT_FETCH_LOCK_SECONDS: '660',
      LEDGER_TABLE: 'ledger',
      ARCHIVE_BUCKET: 'archive',
      STAGE: 'test',
    };
    const entry = fileURLToPath(new URL('../../lambdas/smt-fetch.ts', import.meta.url));
    const ftps = await check('smt-fetch', { entry, banner: PRE_FIX_BANNER, external: SMT_BUNDLING.externalModules, env, events: [] });
    assert.deepEqual(ftps.problems, [], ftps.run.loadError);
    assert.equal(ftps.run.loaded, true);
  });

  it('fails a bundle that imports a package the Lambda runtime lacks, although the repository has it installed', async () => {
    const { run, problems } = await check('imports-missing-package', { external: ['yaml'] });
    assert.equal(run.loaded, false);
    assert.match(problems.join('\n'), /does not load: Error: Cannot find package 'yaml'/);
  });

  it('fails a bundle that reads an environment variable the template does not set, even with a default', async () => {
    const { run, problems } = await check('reads-unset-env');
    assert.equal(run.loaded, true);
    assert.equal(run.invocations[0]?.ok, true);
    assert.deepEqual(problems, ['reads environment variable ARCHIVE_PREFIX, which the template does not set']);
  });

  it('fails a bundle that requires an environment variable the template does not set', async () => {
    const { problems } = await check('requires-unset-env');
    assert.deepEqual(problems, [
      'does not load: Error: environment variable READINGS_TABLE is not set | Error: environment variable READINGS_TABLE is not set',
      'reads environment variable READINGS_TABLE, which the template does not set',
    ]);
  });

  it("fails a bundle whose start prints the SDK's Node version warning", async () => {
    const { run, problems } = await check('warns-node-version');
    assert.equal(run.invocations[0]?.ok, true);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^prints a Node version warning: .*NodeVersionSupportWarning/);
  });

  it('fails a handler that throws, naming the invocation', async () => {
    const { problems } = await check('sound', { env: { ARCHIVE_BUCKET: 'b' }, events: [{ n: 1 }, null] });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^invocation 2 threw: TypeError/);
  });
});
