/**
 * How many units may be pipelined on a pool's shared connections at once, adapted to measured
 * latency the way Netflix's Gradient2 limit does (isolation.md §D): the limit follows
 * limit × clamp(tolerance × longRtt / shortRtt, 0.5, 1) + √limit, smoothed, so it grows while
 * pipelining does not slow units down and shrinks as soon as it queues them.
 */
export interface LimitSettings {
  initial: number;
  min: number;
  max: number;
  /** How much slower than the long-term latency a unit may get before the limit shrinks. */
  tolerance: number;
  /** Weight of each new limit in the smoothed one. */
  smoothing: number;
  /** Samples the long-term latency averages over. */
  longWindow: number;
}

export const DEFAULT_LIMIT: LimitSettings = { initial: 32, min: 4, max: 256, tolerance: 2, smoothing: 0.2, longWindow: 600 };

export class Gradient2Limit {
  private estimate: number;
  private longRtt = 0;
  private samples = 0;
  /** Units sent and not yet answered. */
  inflight = 0;

  constructor(private readonly s: LimitSettings = DEFAULT_LIMIT) {
    this.estimate = s.initial;
  }

  /** The current limit (whole units). */
  get limit(): number {
    return Math.floor(this.estimate);
  }

  /** Whether one more unit may be pipelined now. */
  get admits(): boolean {
    return this.inflight < this.limit;
  }

  started(): void {
    this.inflight++;
  }

  /** A unit will never be answered (its client or connection is gone). */
  dropped(): void {
    this.inflight = Math.max(0, this.inflight - 1);
  }

  /** A unit was answered after `rttMs`; `inflightThen`: units in flight when it was sent, itself included. */
  finished(rttMs: number, inflightThen: number): void {
    this.inflight = Math.max(0, this.inflight - 1);
    const rtt = Math.max(rttMs, 0.001);
    this.samples++;
    // Warm-up: a plain average of the first samples, then an exponential one over longWindow.
    const n = Math.min(this.samples, this.s.longWindow);
    this.longRtt = this.samples === 1 ? rtt : this.longRtt + (rtt - this.longRtt) * (n < 10 ? 1 / n : 2 / (this.s.longWindow + 1));
    // After an overload the long average lags behind: let it drift down toward recovered latency.
    if (this.longRtt / rtt > 2) this.longRtt *= 0.95;
    // Units that never filled the limit say nothing about a higher one.
    if (inflightThen < this.estimate / 2) return;
    const gradient = Math.max(0.5, Math.min(1, (this.s.tolerance * this.longRtt) / rtt));
    const next = this.estimate * gradient + Math.sqrt(this.estimate);
    this.estimate = Math.min(this.s.max, Math.max(this.s.min, this.estimate * (1 - this.s.smoothing) + next * this.s.smoothing));
  }
}
