import type net from 'node:net';
import type { Logger } from 'pino';
import { Frontend, TxStatus } from '../protocol/codes.js';
import { Framer, typeSet, type FrameHandler } from '../protocol/framer.js';
import { authenticationOk, backendKeyData, errorResponse, parameterStatus, readyForQuery } from '../protocol/messages.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import type { Pool } from '../pool/pool.js';
import type { ProxyRequest, ServerConnection, ServerOwner } from '../pool/server-connection.js';
import { canonicalName, isClientParameter, pinReportedParameters } from './params.js';
import { readStartupPackets, type StartupHandler } from './startup.js';
import { ClientLogin } from './login.js';
import { ClientSocket } from './client-socket.js';
import type { SessionHost } from './session-host.js';
import { TransactionRelay } from './relay.js';
import { serverParamsForLogin } from './settings-check.js';
import type { TenantContext } from '../tenancy/tenancy.js';
import { NO_TENANT, TenantUsage, type UsageRegistry } from '../stats/usage.js';
import type { Histogram } from '../stats/histogram.js';
import type { ReadRouter } from '../routing/router.js';
import { ADMIN_PARAMS, AdminConsoleSession } from '../admin/console-session.js';

type State = 'startup' | 'authenticating' | 'connecting' | 'ready' | 'closed';

/** Client messages that may stream through in pieces. */
const STREAMABLE = typeSet(Frontend.CopyData, Frontend.Bind);

/** One client connection: startup, TLS, authentication, then its messages relayed to pooled servers. */
export class ClientSession implements FrameHandler, ServerOwner {
  state: State = 'startup';
  user = '';
  database = '';
  pid = 0;
  secret = 0;
  readonly connectedAt = Date.now();
  /** The server connection this client holds right now. */
  server: ServerConnection | null = null;
  pool: Pool | null = null;
  /** The tenant this client is bound to; null for tenancy-exempt users and proxies without tenancy. */
  tenant: TenantContext | null = null;
  private tenantEpoch = 0;
  rowsReceived = 0;
  /** Where this client's work is counted; replaced at login once the tenant is known. */
  usage = new TenantUsage(NO_TENANT);
  /** The admin console this client talks to instead of a database. */
  private admin: AdminConsoleSession | null = null;
  /** Counted in the proxy's per-tenant client numbers. */
  admitted = false;
  /** Settings the client expects on every server connection (startup values plus its own SETs). */
  settings = new Map<string, string>();
  private startupSettings = new Map<string, string>();
  private readonly socket: ClientSocket;
  private startupBytes: Buffer | null = null;
  private framer: Framer | null = null;
  private login: ClientLogin | null = null;
  private relay: TransactionRelay | null = null;

  constructor(
    socket: net.Socket,
    private readonly host: SessionHost,
  ) {
    this.socket = new ClientSocket(socket, {
      data: (chunk) => this.onData(chunk),
      full: () => this.server?.pauseInput(),
      drain: () => this.server?.resumeInput(),
      close: () => this.onSocketClosed(),
      error: (err) => this.log.debug({ err: err.message, user: this.user }, 'client socket error'),
    });
  }

  /** Connected to the admin console instead of a database. */
  get adminConsole(): boolean {
    return this.admin !== null;
  }

  get log(): Logger {
    return this.host.log;
  }

  private onData(chunk: Buffer): void {
    try {
      if (this.state === 'startup') this.startupData(chunk);
      else this.framer?.push(chunk);
    } catch (err) {
      this.failOn(err);
    }
  }

  /**
   * What this client's work threw fails this client alone: also work run when a server
   * connection, a pool, another client or a timer calls back, so that it never reaches them.
   */
  failOn(err: unknown): void {
    this.fail(err instanceof PgError ? err : new PgError(SqlState.InternalError, (err as Error).message, 'FATAL'));
    if (!(err instanceof PgError)) this.log.error({ err }, 'unexpected error in client session');
  }

  // ---- startup phase: untyped packets ----

