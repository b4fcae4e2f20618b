import type { Logger } from 'pino';
import { Histogram } from '../stats/histogram.js';
import { query } from '../protocol/messages.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { Request, SIMPLE, SKIP } from './pending.js';
import { ServerConnection, type ServerEndpoint, type ServerOwner } from './server-connection.js';
import { Gradient2Limit } from './limit.js';

export interface PoolSettings {
  size: number;
  queueTimeout: number;
  idleTimeout: number;
  mode: 'session' | 'transaction';
  sharedConnections: number;
}

export type AcquireCallback = (err: PgError | null, conn: ServerConnection | null) => void;

interface Waiter {
  cb: AcquireCallback;
  timer: NodeJS.Timeout;
  since: number;
  /** Tenant asking, and how many of this pool's connections it may hold at once (limits.poolShare). */
  tenant: string | undefined;
  limit: number;
}

/** Server connections to one (backend, database, user), handed out one client at a time. */
export class Pool {
  private readonly idle: ServerConnection[] = [];
  private readonly all = new Set<ServerConnection>();
  private readonly waiters: Waiter[] = [];
  /** Which tenant holds a connection, and how many each holds (for limits.poolShare). */
  private readonly holders = new Map<ServerConnection, string>();
  private readonly heldByTenant = new Map<string, number>();
  /** Connections several clients' units are pipelined on right now. */
  private readonly shared: ServerConnection[] = [];
  /** Shareable units waiting for the limit to admit them, oldest first. */
  private readonly sharedWaiting: { admit: () => void; timer: NodeJS.Timeout }[] = [];
  private admitting = false;
  private connecting = 0;
  /** ParameterStatus values of the first server connection, shown to clients at login. */
  serverParams: Map<string, string> | null = null;
  /** How long clients waited for a server connection. */
  readonly queueWait = new Histogram();
  /** Units pipelined on this pool's shared connections at once: adapts to their measured latency. */
  readonly sharedLimit = new Gradient2Limit();
  /** No new checkouts (config reload moved this pool's backend, or shutdown). */
  retired = false;

  constructor(
    readonly key: string,
    readonly endpoint: ServerEndpoint,
    public settings: PoolSettings,
    private readonly log: Logger,
    /** Server this pool connects to, as latency is labelled: the backend, or `backend:replica`. */
    readonly backendName = key.slice(0, key.indexOf('/')),
    /** Backend whose configuration this pool follows (a replica pool: the primary's). */
    readonly primaryBackend = backendName,
  ) {}

  get stats(): { total: number; idle: number; active: number; waiting: number; connecting: number } {
    return { total: this.all.size, idle: this.idle.length, active: this.all.size - this.idle.length, waiting: this.waiters.length, connecting: this.connecting };
  }

  /** Every server connection, for SHOW SERVERS. */
  get connections(): { backendPid: number; idle: boolean; prepared: number; bindingKept: boolean }[] {
    return [...this.all].map((c) => ({ backendPid: c.backendPid, idle: this.idle.includes(c), prepared: c.prepared.size, bindingKept: c.bindingInPlace !== null }));
  }

  /**
   * Hands over a server connection now when one is idle (and the tenant is within its share), else
   * queues the caller. Returns a cancel function.
   */
  acquire(cb: AcquireCallback, tenant?: string, limit = Infinity): () => void {
    if (this.retired) {
      cb(new PgError(SqlState.CannotConnectNow, `pool ${this.key} is shutting down`), null);
      return noop;
    }
    const waiter: Waiter = { cb, since: Date.now(), tenant, limit, timer: undefined as unknown as NodeJS.Timeout };
    if (this.idle.length > 0 && this.eligible(waiter)) {
      this.hand(waiter, this.idle.pop()!);
      return noop;
    }
    waiter.timer = setTimeout(() => {
      this.removeWaiter(waiter);
      const held = tenant === undefined ? 0 : (this.heldByTenant.get(tenant) ?? 0);
      const why = held >= limit
        ? `tenant "${tenant}" already holds its share of pool ${this.key} (${held} of ${this.settings.size}; limits.poolShare)`
        : `pool ${this.key}: ${this.all.size} of ${this.settings.size} in use`;
      cb(new PgError(SqlState.QueryCanceled, `no server connection became free within ${this.settings.queueTimeout} ms (${why})`, 'ERROR', undefined, 'raise pool.size or pool.queueTimeout, or shorten the transactions that hold connections'), null);
    }, this.settings.queueTimeout);
    this.waiters.push(waiter);
    this.grow();
    return () => {
      if (this.removeWaiter(waiter)) clearTimeout(waiter.timer);
    };
  }

