/**
 * Which replica of a backend serves the next read-only unit: power of two choices over a
 * peak-EWMA latency cost (Finagle/Linkerd style), among replicas that pass their health check, are
 * not behind beyond the configured lag, and are not ejected as outliers (gRPC A50, failure
 * percentage). Pure bookkeeping: the health checker and the relay feed it, nothing here does I/O.
 */
import { replicaName, type ReadRoutingConfig, type ReplicaConfig } from '../config/schema.js';

/** Decay time of the latency average (isolation.md §D: τ = 10 s). */
const TAU_MS = 10_000;

export interface ReplicaState {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** Last health check: reachable, in recovery, within the lag bounds. Unknown until the first check: assumed healthy. */
  healthy: boolean;
  /** Why it is not healthy (for logs and SHOW-style output). */
  reason: string;
  /** A connection to it failed since the last health check: skipped until a check passes (circuit breaker). */
  broken: boolean;
  ejectedUntil: number;
  ejections: number;
  lagBytes: number;
  lagSeconds: number;
  /** Peak-EWMA of unit latency, ms (0 before the first unit). */
  latencyMs: number;
  /** When the last latency sample came (ms since epoch; 0: none yet). */
  lastSampleAt: number;
  inflight: number;
  /** Units sent to it, and failed ones, ever. */
  reads: number;
  failures: number;
  /** Units and failures in the current ejection interval. */
  windowUnits: number;
  windowFailures: number;
}

export class ReplicaSet {
  readonly replicas: ReplicaState[];

  constructor(
    readonly backend: string,
    replicas: ReplicaConfig[],
    private settings: ReadRoutingConfig,
    private readonly random: () => number = Math.random,
  ) {
    this.replicas = replicas.map((r) => ({
      name: replicaName(r),
      host: r.host,
      port: r.port,
      healthy: true,
      reason: 'not checked yet',
      broken: false,
      ejectedUntil: 0,
      ejections: 0,
      lagBytes: 0,
      lagSeconds: 0,
      latencyMs: 0,
      lastSampleAt: 0,
      inflight: 0,
      reads: 0,
      failures: 0,
      windowUnits: 0,
      windowFailures: 0,
    }));
  }

  get config(): ReadRoutingConfig {
    return this.settings;
  }

  /** Whether a replica may take reads now. */
  eligible(r: ReplicaState, now = Date.now()): boolean {
    return r.healthy && !r.broken && r.ejectedUntil <= now;
  }

  /** The replica for the next read unit, or null (none eligible: read from the primary). */
  pick(now = Date.now()): ReplicaState | null {
    const ok = this.replicas.filter((r) => this.eligible(r, now));
    if (ok.length === 0) return null;
    if (ok.length === 1) return ok[0];
    const i = Math.floor(this.random() * ok.length);
    let j = Math.floor(this.random() * (ok.length - 1));
    if (j >= i) j++;
    return this.cost(ok[i], now) <= this.cost(ok[j], now) ? ok[i] : ok[j];
  }

  /**
   * Expected latency of one more unit: the decayed peak average times the units already waiting
   * on it. An unmeasured replica costs nothing, so it gets traffic and a measurement.
   */
  cost(r: ReplicaState, now = Date.now()): number {
    return this.decayed(r, now) * (r.inflight + 1);
  }

  private decayed(r: ReplicaState, now: number): number {
    if (r.lastSampleAt === 0) return r.latencyMs;
    return r.latencyMs * Math.exp(-Math.max(0, now - r.lastSampleAt) / TAU_MS);
  }

  started(r: ReplicaState): void {
    r.inflight++;
    r.reads++;
    r.windowUnits++;
  }

  /** Connecting to `r` for a unit failed (the unit went to the primary). */
  connectFailed(r: ReplicaState): void {
    r.reads++;
    r.windowUnits++;
    r.failures++;
    r.windowFailures++;
    r.broken = true;
  }

  /** A unit on `r` ended after `ms`; `failed`: the connection was refused or lost. */
  finished(r: ReplicaState, ms: number, failed: boolean, now = Date.now()): void {
    r.inflight = Math.max(0, r.inflight - 1);
    if (failed) {
      r.failures++;
      r.windowFailures++;
      r.broken = true;
      return;
    }
    // Peak-EWMA: a slower sample takes over at once, faster ones pull it down with time.
    const w = r.lastSampleAt === 0 ? 0 : Math.exp(-Math.max(0, now - r.lastSampleAt) / TAU_MS);
    r.latencyMs = ms > r.latencyMs ? ms : r.latencyMs * w + ms * (1 - w);
    r.lastSampleAt = now;
  }

  /** Outcome of a health check of `r`. */
  checked(r: ReplicaState, result: { ok: true; inRecovery: boolean; lagBytes: number; lagSeconds: number } | { ok: false; error: string }): void {
    if (!result.ok) {
      r.healthy = false;
      r.reason = result.error;
      return;
    }
    r.lagBytes = result.lagBytes;
    r.lagSeconds = result.lagSeconds;
    r.broken = false;
    if (!result.inRecovery) {
      r.healthy = false;
      r.reason = 'not in recovery (promoted?)';
    } else if (result.lagBytes > this.settings.maxLagBytes) {
      r.healthy = false;
      r.reason = `replay ${result.lagBytes} bytes behind (readRouting.maxLagBytes ${this.settings.maxLagBytes})`;
    } else if (result.lagBytes > 0 && result.lagSeconds * 1000 > this.settings.maxLagTime) {
      r.healthy = false;
      r.reason = `last replayed transaction ${result.lagSeconds.toFixed(1)} s old (readRouting.maxLagTime ${this.settings.maxLagTime} ms)`;
    } else {
      r.healthy = true;
      r.reason = 'ok';
    }
  }

  /**
   * End of an ejection interval (A50 failure-percentage ejection): eject replicas whose failure
   * share crossed the threshold, within maxPercent. Returns the newly ejected.
   */
  sweep(now = Date.now()): ReplicaState[] {
    const e = this.settings.ejection;
    const ejected: ReplicaState[] = [];
    for (const r of this.replicas) {
      // Like Envoy: one replica may always be ejected; more only while the share stays within maxPercent.
      const ejectedNow = this.replicas.filter((x) => x.ejectedUntil > now).length;
      const allowed = ejectedNow === 0 || (100 * (ejectedNow + 1)) / this.replicas.length <= e.maxPercent;
      if (r.ejectedUntil <= now && r.windowUnits >= e.minRequests && (100 * r.windowFailures) / r.windowUnits >= e.failurePercent && allowed) {
        r.ejections++;
        r.ejectedUntil = now + Math.min(e.baseTime * r.ejections, Math.max(e.baseTime, e.maxTime));
        ejected.push(r);
      }
      r.windowUnits = 0;
      r.windowFailures = 0;
    }
    return ejected;
  }

  reconfigure(settings: ReadRoutingConfig): void {
    this.settings = settings;
  }
}