  private startupData(chunk: Buffer): void {
    const buf = this.startupBytes === null ? chunk : Buffer.concat([this.startupBytes, chunk]);
    this.startupBytes = readStartupPackets(buf, this.startupHandler);
  }

  private readonly startupHandler: StartupHandler = {
    ssl: () => this.socket.answerSslRequest(this.host.tlsContext),
    gss: () => this.socket.refuseGssEncryption(),
    cancel: (pid, secret) => {
      this.host.cancel(pid, secret);
      this.closeQuietly();
    },
    startup: (packet, rest) => {
      this.startup(packet.minor, packet.params, packet.protocolOptions);
      if (rest.length > 0) this.framer?.push(rest);
    },
  };

  get remoteAddress(): string {
    return this.socket.remoteAddress;
  }

  /** The shared connection this client's units are pipelined on now, and its pool; null when none. */
  get sharedServer(): { conn: ServerConnection; pool: Pool } | null {
    return this.relay?.sharedServer ?? null;
  }

  /** SNI name the client sent in its TLS handshake, if any. */
  get serverName(): string | undefined {
    return this.socket.serverName;
  }

  private startup(minor: number, params: Map<string, string>, protocolOptions: string[]): void {
    this.state = 'authenticating';
    this.framer = new Framer(this, STREAMABLE);
    const login = new ClientLogin(this, this.host);
    this.login = login;
    login.start(minor, params, protocolOptions);
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  get encrypted(): boolean {
    return this.socket.encrypted;
  }

  /** Messages from now on wait for login to complete (a JWT may still be verified). */
  authenticated(): void {
    this.login = null;
    this.state = 'connecting';
  }

  /** Logged in: admitted under the tenant's client limit, then connected to its pool. */
  loggedIn(target: { admin: true } | { admin: false; tenant: TenantContext | null }): void {
    if (target.admin) {
      this.admin = new AdminConsoleSession(this.host.adminTarget, (m) => this.socket.out.push(m), () => this.state === 'closed');
      this.welcome(ADMIN_PARAMS);
      return;
    }
    const tenant = target.tenant;
    if (tenant !== null) {
      this.tenant = tenant;
      this.tenantEpoch = this.host.tenancyEpoch;
      this.host.admitTenant(this, tenant.tenant, tenant.placement.limits.maxClients);
      this.log.debug({ user: this.user, tenant: tenant.tenant, source: tenant.source, placement: tenant.placement.kind }, 'tenant bound');
    }
    this.connect();
  }

  private currentPool(): Pool {
    const t = this.tenant;
    return t === null ? this.host.poolFor(this.user, this.database) : this.host.poolFor(this.user, t.placement.database, t.placement.backend);
  }

  /** After authentication: find the pool, learn the server's parameters, then say ReadyForQuery. */
  private connect(): void {
    let pool: Pool;
    try {
      pool = this.currentPool();
    } catch (err) {
      this.fail(err instanceof PgError ? err : new PgError(SqlState.InternalError, String(err), 'FATAL'));
      return;
    }
    this.pool = pool;
    const p = this.host.config.pool;
    this.relay = new TransactionRelay(this, pool, p.mode === 'transaction', p.maxPreparedStatements, p.multiplex ? this.host.classifier : null, p.shareBelow, this.host.classifier);
    // Called back by the pool or a settings check: what the welcome throws is this client's.
    serverParamsForLogin(
      pool,
      this.settings,
      (params) => {
        if (this.state === 'closed') return;
        try {
          this.welcome(params);
        } catch (err) {
          this.failOn(err);
        }
      },
      (err) => {
        if (this.state === 'closed') return;
        this.log.info({ user: this.user, code: err.code }, err.message);
        this.fail(err);
      },
    );
  }

  private welcome(serverParams: Map<string, string>): void {
    const key = this.host.register(this);
    this.usage = this.host.usage.of(this.tenant?.tenant ?? NO_TENANT);
    this.usage.clients++;
    if (this.tenant !== null) this.usage.placement = this.tenant.placement.kind;
    this.host.audit('connect', { pid: this.pid, user: this.user, tenant: this.tenant?.tenant, source: this.tenant?.source, database: this.tenant?.placement.database ?? this.database, address: this.remoteAddress, admin: this.adminConsole || undefined });
    this.pid = key.pid;
    this.secret = key.secret;
    this.socket.out.push(authenticationOk());
    for (const [k, v] of pinReportedParameters(serverParams, this.settings)) this.socket.out.push(parameterStatus(k, v));
    this.startupSettings = new Map(this.settings);
    this.socket.out.push(backendKeyData(this.pid, this.secret));
    this.socket.out.push(readyForQuery(TxStatus.Idle));
    this.state = 'ready';
    this.log.debug({ user: this.user, database: this.database, pid: this.pid }, 'client ready');
    this.relay?.start();
  }

  // ---- FrameHandler: typed client messages ----

  message(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === 'authenticating') {
      if (type !== Frontend.Password) throw new PgError(SqlState.ProtocolViolation, `expected password response, got message type "${String.fromCharCode(type)}"`, 'FATAL');
      this.login!.password(buf.subarray(start + 5, end));
      return;
    }
    if (this.admin !== null && this.state === 'ready') {
      if (type === Frontend.Terminate) this.closeQuietly();
      else this.admin.message(type, buf, start, end);
      return;
    }
    if (this.relay === null || this.state !== 'ready') {
      if (type === Frontend.Terminate) this.closeQuietly();
      else throw new PgError(SqlState.ProtocolViolation, 'unexpected message before login completed', 'FATAL');
      return;
    }
    this.relay.message(type, buf, start, end);
  }

