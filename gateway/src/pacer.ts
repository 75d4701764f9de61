/**
 * Keeps publishes within a count and byte budget over every sliding window, which is how a broker
 * sees a connection (a token bucket would allow twice the rate across a window boundary). The
 * agent uses a window somewhat longer than a second (publish.rateWindowSeconds), so delays that
 * bunch publishes together on the way cannot push the broker's per-second measurement over.
 */
export class Pacer {
  private readonly sent: Array<{ at: number; bytes: number }> = [];
  private bytesInWindow = 0;

  constructor(
    private readonly maxPublishes: number,
    private readonly maxBytes: number,
    private readonly windowMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  private expire(now: number): void {
    while (this.sent.length > 0 && this.sent[0]!.at <= now - this.windowMs) this.bytesInWindow -= this.sent.shift()!.bytes;
  }

  /** Milliseconds to wait before a publish of `bytes` fits the window (0: now). */
  delayFor(bytes: number): number {
    const now = this.now();
    this.expire(now);
    let count = this.sent.length;
    let total = this.bytesInWindow;
    if (count + 1 <= this.maxPublishes && total + bytes <= this.maxBytes) return 0;
    for (const entry of this.sent) {
      count--;
      total -= entry.bytes;
      if (count + 1 <= this.maxPublishes && total + bytes <= this.maxBytes) return Math.max(1, entry.at + this.windowMs - now);
    }
    return this.windowMs;
  }

  record(bytes: number): void {
    this.sent.push({ at: this.now(), bytes });
    this.bytesInWindow += bytes;
  }
}

/** The peak publishes and bytes over any 1 s sliding window, kept as events happen (constant memory per second). */
export class RateMeter {
  private readonly recent: Array<{ at: number; bytes: number }> = [];
  private bytes = 0;
  private best = { publishes: 0, bytes: 0 };

  constructor(
    private readonly windowMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  record(bytes: number): void {
    const now = this.now();
    while (this.recent.length > 0 && this.recent[0]!.at <= now - this.windowMs) this.bytes -= this.recent.shift()!.bytes;
    this.recent.push({ at: now, bytes });
    this.bytes += bytes;
    this.best = { publishes: Math.max(this.best.publishes, this.recent.length), bytes: Math.max(this.best.bytes, this.bytes) };
  }

  peak(): { publishes: number; bytes: number } {
    return { ...this.best };
  }
}

/** Most publishes and bytes seen in any `windowMs` window of a list of (time, bytes), e.g. measured at a broker. */
export function peakRate(events: ReadonlyArray<{ at: number; bytes: number }>, windowMs = 1000): { publishes: number; bytes: number } {
  const sorted = [...events].sort((a, b) => a.at - b.at);
  let start = 0;
  let bytes = 0;
  let peak = { publishes: 0, bytes: 0 };
  for (let end = 0; end < sorted.length; end++) {
    bytes += sorted[end]!.bytes;
    while (sorted[end]!.at - sorted[start]!.at >= windowMs) bytes -= sorted[start++]!.bytes;
    peak = { publishes: Math.max(peak.publishes, end - start + 1), bytes: Math.max(peak.bytes, bytes) };
  }
  return peak;
}
