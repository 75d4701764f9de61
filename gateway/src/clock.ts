/**
 * The agent's notion of time. Real gateways use the wall clock (kept right by NTP: readings are
 * identified by their interval start). Demos and tests use a faster clock that is a pure function
 * of real time, so an agent restarted after SIGKILL continues on the same timeline.
 */
import type { GatewayConfig } from './config.ts';

export interface AgentClock {
  /** Epoch milliseconds on the agent's timeline. */
  now(): number;
  /** Real milliseconds to wait for `virtualMs` to pass on the agent's timeline. */
  realDelay(virtualMs: number): number;
}

export const wallClock: AgentClock = { now: () => Date.now(), realDelay: (ms) => ms };

export function demoClock(virtualStart: number, realStart: number, speedup: number): AgentClock {
  return {
    now: () => Math.floor(virtualStart + (Date.now() - realStart) * speedup),
    realDelay: (ms) => ms / speedup,
  };
}

export function clockFor(config: GatewayConfig): AgentClock {
  const demo = config.demoClock;
  return demo ? demoClock(Date.parse(demo.virtualStart), Date.parse(demo.realStart), demo.speedup) : wallClock;
}