  largeStart(type: number, total: number, head: Buffer): void {
    if (this.relay === null) throw new PgError(SqlState.ProtocolViolation, 'unexpected large message before login completed', 'FATAL');
    this.relay.largeStart(type, total, head);
  }

  largePart(buf: Buffer, start: number, end: number, last: boolean): void {
    this.relay?.largePart(buf, start, end, last);
  }

  // ---- ServerOwner: what the held server connection reports ----

  forward(buf: Buffer, start: number, end: number): void {
    if (this.state === 'closed') return;
    this.usage.bytes += end - start;
    this.socket.out.slice(buf, start, end);
  }

  inject(buf: Buffer): void {
    if (this.state !== 'closed') this.socket.out.push(buf);
  }

  ready(status: number, proxyOwn: boolean): void {
    try {
      this.relay?.serverReady(status, proxyOwn);
    } catch (err) {
      this.failOn(err);
    }
  }

  /** Between a BEGIN pgtenant answered itself and the next statement: in a transaction, holding no server. */
  get inDeferredTransaction(): boolean {
    return this.relay?.inDeferredTransaction === true;
  }

  /** The client has sent work and waits for a server connection. */
  get waiting(): boolean {
    return this.server === null && this.relay !== null && !this.relay.isIdle;
  }

  /** Read routing for the client's pool, when its backend has replicas. */
  readRouter(pool: Pool): ReadRouter | null {
    return this.host.readRouterFor(pool);
  }

  /** The user is configured readOnly: all its units go to a replica when one is eligible. */
  get readOnlyUser(): boolean {
    return this.host.config.users[this.user]?.readOnly === true;
  }

  /** An admin PAUSE holds this tenant's new work. */
  get paused(): boolean {
    return this.tenant !== null && this.host.adminTarget.isPaused(this.tenant.tenant);
  }

  parameter(name: string, value: string): void {
    if (isClientParameter(name)) this.settings.set(canonicalName(name), value);
  }

  lost(err: PgError): void {
    this.relay?.serverLost();
    this.server = null;
    this.log.warn({ user: this.user, pid: this.pid, err: err.message }, 'server connection lost while a client held it');
    this.fail(new PgError(SqlState.ConnectionFailure, `server connection lost: ${err.message}`, 'FATAL'));
  }

