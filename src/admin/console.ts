import { Backend } from '../protocol/codes.js';
import { commandComplete, errorResponse, msg } from '../protocol/messages.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import type { Config } from '../config/schema.js';
import type { Pool } from '../pool/pool.js';
import type { UsageRegistry } from '../stats/usage.js';
import type { ReplicaSet } from '../routing/replicas.js';
import type { UnitClassifier } from '../sql/classify.js';
import { usageReport } from './report.js';

/** The database name that opens the admin console (as `pgbouncer` does for PgBouncer). */
export const ADMIN_DATABASE = 'pgtenant';

export interface ClientInfo {
  pid: number;
  user: string;
  tenant: string;
  database: string;
  /** Key of the client's pool ('' before it has one). */
  pool: string;
  /** active (holds a server connection), waiting (for one), idle, or admin. */
  state: string;
  connectedAt: number;
  address: string;
}

/** What the console reads and steers. */
export interface AdminTarget {
  readonly config: Config;
  readonly usage: UsageRegistry;
  readonly poolList: Pool[];
  readonly replicaSets: ReplicaSet[];
  readonly blockedStatements: number;
  /** Per statement shape latency, measured when pool.multiplex is on (null: nothing measures it). */
  readonly classifier: UnitClassifier | null;
  clients(): ClientInfo[];
  isPaused(tenant: string): boolean;
  pause(tenant: string | undefined): Promise<void>;
  resume(tenant: string | undefined): void;
  reloadFromFile(): Promise<void>;
  kill(tenant: string): number;
}

type Cell = string | number | boolean | null;

/** SHOW STATEMENTS lists the most run shapes only. */
const STATEMENT_ROWS = 100;

/** RowDescription + DataRows + CommandComplete for a result of text columns. */
function resultSet(columns: string[], rows: Cell[][], tag: string): Buffer[] {
  const desc = msg(Backend.RowDescription).i16(columns.length);
  for (const c of columns) desc.str(c).i32(0).i16(0).i32(25 /* text */).i16(-1).i32(-1).i16(0);
  const out = [desc.done()];
  for (const row of rows) {
    const m = msg(Backend.DataRow).i16(row.length);
    for (const cell of row) {
      if (cell === null) m.i32(-1);
      else {
        const b = Buffer.from(String(cell), 'utf8');
        m.i32(b.length).bytes(b);
      }
    }
    out.push(m.done());
  }
  out.push(commandComplete(tag));
  return out;
}

/** Secrets in SHOW CONFIG are shown as ***. */
function flatten(value: unknown, prefix: string, out: [string, string][]): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix === '' ? k : `${prefix}.${k}`, out);
    return;
  }
  const secret = /(password|secret)$/i.test(prefix);
  out.push([prefix, secret ? '***' : Array.isArray(value) ? JSON.stringify(value) : String(value)]);
}

const TENANT_ARG = /^[A-Za-z0-9_-]{1,63}$/;

/**
 * Runs one admin command (PgBouncer-style) and returns the messages that answer it (without
 * ReadyForQuery). Errors come back as ErrorResponse.
 */
export async function runAdminCommand(target: AdminTarget, text: string): Promise<Buffer[]> {
  const words = text.trim().replace(/;\s*$/, '').split(/\s+/).filter((w) => w !== '');
  const [verb = '', arg, extra] = words;
  const command = verb.toUpperCase();
  try {
    if (extra !== undefined) throw new PgError(SqlState.SyntaxError, `too many arguments for ${command}`);
    if (arg !== undefined && command !== 'SHOW' && !TENANT_ARG.test(arg)) throw new PgError(SqlState.SyntaxError, `invalid tenant "${arg}"`);
    switch (command) {
      case 'SHOW':
        return show(target, (arg ?? '').toUpperCase());
      case 'PAUSE':
        await target.pause(arg);
        return [commandComplete('PAUSE')];
      case 'RESUME':
        target.resume(arg);
        return [commandComplete('RESUME')];
      case 'RELOAD':
        if (arg !== undefined) throw new PgError(SqlState.SyntaxError, 'RELOAD takes no argument');
        await target.reloadFromFile();
        return [commandComplete('RELOAD')];
      case 'KILL': {
        if (arg === undefined) throw new PgError(SqlState.SyntaxError, 'KILL needs a tenant: KILL acme');
        const n = target.kill(arg);
        return [commandComplete(`KILL ${n}`)];
      }
      case '':
        return [msg(Backend.EmptyQueryResponse).done()];
      default:
        throw new PgError(SqlState.SyntaxError, `unknown admin command "${verb}"`, 'ERROR', undefined, 'SHOW POOLS|CLIENTS|SERVERS|TENANTS|STATS|REPLICAS|STATEMENTS|CONFIG, PAUSE [tenant], RESUME [tenant], RELOAD, KILL tenant');
    }
  } catch (err) {
    const e = err instanceof PgError ? err : new PgError(SqlState.InternalError, err instanceof Error ? err.message : String(err));
    return [errorResponse({ severity: 'ERROR', code: e.code, message: e.message, hint: e.hint })];
  }
}

