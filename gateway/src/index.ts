/**
 * The gateway agent's public surface, for the local mode (`npm start`) and tests.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export {
  startGatewayAgent,
  faultInjectionFromEnv,
  FAULT_POINTS,
  type GatewayAgent,
  type GatewayAgentOptions,
  type GatewayStatus,
  type FaultPoint,
} from './agent.ts';
export { startSimulatedMeters, simulatedEnergyWh, SIMULATED_CHANNEL, type SimulatedMeters, type SimulatedMetersOptions } from './simulated-meter.ts';
export { loadConfig, parseConfig, telemetryTopic, ConfigError, IOT_LIMITS, type GatewayConfig, type GatewayConfigInput } from './config.ts';
export { Spool, type SpoolStats, type SpooledReading } from './spool.ts';
export { demoClock, wallClock, type AgentClock } from './clock.ts';
export { peakRate } from './pacer.ts';

/** The CLI entry file (run with `node --import tsx`). */
export const GATEWAY_BIN = fileURLToPath(new URL('../bin/meterbridge-gateway.ts', import.meta.url));

export interface SpawnGatewayOptions {
  /** Extra environment, e.g. METERBRIDGE_GATEWAY_CRASH_AT for crash tests. */
  env?: NodeJS.ProcessEnv;
  /** @default ['ignore', 'pipe', 'pipe'] */
  stdio?: StdioOptions;
  /** @default the repository root */
  cwd?: string;
}

/** Runs `meterbridge-gateway run --config <configPath>` as a child process (killable with SIGKILL). */
export function spawnGatewayAgent(configPath: string, options: SpawnGatewayOptions = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', GATEWAY_BIN, 'run', '--config', configPath], {
    cwd: options.cwd ?? fileURLToPath(new URL('../..', import.meta.url)),
    env: { ...process.env, ...options.env },
    stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'],
  });
}
