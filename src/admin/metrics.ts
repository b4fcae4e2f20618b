import { Registry, collectDefaultMetrics, type Metric, type MetricValue } from 'prom-client';
import type { Pool } from '../pool/pool.js';
import { Histogram, LATENCY_BUCKETS } from '../stats/histogram.js';
import { TenantUsage, type UsageRegistry } from '../stats/usage.js';
import type { ReplicaSet, ReplicaState } from '../routing/replicas.js';
import type { ClientInfo } from './console.js';

/** What the metrics read from the running proxy at scrape time. */
export interface MetricsSource {
  readonly usage: UsageRegistry;
  readonly poolList: Pool[];
  readonly clientCount: number;
  readonly blockedStatements: number;
  readonly replicaSets: ReplicaSet[];
  clients(): ClientInfo[];
}

type Labels = Record<string, string | number>;
type Sample = { labels: Labels; value: number; metricName?: string };

/**
 * A metric whose samples are computed from pgtenant's own counters when Prometheus scrapes, so
 * the hot path never touches a label map. prom-client's Registry takes any object with this shape.
 */
function snapshot(name: string, help: string, type: 'counter' | 'gauge' | 'histogram', samples: () => Sample[]): Metric {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: samples() as MetricValue<string>[] }),
  } as unknown as Metric;
}

function histogramSamples(name: string, h: Histogram, labels: Labels): Sample[] {
  const out: Sample[] = [];
  let cumulative = 0;
  for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
    cumulative += h.counts[i];
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: LATENCY_BUCKETS[i] }, value: cumulative });
  }
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
  return out;
}

/**
 * Tenants by traffic: the top `limit` keep their own label, the rest are summed under "other", so
 * 100k tenants cannot blow up the registry.
 */
export function boundedTenants(usage: UsageRegistry, limit: number): TenantUsage[] {
  const all = [...usage.tenants.values()];
  if (all.length <= limit) return all;
  all.sort((a, b) => b.transactions + b.clients - (a.transactions + a.clients));
  const kept = all.slice(0, limit);
  const other = all.slice(limit).reduce((acc, u) => {
    acc.transactions += u.transactions;
    acc.queries += u.queries;
    acc.errors += u.errors;
    acc.blocked += u.blocked;
    acc.busySeconds += u.busySeconds;
    acc.rows += u.rows;
    acc.bytes += u.bytes;
    acc.clients += u.clients;
    acc.tps += u.tps;
    acc.latency.add(u.latency);
    for (const [cls, n] of u.errorsByClass) acc.errorsByClass.set(cls, (acc.errorsByClass.get(cls) ?? 0) + n);
    return acc;
  }, new TenantUsage('other'));
  return [...kept, other];
}

