/**
 * Is the system clock synchronized? Readings are identified by their interval start from the
 * wall clock, so a gateway whose clock is not kept by NTP stores intervals that may be shifted.
 * The agent asks before polling and while running (every `clock.checkEverySeconds`); readings
 * taken while the answer is `unsynchronized` are stored as `estimated` and counted.
 *
 * Sources, in order: `timedatectl show -p NTPSynchronized --value` (systemd: yes/no, the kernel's
 * adjtimex STA_UNSYNC flag as timedated reads it), then /run/systemd/timesync/synchronized (written
 * by systemd-timesyncd once synchronized). Neither available: `unknown` (logged, not marked).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type ClockSyncState = 'synchronized' | 'unsynchronized' | 'unknown';
export type ClockSyncCheck = () => Promise<ClockSyncState>;

export const systemClockSync: ClockSyncCheck = async () => {
  try {
    const { stdout } = await run('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], { timeout: 5000 });
    const answer = stdout.trim();
    if (answer === 'yes') return 'synchronized';
    if (answer === 'no') return 'unsynchronized';
  } catch {
    // no timedatectl, or no D-Bus/timedated (containers): try the next source
  }
  if (existsSync('/run/systemd/timesync/synchronized')) return 'synchronized';
  return 'unknown';
};
