/**
 * Processes local mode starts (DynamoDB Local, proftpd, the gateway agents) outlive it when it
 * ends uncleanly (SIGKILL, a crash): they keep their ports, and old gateways keep publishing into
 * the next run. So every process local mode starts carries a marker in its environment (inherited
 * from local mode's own, set for the run): the owner's pid, a run id and the state folder. The next
 * run on the same state folder finds the processes of earlier runs by that marker (Linux /proc;
 * elsewhere none are found) and ends them by pid; at its own end it ends whatever of its own is
 * still running, so nothing is left behind.
 */
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';

export const RUN_MARKER_VARIABLE = 'MB_LOCAL_RUN';

export interface MarkedProcess {
  pid: number;
  /** The local mode process that started it (directly or through another child). */
  ownerPid: number;
  runId: string;
  command: string;
}

export function runMarker(stateDir: string, runId: string, ownerPid = process.pid): string {
  return `${ownerPid}:${runId}:${stateDir}`;
}

/** Processes (other than this one) whose environment carries a local mode marker for `stateDir`. */
export async function findMarkedProcesses(stateDir: string): Promise<MarkedProcess[]> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return [];
  }
  const found: MarkedProcess[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const pid = Number(entry);
    let environ: string;
    try {
      environ = await readFile(`/proc/${pid}/environ`, 'utf8');
    } catch {
      continue; // gone, or another user's process
    }
    const variable = environ.split('\0').find((v) => v.startsWith(`${RUN_MARKER_VARIABLE}=`));
    const match = variable && /^(\d+):([^:]+):(.*)$/s.exec(variable.slice(RUN_MARKER_VARIABLE.length + 1));
    if (!match || match[3] !== stateDir || !isRunning(pid)) continue;
    const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').then(
      (text) => text.split('\0').join(' ').trim(),
      () => '',
    );
    found.push({ pid, ownerPid: Number(match[1]), runId: match[2]!, command });
  }
  return found;
}

/** Whether a process exists and is not a zombie (a zombie holds no ports and cannot be signalled away). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return readStat(pid)?.state !== 'Z';
}

/** The state letter in /proc/<pid>/stat (R, S, Z, ...); undefined without procfs. */
function readStat(pid: number): { state: string } | undefined {
  let text: string;
  try {
    // Synchronous on purpose: a tiny procfs read, used in loops that already wait between rounds.
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(')');
  return { state: text.slice(close + 2, close + 3) };
}

/** Ends processes by pid: SIGTERM, then SIGKILL for any still running after `graceMs`; resolves once all are gone. */
export async function endProcesses(pids: readonly number[], graceMs = 5000): Promise<void> {
  const signal = (pid: number, name: NodeJS.Signals) => {
    try {
      process.kill(pid, name);
    } catch {
      // already gone
    }
  };
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some(isRunning) && Date.now() < deadline) await delay(100);
  for (const pid of pids.filter(isRunning)) signal(pid, 'SIGKILL');
  const killDeadline = Date.now() + 5000;
  while (pids.some(isRunning) && Date.now() < killDeadline) await delay(50);
}
