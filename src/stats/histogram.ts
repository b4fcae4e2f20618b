/** Upper bounds (seconds) of latency buckets: fine near a millisecond, coarse beyond a second. */
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A fixed-bucket latency histogram: one array increment per observation, quantiles by interpolation. */
export class Histogram {
  /** counts[i]: observations ≤ LATENCY_BUCKETS[i] and > the bound before; the last slot is +Inf. */
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  count = 0;
  sum = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]) i++;
    this.counts[i]++;
    this.count++;
    this.sum += seconds;
  }

  /** The q-quantile in seconds (0 when empty), linear within the bucket it falls in. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = q * this.count;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      const c = this.counts[i];
      if (seen + c >= rank && c > 0) {
        const low = i === 0 ? 0 : LATENCY_BUCKETS[i - 1];
        const high = i < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[i] : low * 2;
        return low + (high - low) * ((rank - seen) / c);
      }
      seen += c;
    }
    return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1];
  }

  /** Adds another histogram's observations (merging tenants into "other"). */
  add(other: Histogram): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += other.counts[i];
    this.count += other.count;
    this.sum += other.sum;
  }
}
