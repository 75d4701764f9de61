/**
 * Polls every meter on each interval boundary (:00, :15, ... for 900 s intervals) and commits the
 * cycle's readings to the spool in one group commit. A reading is "taken" once that commit has
 * returned (fsync'd), and only then logged as such.
 *
 * `delta` registers (cumulative indexes) give an interval's value as the difference of the reads
 * at its two ends, so an interval is only reported when the previous boundary was read too: a
 * missed poll (meter offline, agent down) leaves that interval out rather than folding two
 * intervals into one. An index that goes backwards (meter replaced or reset) is logged and
 * counted, and the next interval starts from the new index. A read that completes more than
 * `maxReadDelaySeconds` after its boundary (a slow meter, an overloaded box) no longer measures
 * the interval exactly: the intervals it ends and starts are stored as `estimated`.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mapWithConcurrency } from '../../shared/concurrency.ts';
import type { Log } from '../../shared/log.ts';
import { wallClock, type AgentClock } from './clock.ts';
import type { GatewayConfig, RegisterConfig } from './config.ts';
import { ModbusMeterReader, type MeterRead, type MeterReader } from './modbus.ts';
import { RtuBus, RtuMeterReader, type RtuBusStats } from './modbus-rtu.ts';
import { Signal } from './signal.ts';
import { systemClockSync, type ClockSyncCheck, type ClockSyncState } from './clock-sync.ts';
import type { SpooledReading, Spool } from './spool.ts';

export interface PollerStats {
  cycles: number;
  readingsTaken: number;
  /** Register reads that failed (timeouts, exceptions, bad responses, unreachable meters). */
  readErrors: number;
  readErrorsByMeter: Record<string, number>;
  /** Per RTU bus: requests, timeouts (silent meters), CRC errors, exceptions. */
  buses?: Record<string, RtuBusStats>;
  /** Readings the spool refused because it was full (whenFull: stop-accepting). */
  readingsRefused: number;
  /** Cumulative registers that went backwards. */
  counterResets: number;
  /** Poll cycles the spool could not commit (disk full, I/O errors). */
  failedCycles: number;
  /** Meter reads that completed later than polling.maxReadDelaySeconds after their boundary. */
  lateReads: number;
  lastPollAt: string | undefined;
  /** The system clock's synchronization at the last check (clock-sync.ts). */
  clock: ClockSyncState;
  /** Readings taken while the clock was not synchronized (stored as estimated). */
  unsyncedReadings: number;
}

export interface PollerOptions {
  config: GatewayConfig;
  spool: Spool;
  clock: AgentClock;
  log: Log;
  /** Called after each committed cycle (the publisher's wake-up). */
  onCommitted?: (readings: number) => void;
  /** @default systemClockSync (timedatectl) for the wall clock; `unknown` for any other clock */
  clockSync?: ClockSyncCheck;
}

interface LastRead {
  /** Boundary of the read, epoch seconds. */
  end: number;
  counter: number;
  /** The read completed more than maxReadDelaySeconds after its boundary. */
  late?: boolean;
}

/** Decimal places that represent every multiple of `scale` exactly (0.001 → 3, 0.25 → 2). */
export function decimalsOf(scale: number): number {
  for (let decimals = 0; decimals <= 9; decimals++) {
    const shifted = scale * 10 ** decimals;
    if (Math.abs(shifted - Math.round(shifted)) < 1e-9) return decimals;
  }
  return 9;
}

/** The stored value of a raw register quantity: scaled, without float noise (0.1 × 3 = 0.3). */
export function scaleValue(raw: number, register: Pick<RegisterConfig, 'scale' | 'type'>): number {
  const value = raw * register.scale;
  if (register.type === 'float32') return Number(value.toPrecision(7)); // what a float32 carries
  const factor = 10 ** decimalsOf(register.scale);
  return Math.round(value * factor) / factor;
}

export class Poller {
  private readonly config: GatewayConfig;
  private readonly spool: Spool;
  private readonly clock: AgentClock;
  private readonly log: Log;
  private readonly onCommitted: ((readings: number) => void) | undefined;
  private readonly readers: MeterReader[];
  private readonly buses: Map<string, RtuBus>;
  private readonly last = new Map<string, LastRead>();
  private readonly countersPath: string;
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly signal = new Signal();
  private readonly counters: PollerStats = {
    cycles: 0,
    readingsTaken: 0,
    readErrors: 0,
    readErrorsByMeter: {},
    readingsRefused: 0,
    counterResets: 0,
    failedCycles: 0,
    lateReads: 0,
    lastPollAt: undefined,
    clock: 'unknown',
    unsyncedReadings: 0,
  };
  private readonly clockSync: ClockSyncCheck;
  private clockCheckedAt = -Infinity;