  /**
   * A connection for a shareable unit (the caller checked sharedLimit.admits): the least loaded
   * shared one while the shared ones carry less than their share of the limit, else an idle one made
   * shared (up to pool.sharedConnections), else the least loaded shared one anyway, else a queued
   * wait like acquire().
   */
  acquireShared(cb: AcquireCallback): () => void {
    let best: ServerConnection | undefined;
    let usable = 0;
    for (const c of this.shared) {
      if (c.cancelling || c.settingsUnknown) continue;
      usable++;
      if (best === undefined || c.pending.length < best.pending.length) best = c;
    }
    const room = this.shared.length < this.settings.sharedConnections;
    const perConnection = Math.max(1, this.sharedLimit.limit / this.settings.sharedConnections);
    const crowded = this.sharedLimit.inflight >= perConnection * usable;
    if (best !== undefined && (!crowded || !room)) {
      cb(null, best);
      return noop;
    }
    if (room && this.idle.length > 0) {
      cb(null, this.share(this.idle.pop()!));
      return noop;
    }
    if (best !== undefined) {
      cb(null, best);
      return noop;
    }
    return this.acquire((err, conn) => cb(err, conn === null ? null : this.share(conn)));
  }

  /**
   * Waits for sharedLimit to admit one more unit: `admit` runs then (in order of arrival), or
   * `giveUp` after `maxWaitMs` (the pipeline may be held up by a statement that blocks). Returns a
   * cancel function.
   */
  waitForShared(admit: () => void, giveUp: () => void, maxWaitMs: number): () => void {
    const waiter = {
      admit,
      timer: setTimeout(() => {
        const i = this.sharedWaiting.indexOf(waiter);
        if (i !== -1) this.sharedWaiting.splice(i, 1);
        giveUp();
      }, maxWaitMs),
    };
    this.sharedWaiting.push(waiter);
    return () => {
      const i = this.sharedWaiting.indexOf(waiter);
      if (i === -1) return;
      this.sharedWaiting.splice(i, 1);
      clearTimeout(waiter.timer);
    };
  }

  /** A shared unit was sent; sharedFinished or sharedDropped ends it. */
  sharedStarted(): void {
    this.sharedLimit.started();
  }

  /** A shared unit was answered after `rttMs` (see Gradient2Limit.finished); waiting units move up. */
  sharedFinished(rttMs: number, inflightThen: number): void {
    this.sharedLimit.finished(rttMs, inflightThen);
    this.admitWaiting();
  }

  /** A shared unit will never be answered (its client or connection is gone). */
  sharedDropped(): void {
    this.sharedLimit.dropped();
    this.admitWaiting();
  }

  private admitWaiting(): void {
    if (this.admitting) return;
    this.admitting = true;
    try {
      while (this.sharedWaiting.length > 0 && this.sharedLimit.admits) {
        const waiter = this.sharedWaiting.shift()!;
        clearTimeout(waiter.timer);
        waiter.admit();
      }
    } finally {
      this.admitting = false;
    }
  }

  private share(conn: ServerConnection): ServerConnection {
    conn.detach();
    conn.shared = true;
    this.shared.push(conn);
    return conn;
  }

  /** A client's last unit on a shared connection finished: the connection goes back once nobody's units remain. */
  sharedDrained(conn: ServerConnection): void {
    if (!conn.shared || conn.pending.length > 0 || conn.cancelling) return;
    const i = this.shared.indexOf(conn);
    if (i !== -1) this.shared.splice(i, 1);
    this.release(conn);
  }

  /** Give a connection back. `reset` runs DISCARD ALL first (session mode). */
  release(conn: ServerConnection, reset = false): void {
    this.unhold(conn);
    conn.detach();
    if (conn.isClosed) return;
    if (this.retired || !conn.isIdle || conn.settingsUnknown) {
      this.destroy(conn);
      return;
    }
    if (reset) {
      this.resetThenRelease(conn);
      return;
    }
    const i = this.waiters.findIndex((w) => this.eligible(w));
    if (i !== -1) {
      const [waiter] = this.waiters.splice(i, 1);
      clearTimeout(waiter.timer);
      this.queueWait.observe((Date.now() - waiter.since) / 1000);
      this.hand(waiter, conn);
      return;
    }
    this.idle.push(conn);
  }

