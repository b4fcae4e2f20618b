import net from 'node:net';
import tls from 'node:tls';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { ClientSession } from '../client/session.js';
import type { SessionHost } from '../client/session-host.js';
import { isEmbedded, type Config } from '../config/schema.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { Pool } from '../pool/pool.js';
import type { ServerEndpoint } from '../pool/server-connection.js';
import { startBackends, type RunningBackends } from './backends.js';
import { forwardCancel } from './cancel.js';
import { createJwtVerifier, type JwtVerifier } from '../auth/jwt.js';
import { Tenancy } from '../tenancy/tenancy.js';
import { UsageRegistry } from '../stats/usage.js';
import { UnitClassifier } from '../sql/classify.js';
import type http from 'node:http';
import { startAdminHttp } from '../admin/http.js';
import { createMetrics } from '../admin/metrics.js';
import type { AdminTarget, ClientInfo } from '../admin/console.js';
import { AuditLog, type AuditKind } from '../audit/log.js';
import { formatIssues, loadConfigFile } from '../config/load.js';
import { ReadClassifier } from '../routing/read-only.js';
import { ReadRouter } from '../routing/router.js';
import type { ReplicaSet } from '../routing/replicas.js';

/** The assembled proxy: listener, sessions, pools and the backends behind them. */
export class Proxy implements SessionHost {
  draining = false;
  tlsContext: tls.SecureContext | null;
  private readonly listener: net.Server;
  private readonly sessions = new Map<number, ClientSession>();
  private readonly pools = new Map<string, Pool>();
  private nextPid = 1;
  private readonly reaper: NodeJS.Timeout;
  /** Bumped on every reload that rebuilt tenancy: clients re-place themselves at their next checkout. */
  tenancyEpoch = 0;
  /** Connected clients per tenant (for limits.maxClients). */
  private readonly tenantClients = new Map<string, number>();
  /** Statements the guard refused since start. */
  blockedStatements = 0;
  readonly usage = new UsageRegistry();
  classifier: UnitClassifier | null = null;
  /** Parser verdicts for read routing; set when some backend lists replicas. */
  private readClassifier: ReadClassifier | null = null;
  /** Read routing per backend with replicas, made on first use. */
  private readonly routers = new Map<string, ReadRouter>();
  private adminHttp: http.Server | null = null;
  private auditLog: AuditLog | null = null;
  /** The file RELOAD reads (set by the CLI). */
  configFile: string | undefined;
  /** Paused tenants ('*': all) and the checkouts waiting for RESUME. */
  private readonly paused = new Set<string>();
  private readonly resumeWaiters = new Set<{ tenant: string; resume: () => void }>();

  private constructor(
    public config: Config,
    readonly log: Logger,
    private readonly backends: RunningBackends,
    public tenancy: Tenancy | null,
    public jwtVerifier: JwtVerifier | null,
  ) {
    this.tlsContext = makeTlsContext(config);
    this.listener = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.reaper = setInterval(() => {
      for (const pool of this.pools.values()) pool.reapIdle();
    }, 1000);
    this.reaper.unref();
    this.usage.start();
  }

  static async start(config: Config, log: Logger): Promise<Proxy> {
    const tenancy = await Tenancy.create(config);
    const jwtVerifier = config.jwt === undefined ? null : createJwtVerifier(config.jwt);
    const backends = await startBackends(config, log);
    const proxy = new Proxy(config, log, backends, tenancy, jwtVerifier);
    if (config.pool.multiplex || config.tenancy !== undefined) proxy.classifier = await UnitClassifier.create();
    if (hasReplicas(config)) proxy.readClassifier = await ReadClassifier.create();
    try {
      if (config.audit !== undefined) proxy.auditLog = await AuditLog.open(config.audit);
      await proxy.listen();
      const a = config.admin;
      if (a.port !== undefined) proxy.adminHttp = await startAdminHttp(a.host, a.port, proxy, createMetrics(proxy, a.metricsTopTenants), log);
    } catch (err) {
      proxy.listener.close();
      await proxy.auditLog?.close();
      await backends.stop();
      throw err;
    }
    return proxy;
  }