function show(target: AdminTarget, what: string): Buffer[] {
  switch (what) {
    case 'POOLS':
      return resultSet(
        ['pool', 'backend', 'size', 'active', 'idle', 'connecting', 'waiting', 'wait_p99_ms'],
        target.poolList.map((p) => {
          const s = p.stats;
          return [p.key, p.backendName, p.settings.size, s.active, s.idle, s.connecting, s.waiting, Math.round(p.queueWait.quantile(0.99) * 1e6) / 1e3];
        }),
        'SHOW',
      );
    case 'CLIENTS':
      return resultSet(
        ['pid', 'user', 'tenant', 'database', 'pool', 'state', 'connected_at', 'address'],
        target.clients().map((c) => [c.pid, c.user, c.tenant, c.database, c.pool, c.state, new Date(c.connectedAt).toISOString(), c.address]),
        'SHOW',
      );
    case 'SERVERS':
      return resultSet(
        ['pool', 'backend_pid', 'state', 'prepared_statements'],
        target.poolList.flatMap((p) => p.connections.map((c) => [p.key, c.backendPid, c.idle ? 'idle' : 'active', c.prepared])),
        'SHOW',
      );
    case 'TENANTS': {
      const report = usageReport(target.usage, target.poolList);
      return resultSet(
        ['tenant', 'placement', 'clients', 'transactions', 'tps', 'p50_ms', 'p99_ms', 'errors', 'blocked', 'paused'],
        report.tenants.map((t) => [t.tenant, t.placement, t.clients, t.transactions, t.tps, t.p50Ms, t.p99Ms, t.errors, t.blocked, target.isPaused(t.tenant)]),
        'SHOW',
      );
    }
    case 'STATS': {
      const report = usageReport(target.usage, target.poolList);
      const sum = (f: (t: (typeof report.tenants)[number]) => number): number => report.tenants.reduce((a, t) => a + f(t), 0);
      return resultSet(
        ['clients', 'transactions', 'queries', 'errors', 'blocked', 'busy_seconds', 'rows', 'bytes', 'uptime_seconds'],
        [[sum((t) => t.clients), sum((t) => t.transactions), sum((t) => t.queries), sum((t) => t.errors), target.blockedStatements, Math.round(sum((t) => t.busySeconds) * 1000) / 1000, sum((t) => t.rows), sum((t) => t.bytes), Math.round((Date.now() - target.usage.startedAt) / 1000)]],
        'SHOW',
      );
    }
    case 'REPLICAS':
      return resultSet(
        ['backend', 'replica', 'host', 'port', 'up', 'reason', 'lag_bytes', 'latency_ms', 'inflight', 'units', 'failures', 'ejections'],
        target.replicaSets.flatMap((set) =>
          set.replicas.map((r) => [set.backend, r.name, r.host, r.port, set.eligible(r), r.ejectedUntil > Date.now() ? `ejected until ${new Date(r.ejectedUntil).toISOString()}` : r.broken ? 'connection failed; waiting for a health check' : r.reason, r.lagBytes, Math.round(r.latencyMs * 1000) / 1000, r.inflight, r.reads, r.failures, r.ejections]),
        ),
        'SHOW',
      );
    case 'STATEMENTS': {
      const ms = (x: number): number => Math.round(x * 1000) / 1000;
      return resultSet(
        ['statement', 'shareable', 'runs', 'latency_ms', 'p50_ms', 'p99_ms'],
        (target.classifier?.report(STATEMENT_ROWS) ?? []).map((r) => [r.shape.slice(0, 200), r.shareable, r.runs, ms(r.latencyMs), ms(r.p50Ms), ms(r.p99Ms)]),
        'SHOW',
      );
    }
    case 'CONFIG': {
      const rows: [string, string][] = [];
      flatten(target.config, '', rows);
      return resultSet(['key', 'value'], rows, 'SHOW');
    }
    default:
      throw new PgError(SqlState.SyntaxError, `SHOW ${what || '?'}: use SHOW POOLS, CLIENTS, SERVERS, TENANTS, STATS, REPLICAS, STATEMENTS or CONFIG`);
  }
}