  constructor(options: PollerOptions) {
    this.config = options.config;
    this.spool = options.spool;
    this.clock = options.clock;
    this.log = options.log;
    this.onCommitted = options.onCommitted;
    // The system's NTP state describes the wall clock; a demo or test clock is its own truth.
    this.clockSync = options.clockSync ?? (this.clock === wallClock ? systemClockSync : async () => 'unknown');
    this.buses = new Map(this.config.buses.map((bus) => [bus.id, new RtuBus(bus, bus.timeoutMs ?? this.config.polling.timeoutMs)]));
    this.readers = this.config.meters.map((meter) =>
      meter.bus !== undefined ? new RtuMeterReader(meter, this.buses.get(meter.bus)!) : new ModbusMeterReader(meter, this.config.polling.timeoutMs),
    );
    this.countersPath = join(this.config.spool.directory, 'counters.json');
    this.restoreCounters();
  }

  /**
   * The last index read per meter channel: from counters.json (written after every cycle, also
   * for reads that produced no reading) or from the spool, whichever is newer.
   */
  private restoreCounters(): void {
    if (existsSync(this.countersPath)) {
      try {
        const saved = JSON.parse(readFileSync(this.countersPath, 'utf8')) as Record<string, LastRead>;
        for (const [key, value] of Object.entries(saved)) this.last.set(key, value);
      } catch (error) {
        this.log.warn('poller: counters.json unreadable; deltas restart from the next read', { error: String(error) });
      }
    }
    for (const meter of this.config.meters) {
      for (const register of meter.registers) {
        const key = `${meter.id}\u0000${register.channel}`;
        const fromSpool = this.spool.lastCounter(meter.id, register.channel);
        const known = this.last.get(key);
        if (fromSpool && (!known || fromSpool.end > known.end)) this.last.set(key, fromSpool);
      }
    }
  }