  private eligible(w: Waiter): boolean {
    return w.tenant === undefined || (this.heldByTenant.get(w.tenant) ?? 0) < w.limit;
  }

  private hand(w: Waiter, conn: ServerConnection): void {
    if (w.tenant !== undefined) {
      this.holders.set(conn, w.tenant);
      this.heldByTenant.set(w.tenant, (this.heldByTenant.get(w.tenant) ?? 0) + 1);
    }
    w.cb(null, conn);
  }

  private unhold(conn: ServerConnection): void {
    const tenant = this.holders.get(conn);
    if (tenant === undefined) return;
    this.holders.delete(conn);
    const n = (this.heldByTenant.get(tenant) ?? 1) - 1;
    if (n <= 0) this.heldByTenant.delete(tenant);
    else this.heldByTenant.set(tenant, n);
  }

  destroy(conn: ServerConnection): void {
    conn.close();
    this.forget(conn);
  }

  /** Close idle connections unused for longer than idleTimeout. */
  reapIdle(now = Date.now()): void {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i];
      if (now - conn.lastUsed > this.settings.idleTimeout) {
        this.idle.splice(i, 1);
        this.destroy(conn);
      }
    }
  }

  /** Stop handing out connections; close idle ones now and busy ones when they come back. */
  retire(): void {
    this.retired = true;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.cb(new PgError(SqlState.AdminShutdown, `pool ${this.key} was closed`), null);
    }
    for (const conn of this.idle.splice(0)) this.destroy(conn);
  }

  closeAll(): void {
    this.retire();
    for (const conn of [...this.all]) this.destroy(conn);
  }

  /** Number of connections held by clients. */
  get busy(): number {
    return this.all.size - this.idle.length;
  }

  private grow(): void {
    while (this.waiters.length > this.connecting && this.all.size + this.connecting < this.settings.size) {
      this.connecting++;
      ServerConnection.connect(this.endpoint).then(
        (conn) => {
          this.connecting--;
          if (this.retired) {
            conn.close();
            return;
          }
          this.all.add(conn);
          // In transaction mode a notification belongs to whoever LISTENed on the connection, not to
          // the client holding it now (LISTEN itself is refused there).
          conn.deliverNotifications = this.settings.mode === 'session';
          this.serverParams ??= new Map(conn.params);
          conn.onClose(() => this.forget(conn));
          this.release(conn);
        },
        (err: unknown) => {
          this.connecting--;
          const pgErr = err instanceof PgError ? err : new PgError(SqlState.ConnectionUnableToConnect, String(err));
          this.log.warn({ pool: this.key, err: pgErr.message }, 'server connection failed');
          // The backend is unreachable or refuses us: everyone waiting would fail the same way.
          for (const w of this.waiters.splice(0)) {
            clearTimeout(w.timer);
            w.cb(pgErr, null);
          }
        },
      );
    }
  }

  private forget(conn: ServerConnection): void {
    this.unhold(conn);
    const s = this.shared.indexOf(conn);
    if (s !== -1) this.shared.splice(s, 1);
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    // A tenant below its share again may take an idle connection it had to wait for.
    for (let w = this.waiters.findIndex((x) => this.eligible(x)); w !== -1 && this.idle.length > 0; w = this.waiters.findIndex((x) => this.eligible(x))) {
      const [waiter] = this.waiters.splice(w, 1);
      clearTimeout(waiter.timer);
      this.hand(waiter, this.idle.pop()!);
    }
    if (this.waiters.length > 0 && !this.retired) this.grow();
  }

  private removeWaiter(w: Waiter): boolean {
    const i = this.waiters.indexOf(w);
    if (i === -1) return false;
    this.waiters.splice(i, 1);
    return true;
  }

  private resetThenRelease(conn: ServerConnection): void {
    const pool = this;
    const owner: ServerOwner = {
      rowsReceived: 0,
      forward: noop,
      inject: noop,
      parameter: noop,
      serverError: noop,
      serverBackpressure: noop,
      lost: noop,
      proxyRequestFailed(code, message) {
        pool.log.warn({ pool: pool.key, code, message }, 'DISCARD ALL failed; closing the server connection');
        pool.destroy(conn);
      },
      ready() {
        if (conn.pending.length === 0) pool.release(conn);
      },
    };
    conn.attach(owner);
    conn.prepared.clear();
    conn.bindingInPlace = null;
    conn.pending.push(Request.Sync, SKIP | SIMPLE);
    conn.sendOwned(query('DISCARD ALL'));
  }
}

function noop(): void {}