  serverBackpressure(full: boolean): void {
    if (full) this.socket.pause();
    else this.socket.resume();
  }

  serverError(code: string): void {
    this.usage.error(code);
  }

  proxyRequestFailed(code: string, message: string, what: ProxyRequest): void {
    // A failed binding may leave another tenant's context on the server connection, a failed
    // deferred BEGIN would let statements the client sent inside its transaction run outside one,
    // and failed settings (checked at login, so another server refused them) would let them run
    // without: in each case neither the connection nor the client may go on.
    this.log.error({ user: this.user, pid: this.pid, tenant: this.tenant?.tenant, code, message }, `${what === 'binding' ? 'tenant binding' : what === 'begin' ? 'deferred BEGIN' : 'client settings'} failed; closing the client and its server connection`);
    const server = this.server;
    this.server = null;
    server?.close();
    if (what === 'settings') {
      this.fail(new PgError(code, `pgtenant could not apply the client's settings on the server connection: ${message}`, 'FATAL'));
      return;
    }
    const reason = what === 'binding' ? `pgtenant could not bind tenant "${this.tenant?.tenant}" to the server connection` : 'pgtenant could not start the transaction on the server';
    this.fail(new PgError(SqlState.ConnectionFailure, `${reason}: ${message}`, 'FATAL'));
  }

  /** A statement the guard refused. */
  statementBlocked(reason: string, fingerprint: string): void {
    this.usage.blocked++;
    this.host.statementBlocked(this, reason, fingerprint);
  }

  whenResumed(tenant: string, resume: () => void): (() => void) | null {
    return this.host.whenResumed(tenant, resume);
  }

  get usageRegistry(): UsageRegistry {
    return this.host.usage;
  }

  backendLatency(backend: string): Histogram {
    return this.host.usage.backend(backend);
  }

  // ---- used by the relay ----

  send(buf: Buffer): void {
    this.socket.out.push(buf);
  }

  /** Answers wait in memory for the client to read them (its socket's buffer is full). */
  get outputBackedUp(): boolean {
    return this.socket.backedUp;
  }

  pauseInput(): void {
    this.socket.pause();
  }

  resumeInput(): void {
    this.socket.resume();
  }

  /** Whether a reload since this client's last checkout may have moved it. */
  get placementStale(): boolean {
    return this.tenant !== null && this.tenantEpoch !== this.host.tenancyEpoch;
  }

  /** The pool (and, for tenants, placement and binding) for this client under the current configuration. */
  repool(): Pool {
    const tenancy = this.host.tenancy;
    if (this.tenant !== null && tenancy !== null && this.tenantEpoch !== this.host.tenancyEpoch) {
      this.tenant = { ...tenancy.placeTenant(this.tenant.tenant, this.tenant.claims), source: this.tenant.source };
      this.tenantEpoch = this.host.tenancyEpoch;
    }
    this.pool = this.currentPool();
    return this.pool;
  }

  /** DISCARD ALL from the client: back to the settings it logged in with. */
  resetSettings(): void {
    this.settings = new Map(this.startupSettings);
  }

  // ---- ending ----

  /** Send a FATAL (or ERROR) and close. */
  fail(err: PgError): void {
    if (this.state === 'closed') return;
    this.socket.out.push(errorResponse({ severity: err.severity, code: err.code, message: err.message, detail: err.detail, hint: err.hint }));
    if (err.severity === 'FATAL') this.closeQuietly();
  }

  /** Close with a FATAL message, e.g. on shutdown. */
  terminate(code: string, message: string): void {
    this.fail(new PgError(code, message, 'FATAL'));
  }

  closeQuietly(): void {
    if (this.state === 'closed') return;
    this.socket.end();
    this.onSocketClosed();
  }

  private onSocketClosed(): void {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    if (wasReady) {
      this.usage.clients--;
      this.host.audit('disconnect', { pid: this.pid, user: this.user, tenant: this.tenant?.tenant });
    }
    this.relay?.clientGone();
    this.host.unregister(this);
    this.socket.destroyLater();
  }
}
