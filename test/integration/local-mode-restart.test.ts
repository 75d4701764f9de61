/**
 * `npm start` (meterbridge local) as a user runs it, as its own process: after an unclean end the
 * next run starts clean, a failed start exits non-zero with nothing left running, and a reading
 * added from outside with the printed mosquitto_pub line is listed apart, the run still ok.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { LocalPortName } from '../../local/defaults.ts';
import { endProcesses, findMarkedProcesses } from '../../local/leftovers.ts';
import { freeLocalPorts } from '../support/local-ports.ts';

const run = promisify(execFile);
const repo = new URL('../..', import.meta.url).pathname;

interface Started {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function startLocalMode(stateDir: string, ports: Record<LocalPortName, number>, extra: string[]): Started {
  const portFlags = Object.entries(ports).flatMap(([name, port]) => ['--port', `${name}=${port}`]);
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/meterbridge.ts', 'local', '--state-dir', stateDir, ...portFlags, ...extra], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, context?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${context ? `:\n${context()}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const dirs: string[] = [];
const strays: string[] = [];
before(async () => {
  dirs.push(await mkdtemp(join(tmpdir(), 'mb-local-restart-')));
});
after(async () => {
  // Whatever a failing test left behind, by pid, from its own state folders only.
  for (const stateDir of strays) await endProcesses((await findMarkedProcesses(stateDir)).map((p) => p.pid));
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('local mode as a process', () => {
  it(
    'starts clean after a run SIGKILLed mid-start, and lists a reading added with the printed mosquitto_pub line apart (run ok)',
    { timeout: 600_000 },
    async () => {
      const stateDir = join(dirs[0]!, 'restart');
      strays.push(stateDir);
      const ports = await freeLocalPorts();

      // Run 1: killed with SIGKILL mid-start, as soon as it has started a process of its own (DynamoDB Local first).
      // The SMT source (GnuPG, proftpd) is left out to keep the test light; the platform's own leftovers
      // (DynamoDB Local, S3 data) and the gateway agents are what made a second run fail.
      const first = startLocalMode(stateDir, ports, ['--sources', 'iot,ready', '--gateways', '1', '--meters', '2', '--duration', '60']);
      await waitFor(
        'run 1 to start a process of its own',
        async () => {
          const marked = await findMarkedProcesses(stateDir);
          return marked.length > 0 ? marked : undefined;
        },
        240_000,
        () => first.stderr().slice(-3000),
      );
      first.child.kill('SIGKILL');
      await first.exited;
      assert.ok(!first.stdout().includes('Join from outside'), 'killed while still starting');
      const left = await findMarkedProcesses(stateDir);
      assert.ok(left.length > 0, 'run 1 left processes behind (DynamoDB Local, the gateway agent, ...): the case this test is about');

      // Run 2 on the same state folder and ports: cleans up, runs, and takes an outside reading.
      const hasMosquitto = await run('sh', ['-c', 'command -v mosquitto_pub']).then(
        () => true,
        () => false,
      );
      // --duration counts from the start of the run, start-up included (minutes on a loaded machine): long enough for the gateway to take readings.
      const second = startLocalMode(stateDir, ports, ['--sources', 'iot,ready', '--gateways', '1', '--meters', '2', '--duration', '150']);
      const hints = await waitFor(
        'run 2 to print its join hints',
        () => {
          const text = second.stdout();
          return text.includes('Join from outside') && text.includes('readings query --meter cli-meter') ? text.split('\n') : undefined;
        },
        300_000,
        () => `${second.stdout().slice(-2000)}\n${second.stderr().slice(-3000)}`,
      );
      assert.match(second.stderr(), /did not end cleanly; stopping what it left running/);
      if (hasMosquitto) {
        const start = hints.findIndex((line) => line.trim().startsWith('mosquitto_pub'));
        const publish = hints
          .slice(start, start + 4)
          .map((line) => line.trim().replace(/\\$/, ''))
          .join(' ');
        await run('bash', ['-c', publish], { cwd: repo, timeout: 30_000 });
      }
      const code = await second.exited;
      const output = second.stdout();
      assert.equal(code, 0, `run 2 succeeds:\n${output}\n${second.stderr().slice(-3000)}`);
      assert.match(output, /Every simulated reading was stored exactly once/);
      if (hasMosquitto) {
        assert.match(output, /ok {3}iot .* doubled 0; outside readings 1 /, output);
        assert.match(output, /outside: cli-meter energy\.active\.import \S+ = 1\.25 kWh/, output);
      }
      assert.deepEqual(await findMarkedProcesses(stateDir), [], 'nothing of either run is left running');
      for (const pid of left.map((p) => p.pid)) assert.throws(() => process.kill(pid, 0), `pid ${pid} of run 1 is gone`);
    },
  );

  it('exits non-zero on a failed start (a port taken) with nothing left running', { timeout: 480_000 }, async () => {
    const stateDir = join(dirs[0]!, 'failed-start');
    strays.push(stateDir);
    const ports = await freeLocalPorts();
    // The READY port is taken: the platform, the gateways and the SMT servers start, then READY fails.
    const blocker: Server = createServer();
    blocker.listen(ports.ready, '127.0.0.1');
    await once(blocker, 'listening');
    try {
      const started = startLocalMode(stateDir, ports, ['--sources', 'iot,ready', '--gateways', '1', '--meters', '1', '--duration', '30']);
      const code = await Promise.race([started.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 400_000))]);
      if (code === 'hung') started.child.kill('SIGKILL');
      assert.equal(code, 1, `exit code of a failed start:\n${started.stderr().slice(-3000)}`);
      assert.match(started.stderr(), /EADDRINUSE/);
      assert.deepEqual(await findMarkedProcesses(stateDir), [], 'nothing left running');
      // Its ports are free again: DynamoDB Local's and the broker's can be bound.
      for (const port of [ports.dynamodb, ports.mqtt, ports.ftps]) {
        const probe = createServer();
        probe.listen(port, '127.0.0.1');
        await once(probe, 'listening');
        await new Promise((resolve) => probe.close(resolve));
      }
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