  get port(): number {
    const addr = this.listener.address();
    return typeof addr === 'object' && addr !== null ? addr.port : this.config.listen.port;
  }

  /** Port of the admin HTTP server, when one runs. */
  get adminPort(): number | undefined {
    const addr = this.adminHttp?.address();
    return typeof addr === 'object' && addr !== null ? addr.port : undefined;
  }

  get ready(): boolean {
    return !this.draining && this.listener.listening;
  }

  get clientCount(): number {
    return this.sessions.size;
  }

  /** Endpoint of a backend by name (embedded ones resolved to where they run). */
  endpointOf(backendName: string): { host: string; port: number } | undefined {
    return this.backends.address(backendName);
  }

  private listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen(this.config.listen.port, this.config.listen.host, () => {
        this.listener.off('error', reject);
        this.log.info({ host: this.config.listen.host, port: this.port }, 'pgtenant listening');
        resolve();
      });
    });
  }

  private accept(socket: net.Socket): void {
    const session = new ClientSession(socket, this);
    if (this.sessions.size >= this.config.listen.maxClients) {
      session.terminate(SqlState.TooManyConnections, `sorry, too many clients already (listen.maxClients is ${this.config.listen.maxClients})`);
    }
  }

  register(session: ClientSession): { pid: number; secret: number } {
    const pid = this.nextPid;
    this.nextPid = this.nextPid >= 0x7fffffff ? 1 : this.nextPid + 1;
    this.sessions.set(pid, session);
    return { pid, secret: randomInt(0x7fffffff) };
  }

  unregister(session: ClientSession): void {
    if (this.sessions.get(session.pid) === session) this.sessions.delete(session.pid);
    const tenant = session.tenant?.tenant;
    if (tenant !== undefined && session.admitted) {
      session.admitted = false;
      const n = (this.tenantClients.get(tenant) ?? 1) - 1;
      if (n <= 0) this.tenantClients.delete(tenant);
      else this.tenantClients.set(tenant, n);
    }
  }

  admitTenant(session: ClientSession, tenant: string, maxClients: number | undefined): void {
    const n = this.tenantClients.get(tenant) ?? 0;
    if (maxClients !== undefined && n >= maxClients) {
      throw new PgError(SqlState.TooManyConnections, `too many clients for tenant "${tenant}" (its limits.maxClients is ${maxClients})`, 'FATAL');
    }
    this.tenantClients.set(tenant, n + 1);
    session.admitted = true;
  }

  /** Records an event in the audit log, when one is configured. */
  audit(kind: AuditKind, fields: Record<string, unknown>): void {
    this.auditLog?.append({ kind, ...fields });
  }

  get adminTarget(): AdminTarget {
    return this;
  }

  clients(): ClientInfo[] {
    return [...this.sessions.values()].map((s) => ({
      pid: s.pid,
      user: s.user,
      tenant: s.tenant?.tenant ?? '',
      database: s.tenant?.placement.database ?? s.database,
      pool: s.pool?.key ?? '',
      state: s.adminConsole ? 'admin' : s.server !== null ? 'active' : s.waiting ? 'waiting' : 'idle',
      connectedAt: s.connectedAt,
      address: s.remoteAddress,
    }));
  }

  isPaused(tenant: string): boolean {
    return this.paused.has('*') || this.paused.has(tenant);
  }

  whenResumed(tenant: string, resume: () => void): (() => void) | null {
    if (!this.isPaused(tenant)) return null;
    const waiter = { tenant, resume };
    this.resumeWaiters.add(waiter);
    return () => void this.resumeWaiters.delete(waiter);
  }

  /** PAUSE: new transactions of the tenant (all tenants without one) wait; resolves once its running ones have finished. */
  async pause(tenant: string | undefined): Promise<void> {
    this.paused.add(tenant ?? '*');
    this.audit('admin', { action: 'pause', tenant: tenant ?? '*' });
    const busy = (): boolean => [...this.sessions.values()].some((s) => s.server !== null && s.tenant !== null && (tenant === undefined || s.tenant.tenant === tenant));
    while (busy() && this.paused.has(tenant ?? '*')) await sleep(10);
  }

  resume(tenant: string | undefined): void {
    if (tenant === undefined) this.paused.clear();
    else this.paused.delete(tenant);
    this.audit('admin', { action: 'resume', tenant: tenant ?? '*' });
    for (const w of [...this.resumeWaiters]) {
      if (this.isPaused(w.tenant)) continue;
      this.resumeWaiters.delete(w);
      w.resume();
    }
  }

  async reloadFromFile(): Promise<void> {
    if (this.configFile === undefined) throw new PgError(SqlState.FeatureNotSupported, 'RELOAD needs a config file; this proxy was started without one');
    const result = loadConfigFile(this.configFile);
    if (!result.ok) throw new PgError(SqlState.InvalidParameterValue, `config not reloaded: ${formatIssues(result.issues)}`);
    await this.reload(result.config);
  }

  /** KILL: disconnects every client of the tenant; returns how many. */
  kill(tenant: string): number {
    let n = 0;
    for (const s of [...this.sessions.values()]) {
      if (s.tenant?.tenant !== tenant) continue;
      s.terminate(SqlState.AdminShutdown, `terminating connection due to administrator command: KILL ${tenant}`);
      n++;
    }
    this.audit('admin', { action: 'kill', tenant, clients: n });
    return n;
  }

  statementBlocked(session: ClientSession, reason: string, fingerprint: string): void {
    this.blockedStatements++;
    this.audit('blocked', { tenant: session.tenant?.tenant, user: session.user, pid: session.pid, fingerprint, reason });
    this.log.warn({ tenant: session.tenant?.tenant, user: session.user, pid: session.pid, fingerprint, reason }, 'statement refused by the tenant guard');
  }

  /** Forwards a client's CancelRequest (see cancel.ts) when its key matches a session. */
  cancel(pid: number, secret: number): void {
    const session = this.sessions.get(pid);
    if (session && session.secret === secret) forwardCancel(session, this.log);
  }

  poolFor(user: string, database: string, backend?: string): Pool {
    const backendName = backend ?? this.config.route.backend ?? Object.keys(this.config.backends)[0];
    const endpoint = this.endpointFor(backendName, user, database);
    return this.poolByKey(`${backendName}/${database}/${endpoint.user}`, endpoint);
  }

  private poolByKey(key: string, endpoint: ServerEndpoint, backendName?: string, primaryBackend?: string): Pool {
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = new Pool(key, endpoint, this.config.pool, this.log, backendName, primaryBackend);
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Read routing for the backend of a primary pool; null when it has no replicas (or in session mode). */
  readRouterFor(pool: Pool): ReadRouter | null {
    if (this.readClassifier === null || this.config.pool.mode !== 'transaction' || pool.backendName !== pool.primaryBackend) return null;
    let router = this.routers.get(pool.backendName);
    if (router === undefined) {
      const backend = this.config.backends[pool.backendName];
      if (backend === undefined || isEmbedded(backend) || backend.replicas.length === 0) return null;
      router = new ReadRouter(pool.backendName, backend, this.readClassifier, (key, endpoint, name, primary) => this.poolByKey(key, endpoint, name, primary), this.log);
      this.routers.set(pool.backendName, router);
    }
    return router;
  }

  /** Replica sets of the backends read routing has served, for metrics. */
  get replicaSets(): ReplicaSet[] {
    return [...this.routers.values()].map((r) => r.set);
  }

  private endpointFor(backendName: string, user: string, database: string): ServerEndpoint {
    const backend = this.config.backends[backendName];
    const address = this.backends.address(backendName);
    if (backend === undefined || address === undefined) throw new PgError(SqlState.ConnectionUnableToConnect, `backend "${backendName}" is not configured`, 'FATAL');
    const login = this.config.users[user]?.backendUser ?? user;
    const password = this.config.users[login]?.password;
    const plaintext = password !== undefined && !password.startsWith('SCRAM-SHA-256$') && !/^md5[0-9a-f]{32}$/.test(password) ? password : undefined;
    if (isEmbedded(backend)) {
      return { ...address, user: login, password: plaintext, database, tls: { mode: 'disable' }, connectTimeout: backend.connectTimeout };
    }
    return {
      ...address,
      user: backend.user ?? login,
      password: backend.password ?? plaintext,
      database,
      tls: backend.tls,
      connectTimeout: backend.connectTimeout,
    };
  }

  /** SIGHUP: new settings for new transactions; clients stay connected. Pools whose backend changed are replaced. */
  async reload(config: Config): Promise<void> {
    const tenancy = await Tenancy.create(config);
    const jwtVerifier = config.jwt === undefined ? null : createJwtVerifier(config.jwt);
    if (config.pool.multiplex || config.tenancy !== undefined) this.classifier ??= await UnitClassifier.create();
    if (hasReplicas(config)) this.readClassifier ??= await ReadClassifier.create();
    const old = this.config;
    this.config = config;
    this.tenancy = tenancy;
    this.audit('reload', { file: this.configFile });
    const before = old.tenancy?.tenants ?? {};
    const after = config.tenancy?.tenants ?? {};
    for (const id of new Set([...Object.keys(before), ...Object.keys(after)])) {
      if (JSON.stringify(before[id]) !== JSON.stringify(after[id])) this.audit('placement', { tenant: id, before: before[id] ?? null, after: after[id] ?? null });
    }
    this.jwtVerifier = jwtVerifier;
    this.tenancyEpoch++;
    this.tlsContext = makeTlsContext(config);
    for (const [name, router] of this.routers) {
      if (JSON.stringify(old.backends[name]) === JSON.stringify(config.backends[name])) continue;
      router.stop();
      this.routers.delete(name);
    }
    for (const [key, pool] of this.pools) {
      const backendName = pool.primaryBackend;
      const before = JSON.stringify(old.backends[backendName]);
      const after = JSON.stringify(config.backends[backendName]);
      if (before !== after) {
        if (isEmbedded(config.backends[backendName] ?? { host: '' }) || after === undefined) {
          this.log.warn({ backend: backendName }, 'backend definition changed or removed; restart pgtenant to apply this part');
          continue;
        }
        this.pools.delete(key);
        pool.retire();
        continue;
      }
      pool.settings = config.pool;
    }
    this.log.info('configuration reloaded');
  }

  /** SIGTERM: stop accepting, let running transactions finish up to `timeoutMs`, then close everything. */
  async shutdown(timeoutMs = this.config.pool.shutdownTimeout): Promise<void> {
    this.draining = true;
    this.listener.close();
    const deadline = Date.now() + timeoutMs;
    while (this.sessions.size > 0 && Date.now() < deadline) {
      for (const session of this.sessions.values()) {
        if (session.server === null && !session.inDeferredTransaction) session.terminate(SqlState.AdminShutdown, 'terminating connection due to administrator command: pgtenant is shutting down');
      }
      if (this.sessions.size > 0) await sleep(50);
    }
    for (const session of this.sessions.values()) session.terminate(SqlState.AdminShutdown, 'terminating connection due to administrator command: pgtenant shutdown deadline reached');
    await this.close();
  }

  /** Close at once (tests, fatal errors). */
  async close(): Promise<void> {
    this.draining = true;
    clearInterval(this.reaper);
    this.usage.stop();
    this.adminHttp?.close();
    this.adminHttp?.closeAllConnections();
    const auditLog = this.auditLog;
    this.auditLog = null;
    await auditLog?.close();
    this.listener.close();
    for (const session of [...this.sessions.values()]) session.closeQuietly();
    for (const router of this.routers.values()) router.stop();
    this.routers.clear();
    for (const pool of this.pools.values()) pool.closeAll();
    this.pools.clear();
    await this.backends.stop();
  }

  /** Pools by key, for tests and the admin console. */
  get poolList(): Pool[] {
    return [...this.pools.values()];
  }
}

function makeTlsContext(config: Config): tls.SecureContext | null {
  const t = config.listen.tls;
  if (!t) return null;
  return tls.createSecureContext({ cert: readFileSync(t.cert), key: readFileSync(t.key), ca: t.ca ? readFileSync(t.ca) : undefined });
}

function hasReplicas(config: Config): boolean {
  return Object.values(config.backends).some((b) => !isEmbedded(b) && b.replicas.length > 0);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