export function createMetrics(source: MetricsSource, topTenants: number): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'pgtenant_' });
  const tenants = (): TenantUsage[] => boundedTenants(source.usage, topTenants);
  const perTenant = (name: string, help: string, type: 'counter' | 'gauge', value: (u: TenantUsage) => number): void => {
    registry.registerMetric(snapshot(name, help, type, () => tenants().map((u) => ({ labels: { tenant: u.tenant }, value: value(u) }))));
  };
  perTenant('pgtenant_tenant_clients', 'Connected clients per tenant ("-": no tenant).', 'gauge', (u) => u.clients);
  perTenant('pgtenant_tenant_transactions_total', 'Units of work (transactions or autocommit runs up to ReadyForQuery idle) per tenant.', 'counter', (u) => u.transactions);
  perTenant('pgtenant_tenant_queries_total', 'Query and Execute messages per tenant.', 'counter', (u) => u.queries);
  perTenant('pgtenant_tenant_blocked_total', 'Statements refused by the tenant guard, per tenant.', 'counter', (u) => u.blocked);
  perTenant('pgtenant_tenant_busy_seconds_total', 'Seconds a server connection worked for the tenant.', 'counter', (u) => u.busySeconds);
  perTenant('pgtenant_tenant_rows_total', 'Rows returned to the tenant.', 'counter', (u) => u.rows);
  perTenant('pgtenant_tenant_bytes_total', 'Bytes sent from servers to the tenant.', 'counter', (u) => u.bytes);
  registry.registerMetric(
    snapshot('pgtenant_tenant_errors_total', 'Errors sent to clients, per tenant and SQLSTATE class.', 'counter', () =>
      tenants().flatMap((u) => [...u.errorsByClass].map(([cls, n]) => ({ labels: { tenant: u.tenant, class: cls }, value: n }))),
    ),
  );
  registry.registerMetric(
    snapshot('pgtenant_tenant_transaction_seconds', 'Duration of units of work per tenant.', 'histogram', () => tenants().flatMap((u) => histogramSamples('pgtenant_tenant_transaction_seconds', u.latency, { tenant: u.tenant }))),
  );
  registry.registerMetric(
    snapshot('pgtenant_backend_transaction_seconds', 'Duration of units of work per backend.', 'histogram', () =>
      [...source.usage.backendLatency].flatMap(([backend, h]) => histogramSamples('pgtenant_backend_transaction_seconds', h, { backend })),
    ),
  );
  const pools = (): Pool[] => source.poolList;
  registry.registerMetric(
    snapshot('pgtenant_pool_server_connections', 'Server connections per pool and state.', 'gauge', () =>
      pools().flatMap((p) => {
        const s = p.stats;
        return [
          { labels: { pool: p.key, state: 'active' }, value: s.active },
          { labels: { pool: p.key, state: 'idle' }, value: s.idle },
          { labels: { pool: p.key, state: 'connecting' }, value: s.connecting },
        ];
      }),
    ),
  );
  registry.registerMetric(
    snapshot('pgtenant_pool_clients', 'Client connections per pool and state (active: holds a server connection; waiting: for one; idle).', 'gauge', () => {
      const counts = new Map<string, number>();
      for (const p of pools()) for (const state of ['active', 'waiting', 'idle']) counts.set(`${p.key}\0${state}`, 0);
      for (const c of source.clients()) {
        if (c.pool === '' || c.state === 'admin') continue;
        const key = `${c.pool}\0${c.state}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return [...counts].map(([key, value]) => {
        const [pool, state] = key.split('\0');
        return { labels: { pool, state }, value };
      });
    }),
  );
  registry.registerMetric(snapshot('pgtenant_pool_clients_waiting', 'Clients waiting for a server connection, per pool.', 'gauge', () => pools().map((p) => ({ labels: { pool: p.key }, value: p.stats.waiting }))));
  registry.registerMetric(snapshot('pgtenant_pool_size', 'Configured size per pool.', 'gauge', () => pools().map((p) => ({ labels: { pool: p.key }, value: p.settings.size }))));
  registry.registerMetric(snapshot('pgtenant_pool_saturation', 'Share of a pool\'s server connections in use (0..1).', 'gauge', () => pools().map((p) => ({ labels: { pool: p.key }, value: p.stats.active / p.settings.size }))));
  registry.registerMetric(snapshot('pgtenant_pool_shared_limit', 'Units the pool may pipeline on shared connections at once (Gradient2, from their latency).', 'gauge', () => pools().map((p) => ({ labels: { pool: p.key }, value: p.sharedLimit.limit }))));
  registry.registerMetric(snapshot('pgtenant_pool_shared_inflight', 'Units pipelined on the pool\'s shared connections now.', 'gauge', () => pools().map((p) => ({ labels: { pool: p.key }, value: p.sharedLimit.inflight }))));
  registry.registerMetric(snapshot('pgtenant_pool_queue_wait_seconds', 'Time clients waited for a server connection.', 'histogram', () => pools().flatMap((p) => histogramSamples('pgtenant_pool_queue_wait_seconds', p.queueWait, { pool: p.key }))));
  registry.registerMetric(snapshot('pgtenant_shared_units_total', 'Units of work pipelined on shared server connections (pool.multiplex).', 'counter', () => [{ labels: {}, value: source.usage.sharedUnits }]));
  const perReplica = (name: string, help: string, type: 'counter' | 'gauge', value: (r: ReplicaState, set: ReplicaSet) => number): void => {
    registry.registerMetric(snapshot(name, help, type, () => source.replicaSets.flatMap((set) => set.replicas.map((r) => ({ labels: { backend: set.backend, replica: r.name }, value: value(r, set) })))));
  };
  perReplica('pgtenant_replica_up', 'Whether the replica takes reads now (healthy, within lag bounds, not ejected).', 'gauge', (r, set) => (set.eligible(r) ? 1 : 0));
  perReplica('pgtenant_replica_lag_bytes', 'WAL bytes the replica\'s replay was behind the primary at the last health check.', 'gauge', (r) => r.lagBytes);
  perReplica('pgtenant_replica_latency_seconds', 'Peak-EWMA unit latency on the replica (what read routing compares).', 'gauge', (r) => r.latencyMs / 1000);
  perReplica('pgtenant_replica_inflight', 'Units running on the replica now.', 'gauge', (r) => r.inflight);
  perReplica('pgtenant_replica_units_total', 'Read units routed to the replica.', 'counter', (r) => r.reads);
  perReplica('pgtenant_replica_failures_total', 'Read units whose replica connection was refused or lost.', 'counter', (r) => r.failures);
  perReplica('pgtenant_replica_ejections_total', 'Times the replica was ejected as an outlier.', 'counter', (r) => r.ejections);
  registry.registerMetric(snapshot('pgtenant_clients', 'Connected clients.', 'gauge', () => [{ labels: {}, value: source.clientCount }]));
  registry.registerMetric(snapshot('pgtenant_blocked_statements_total', 'Statements refused by the tenant guard.', 'counter', () => [{ labels: {}, value: source.blockedStatements }]));
  return registry;
}