  private saveCounters(): void {
    // Not fsync'd, and failures only logged: a stale file costs one interval after a restart (its
    // end no longer matches), never a wrong value.
    const temporary = `${this.countersPath}.tmp`;
    try {
      writeFileSync(temporary, JSON.stringify(Object.fromEntries(this.last)));
      renameSync(temporary, this.countersPath);
    } catch (error) {
      this.log.warn('poller: could not save counters.json', { error: String(error) });
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.signal.notify();
    await this.loop;
    for (const reader of this.readers) reader.close();
    for (const bus of this.buses.values()) bus.close();
  }

  stats(): PollerStats {
    const stats: PollerStats = { ...this.counters, readErrorsByMeter: { ...this.counters.readErrorsByMeter } };
    if (this.buses.size > 0) stats.buses = Object.fromEntries([...this.buses].map(([id, bus]) => [id, bus.stats()]));
    return stats;
  }

  private async run(): Promise<void> {
    const intervalMs = this.config.polling.intervalSeconds * 1000;
    let previous: number | undefined;
    await this.checkClock(true); // before the first poll: logged either way
    while (this.running) {
      const boundary = Math.floor(this.clock.now() / intervalMs) * intervalMs + intervalMs;
      if (previous !== undefined && boundary - previous > intervalMs) {
        this.log.warn('poller: polls missed (a cycle took longer than the interval)', { missed: (boundary - previous) / intervalMs - 1 });
      }
      // Timers may fire a little early, and a fast demo clock magnifies that: wait until it is really time.
      while (this.running && this.clock.now() < boundary) await this.signal.wait(Math.max(1, this.clock.realDelay(boundary - this.clock.now())));
      if (!this.running) break;
      try {
        await this.pollOnce(boundary / 1000);
      } catch (error) {
        // The spool could not take the cycle (disk full, I/O error): nothing of it counts as taken.
        this.counters.failedCycles++;
        this.log.error('poller: cycle not committed; its readings were not taken', {
          intervalEnd: new Date(boundary).toISOString(),
          error: String(error),
        });
      }
      previous = boundary;
    }
  }

  /** Asks whether the system clock is synchronized, at most every clock.checkEverySeconds (real time). */
  async checkClock(force = false): Promise<ClockSyncState> {
    if (!force && performance.now() - this.clockCheckedAt < this.config.clock.checkEverySeconds * 1000) return this.counters.clock;
    this.clockCheckedAt = performance.now();
    let state: ClockSyncState;
    try {
      state = await this.clockSync();
    } catch (error) {
      state = 'unknown';
      this.log.warn('poller: clock synchronization check failed', { error: String(error) });
    }
    const previous = this.counters.clock;
    this.counters.clock = state;
    if (state !== previous || force) {
      if (state === 'unsynchronized')
        this.log.error('poller: system clock NOT synchronized (NTP): readings are stored as estimated until it is', { was: previous });
      else if (state === 'synchronized') this.log.info('poller: system clock synchronized', { was: previous });
      else
        this.log.warn('poller: cannot tell whether the system clock is synchronized (no timedatectl/timesyncd); readings are not marked', {
          was: previous,
        });
    }
    return state;
  }

  /** Reads every meter for the boundary `end` (epoch seconds) and commits the readings. */
  async pollOnce(end: number): Promise<{ taken: number; errors: number }> {
    // An unsynchronized clock may have put this boundary anywhere: what is read now is an estimate.
    const unsynced = (await this.checkClock()) === 'unsynchronized';
    const interval = this.config.polling.intervalSeconds;
    const { concurrency, maxReadDelaySeconds } = this.config.polling;
    const results = await mapWithConcurrency(this.readers, concurrency, async (reader) => {
      const read = await reader.read();
      return { ...read, late: this.clock.now() / 1000 - end > maxReadDelaySeconds };
    });
    const readings: SpooledReading[] = [];
    const nextLast = new Map<string, LastRead>();
    let errors = 0;
    let lateReads = 0;
    results.forEach((result: MeterRead & { late: boolean }, i) => {
      const meter = this.config.meters[i]!;
      for (const failure of result.errors) {
        errors++;
        this.counters.readErrorsByMeter[meter.id] = (this.counters.readErrorsByMeter[meter.id] ?? 0) + 1;
        this.log.warn('poller: read error', {
          meterId: meter.id,
          ...(meter.bus !== undefined ? { bus: meter.bus } : { host: meter.host }),
          unitId: meter.unitId,
          channel: failure.channel,
          error: failure.error,
        });
      }
      if (result.late && result.values.size > 0) lateReads++;
      for (const register of meter.registers) {
        const raw = result.values.get(register.channel);
        if (raw === undefined) continue;
        const key = `${meter.id}\u0000${register.channel}`;
        const previous = this.last.get(key);
        const estimated = result.late || unsynced || (register.mode === 'delta' && previous?.late === true);
        const common = {
          meterId: meter.id,
          channel: register.channel,
          start: end - interval,
          intervalSeconds: interval,
          unit: register.unit,
          quality: estimated ? ('estimated' as const) : register.quality,
        };
        if (register.mode === 'interval') {
          readings.push({ ...common, value: scaleValue(raw, register) });
          continue;
        }
        nextLast.set(key, { end, counter: raw, ...(result.late || unsynced ? { late: true } : {}) });
        if (!previous || previous.end !== end - interval) continue; // no read at the interval's start
        if (raw < previous.counter) {
          this.counters.counterResets++;
          this.log.warn('poller: cumulative register went backwards (meter reset or replaced?); interval skipped', {
            meterId: meter.id,
            channel: register.channel,
            previous: previous.counter,
            now: raw,
          });
          continue;
        }
        readings.push({ ...common, value: scaleValue(raw - previous.counter, register), counter: raw });
      }
    });
    this.counters.readErrors += errors;
    if (lateReads > 0) {
      this.counters.lateReads += lateReads;
      this.log.warn('poller: meters read late; their intervals are stored as estimated', {
        meters: lateReads,
        intervalEnd: new Date(end * 1000).toISOString(),
        maxReadDelaySeconds,
      });
    }

    const { appended, refused } = this.spool.append(readings);
    if (unsynced) this.counters.unsyncedReadings += appended;
    this.counters.readingsRefused += refused;
    this.counters.readingsTaken += appended;
    this.counters.cycles++;
    this.counters.lastPollAt = new Date(end * 1000).toISOString();
    for (const [key, value] of nextLast) this.last.set(key, value);
    this.saveCounters();
    this.log.info('poll committed', {
      intervalStart: new Date((end - interval) * 1000).toISOString(),
      readings: appended,
      readErrors: errors,
      spoolDepth: this.spool.stats().depth,
    });
    if (appended > 0) this.onCommitted?.(appended);
    return { taken: appended, errors };
  }
}
