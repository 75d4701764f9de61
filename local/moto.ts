/**
 * Starts moto's server (`python3 -m moto.server`) on a free loopback port, for a test file or local
 * mode: the AWS services that have no official local emulator (CloudWatch, Secrets Manager, the IoT
 * control plane, SNS, S3 with IAM…) come from moto rather than from stubs written here.
 * MB_MOTO_ENDPOINT reuses a server that is already running; MB_PYTHON names the interpreter
 * (scripts/setup.sh installs moto into .tools/venv when the system Python lacks it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './dynamodb-local.ts';

export interface Moto {
  /** http://127.0.0.1:<port>: the endpoint every AWS client of every service points at. */
  endpoint: string;
  region: string;
  /** Static credentials moto accepts (it checks them only when IAM enforcement is on). */
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Forgets every resource in every service (POST /moto-api/reset), so tests never see each other's state. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export interface MotoOptions {
  /** Loopback port; a free one when not given (local mode passes its fixed one). */
  port?: number;
  /** Extra environment for the server, e.g. INITIAL_NO_AUTH_ACTION_COUNT to make moto enforce IAM. */
  env?: Record<string, string>;
  /** How long to wait for the server to answer; generous, the machine is shared. */
  startTimeoutMs?: number;
}

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The interpreter that has moto and cfn-lint: MB_PYTHON, then the set-up's venv under .tools/, then python3 on PATH. */
export function toolsPython(): string {
  if (process.env.MB_PYTHON) return process.env.MB_PYTHON;
  const venv = join(repoRoot, '.tools', 'venv', 'bin', 'python3');
  return existsSync(venv) ? venv : 'python3';
}

export const motoRegion = 'us-east-1';
export const motoCredentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };

export async function startMoto(options: MotoOptions = {}): Promise<Moto> {
  const given = process.env.MB_MOTO_ENDPOINT;
  if (given) return handle(given, undefined);
  let lastError: unknown;
  // The port is free when chosen but another process may take it before moto binds: try again then.
  for (let attempt = 0; attempt < (options.port ? 1 : 3); attempt += 1) {
    const port = options.port ?? (await freePort());
    try {
      return handle(`http://127.0.0.1:${port}`, await spawnMoto(port, options));
    } catch (error) {
      lastError = error;
      if (!/address already in use/i.test(String(error))) break;
    }
  }
  throw lastError;
}

/**
 * `python -m moto.server` with IoT certificate ids as IoT computes them (SHA-256 of the DER; moto's
 * default hashes the PEM text): moto's `iot.use_valid_cert` setting, which its HTTP config API does
 * not accept, so it is set before the server starts.
 */
const MOTO_SERVER = [
  'import sys',
  'from moto.core.config import default_user_config',
  "default_user_config['iot'] = {'use_valid_cert': True}",
  'from moto.server import main',
  'main(sys.argv[1:])',
].join('\n');

async function spawnMoto(port: number, options: MotoOptions): Promise<ChildProcess> {
  const child = spawn(toolsPython(), ['-c', MOTO_SERVER, '-H', '127.0.0.1', '-p', String(port)], {
    env: { ...process.env, AWS_DEFAULT_REGION: motoRegion, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let spawnError: Error | undefined;
  child.once('error', (error) => (spawnError = error));
  const endpoint = `http://127.0.0.1:${port}`;
  const timeout = options.startTimeoutMs ?? 60_000;
  const deadline = Date.now() + timeout;
  for (;;) {
    if (spawnError) throw new Error(`moto could not start (${toolsPython()}): ${spawnError.message}; run scripts/setup.sh`);
    if (child.exitCode !== null) throw new Error(`moto exited (${child.exitCode}): ${output}`);
    try {
      const response = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`moto did not answer within ${timeout / 1000} s: ${output}`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  // Keep draining the pipes, or a chatty server blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

function handle(endpoint: string, child: ChildProcess | undefined): Moto {
  return {
    endpoint,
    region: motoRegion,
    credentials: motoCredentials,
    async reset() {
      const response = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
      await response.arrayBuffer();
      if (!response.ok) throw new Error(`moto reset failed: HTTP ${response.status}`);
    },
    async stop() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
