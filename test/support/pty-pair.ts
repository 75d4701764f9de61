/**
 * A pseudo-terminal pair from Debian's `socat` (scripts/setup.sh installs it): two tty devices
 * wired back to back, standing in for an RS-485 line with the gateway on one end and meters on the other.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './gateway-harness.ts';

export interface PtyPair {
  /** The end the gateway opens (a symlink to /dev/pts/N). */
  gateway: string;
  /** The end the simulated meters answer on. */
  meters: string;
  close(): Promise<void>;
}

export async function startPtyPair(): Promise<PtyPair> {
  const dir = mkdtempSync(join(tmpdir(), 'meterbridge-pty-'));
  const gateway = join(dir, 'gateway');
  const meters = join(dir, 'meters');
  const socat = spawn('socat', [`pty,raw,echo=0,link=${gateway}`, `pty,raw,echo=0,link=${meters}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  socat.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => socat.once('exit', () => resolve()));
  socat.once('error', (error) => (stderr += String(error)));
  try {
    await waitFor(
      () => {
        if (socat.exitCode !== null || stderr.includes('ENOENT')) throw new Error(`socat failed (is it installed? scripts/setup.sh): ${stderr}`);
        return existsSync(gateway) && existsSync(meters);
      },
      10_000,
      'socat to create the pty pair',
    );
  } catch (error) {
    socat.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    gateway,
    meters,
    async close() {
      if (socat.exitCode === null) socat.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
