import type { Pool } from '../pool/pool.js';
import type { UsageCounters, UsageRegistry } from '../stats/usage.js';

export interface TenantRow extends UsageCounters {
  tenant: string;
  placement: string;
  clients: number;
  tps: number;
  p50Ms: number;
  p99Ms: number;
}

export interface UsageReport {
  time: string;
  /** Start of the window the counters cover. */
  from: string;
  tenants: TenantRow[];
  backends: { backend: string; transactions: number; p50Ms: number; p99Ms: number }[];
  pools: { pool: string; size: number; active: number; idle: number; waiting: number }[];
}

const ms = (seconds: number): number => Math.round(seconds * 1e6) / 1e3;

/** "90s", "15m", "1h", "2d" → milliseconds. */
export function parseWindow(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(text.trim());
  if (m === null) throw new Error(`invalid window "${text}": use a number with s, m, h or d, like 1h`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** Per-tenant usage (over the last `windowMs`, or since start), busiest first. */
export function usageReport(usage: UsageRegistry, pools: Pool[], windowMs?: number, now = Date.now()): UsageReport {
  const window = usage.since(windowMs ?? now - usage.startedAt + 1, now);
  const tenants: TenantRow[] = [];
  for (const [tenant, counters] of window.tenants) {
    const u = usage.tenants.get(tenant)!;
    tenants.push({ tenant, placement: u.placement, clients: u.clients, tps: Math.round(u.tps * 10) / 10, p50Ms: ms(u.latency.quantile(0.5)), p99Ms: ms(u.latency.quantile(0.99)), ...counters });
  }
  tenants.sort((a, b) => b.transactions - a.transactions || a.tenant.localeCompare(b.tenant));
  return {
    time: new Date(now).toISOString(),
    from: new Date(window.from).toISOString(),
    tenants,
    backends: [...usage.backendLatency].map(([backend, h]) => ({ backend, transactions: h.count, p50Ms: ms(h.quantile(0.5)), p99Ms: ms(h.quantile(0.99)) })),
    pools: pools.map((p) => ({ pool: p.key, size: p.settings.size, ...pickPool(p.stats) })),
  };
}

function pickPool(s: Pool['stats']): { active: number; idle: number; waiting: number } {
  return { active: s.active, idle: s.idle, waiting: s.waiting };
}
