import { Histogram } from './histogram.js';

/** Key of clients that have no tenant (tenancy-exempt users, proxies without tenancy). */
export const NO_TENANT = '-';

/** Cumulative per-tenant counters: what a SaaS bills on and how it spots noisy neighbours. */
export interface UsageCounters {
  transactions: number;
  queries: number;
  errors: number;
  blocked: number;
  /** Seconds a server connection was held for the tenant. */
  busySeconds: number;
  rows: number;
  bytes: number;
}

const zero = (): UsageCounters => ({ transactions: 0, queries: 0, errors: 0, blocked: 0, busySeconds: 0, rows: 0, bytes: 0 });

export class TenantUsage implements UsageCounters {
  transactions = 0;
  queries = 0;
  errors = 0;
  blocked = 0;
  busySeconds = 0;
  rows = 0;
  bytes = 0;
  clients = 0;
  placement = '';
  readonly errorsByClass = new Map<string, number>();
  /** Transaction (unit of work) durations. */
  readonly latency = new Histogram();
  /** Transactions per second over the last sampling interval. */
  tps = 0;
  private lastTransactions = 0;

  constructor(readonly tenant: string) {}

  error(code: string): void {
    this.errors++;
    const cls = code.slice(0, 2);
    this.errorsByClass.set(cls, (this.errorsByClass.get(cls) ?? 0) + 1);
  }

  counters(): UsageCounters {
    const { transactions, queries, errors, blocked, busySeconds, rows, bytes } = this;
    return { transactions, queries, errors, blocked, busySeconds, rows, bytes };
  }

  sample(intervalSeconds: number): void {
    this.tps = (this.transactions - this.lastTransactions) / intervalSeconds;
    this.lastTransactions = this.transactions;
  }
}

interface Snapshot {
  time: number;
  totals: Map<string, UsageCounters>;
}

/** How often cumulative counters are snapshotted for `report --since`, and how many are kept (3 h). */
const SNAPSHOT_MS = 60_000;
const SNAPSHOTS_KEPT = 180;
const RATE_MS = 2_000;

/** Usage of every tenant seen since start, with rates and minute snapshots for windowed reports. */
export class UsageRegistry {
  readonly tenants = new Map<string, TenantUsage>();
  readonly backendLatency = new Map<string, Histogram>();
  readonly startedAt = Date.now();
  /** Units pipelined on shared server connections (pool.multiplex). */
  sharedUnits = 0;
  private readonly snapshots: Snapshot[] = [];
  private readonly timers: NodeJS.Timeout[] = [];

  of(tenant: string): TenantUsage {
    let u = this.tenants.get(tenant);
    if (u === undefined) {
      u = new TenantUsage(tenant);
      this.tenants.set(tenant, u);
    }
    return u;
  }

  backend(name: string): Histogram {
    let h = this.backendLatency.get(name);
    if (h === undefined) {
      h = new Histogram();
      this.backendLatency.set(name, h);
    }
    return h;
  }

  start(): void {
    const rate = setInterval(() => {
      for (const u of this.tenants.values()) u.sample(RATE_MS / 1000);
    }, RATE_MS);
    const snap = setInterval(() => this.snapshot(), SNAPSHOT_MS);
    rate.unref();
    snap.unref();
    this.timers.push(rate, snap);
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
  }

  snapshot(now = Date.now()): void {
    const totals = new Map<string, UsageCounters>();
    for (const [k, u] of this.tenants) totals.set(k, u.counters());
    this.snapshots.push({ time: now, totals });
    if (this.snapshots.length > SNAPSHOTS_KEPT) this.snapshots.shift();
  }

  /**
   * Usage per tenant over the last `ms` (or since start when the proxy is younger, or when the
   * window reaches beyond the snapshots kept): the current totals minus the oldest snapshot inside it.
   */
  since(ms: number, now = Date.now()): { from: number; tenants: Map<string, UsageCounters> } {
    const cutoff = now - ms;
    const base = cutoff <= this.startedAt ? undefined : this.snapshots.find((s) => s.time >= cutoff);
    const out = new Map<string, UsageCounters>();
    for (const [k, u] of this.tenants) {
      const before = base?.totals.get(k) ?? zero();
      const c = u.counters();
      out.set(k, {
        transactions: c.transactions - before.transactions,
        queries: c.queries - before.queries,
        errors: c.errors - before.errors,
        blocked: c.blocked - before.blocked,
        busySeconds: c.busySeconds - before.busySeconds,
        rows: c.rows - before.rows,
        bytes: c.bytes - before.bytes,
      });
    }
    return { from: base?.time ?? this.startedAt, tenants: out };
  }
}
