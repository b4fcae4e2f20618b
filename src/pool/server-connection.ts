import type net from 'node:net';
import { Backend, TxStatus } from '../protocol/codes.js';
import { Framer, typeSet, type FrameHandler } from '../protocol/framer.js';
import { Outbox } from '../protocol/outbox.js';
import { cstringEnd, parseErrorFields, readCString } from '../protocol/read.js';
import { startupMessage, TERMINATE } from '../protocol/messages.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { authenticateToBackend } from './backend-auth.js';
import { openServerSocket } from './server-socket.js';
import { BINDING, BLOCKED, PendingRequests, Request, SIMPLE, SKIP, SYNTHETIC, TX_START } from './pending.js';
import { CLOSE_COMPLETE, PARSE_COMPLETE } from '../protocol/messages.js';

/** Whoever holds the server connection right now (a client session) hears about its responses. */
export interface ServerOwner {
  /** DataRows this owner has been sent (usage accounting; monotonic). */
  rowsReceived: number;
  /** Server bytes to pass to the client untouched. */
  forward(buf: Buffer, start: number, end: number): void;
  /** A response the proxy makes itself, in order with the server's. */
  inject(buf: Buffer): void;
  /** ReadyForQuery went by (`proxyOwn`: it ended a request pgtenant made); the owner decides whether to give the connection back. */
  ready(status: number, proxyOwn: boolean): void;
  /** The server reported a session parameter change while the owner held it. */
  parameter(name: string, value: string): void;
  /** The server connection died while held. */
  lost(err: PgError): void;
  /** The server's socket buffer is full (true) or drained (false): stop or resume reading the client. */
  serverBackpressure(full: boolean): void;
  /** The server sent the client an error (for usage accounting). */
  serverError(code: string): void;
  /** A request the proxy made on its own failed (not shown to the client as it is); `what` it was. */
  proxyRequestFailed(code: string, message: string, what: ProxyRequest): void;
}

/** Requests pgtenant makes on a client's behalf: the tenant binding, a deferred BEGIN, or settings. */
export type ProxyRequest = 'binding' | 'begin' | 'settings';

export interface ServerEndpoint {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  tls: { mode: 'disable' | 'prefer' | 'require' | 'verify-full'; ca?: string };
  connectTimeout: number;
  /** Extra startup parameters (application_name etc.). */
  params?: Record<string, string>;
}

type State = 'connecting' | 'ready' | 'closed';

/** Server messages that may stream through in pieces instead of being held whole. */
const STREAMABLE = typeSet(Backend.DataRow, Backend.CopyData, Backend.NoticeResponse, Backend.FunctionCallResponse);

let nextId = 1;

/** One connection to a Postgres server: startup and auth, then framing and response bookkeeping. */
export class ServerConnection implements FrameHandler {
  readonly id = nextId++;
  readonly params = new Map<string, string>();
  /** What the server reported at connect: what RESET ALL brings the settings back to. */
  private readonly startParams = new Map<string, string>();
  readonly pending = new PendingRequests();
  /** Server-side prepared statement names, oldest use first. */
  readonly prepared = new Map<string, true>();
  /** Whether NotificationResponses reach the client holding the connection (session mode). */
  deliverNotifications = true;
  /** Tenant binding statements prepared here (kept apart from the LRU of client statements). */
  readonly bindings = new Set<string>();
  backendPid = 0;
  backendSecret = 0;
  txStatus: number = TxStatus.Idle;
  owner: ServerOwner | null = null;
  /** Several clients' units are pipelined here: each response goes to the owner of its request. */
  get shared(): boolean {
    return this.out.perTurn;
  }

  set shared(on: boolean) {
    this.out.perTurn = on;
  }
  /**
   * The tenant binding in effect here, known while only shared units (statements that cannot change
   * session state) ran since it was sent, also across a release: a shared unit with the same binding
   * needs none of its own. null after any exclusive use.
   */
  bindingInPlace: Buffer | null = null;
  /**
   * Tenant bindings sent here whose answers are still to come, oldest first, each with the owners
   * of the units sent after it that took it as in place instead of sending their own. A binding
   * can fail, leaving the context before it in place: those units must then not be answered.
   */
  readonly bindingsPending: { reliant: ServerOwner[] }[] = [];
  /**
   * A cancel request for the one client whose units are here is under way: no other client's unit
   * may be placed here, nor the connection given back, until the server has taken it.
   */
  cancelling = false;
  /**
   * A statement pgtenant sent to bring the settings here in line failed: which are in effect is not
   * known, so no new unit comes here and the pool closes the connection when it gets it back.
   */
  settingsUnknown = false;
  /**
   * The tenant whose last unit here may have changed settings pgtenant does not track (a `SET` the
   * server does not report, `set_config`, a function; '' for a session without a tenant): before
   * another tenant's unit, RESET ALL.
   */
  settingsChangedBy: string | null = null;
  /**
   * When the last pipelined unit here was answered (performance.now()): the server starts on a
   * unit when it is done with the one before, so a unit's own cost is counted from then.
   */
  lastAnsweredAt = 0;
  /** Owner of the large message in flight. */
  private largeOwner: ServerOwner | null = null;
  lastUsed = Date.now();
  readonly createdAt = Date.now();
  private state: State = 'connecting';
  private readonly framer = new Framer(this, STREAMABLE);
  private readonly out: Outbox;
  /** Whether the parts of the large message in flight go to the owner. */
  private largeForward = false;
  private closeListeners: ((err?: Error) => void)[] = [];

  private constructor(
    private socket: net.Socket,
    readonly endpoint: ServerEndpoint,
  ) {
    this.out = new Outbox(socket, () => this.onOutFull());
  }

  static async connect(ep: ServerEndpoint): Promise<ServerConnection> {
    const deadline = Date.now() + ep.connectTimeout;
    const socket = await openServerSocket(ep, deadline);
    try {
      const startupParams: Record<string, string> = { user: ep.user, database: ep.database, ...ep.params };
      socket.write(startupMessage(startupParams));
      const result = await authenticateToBackend(socket, ep, deadline);
      const conn = new ServerConnection(socket, ep);
      for (const [k, v] of result.params) {
        conn.params.set(k, v);
        conn.startParams.set(k, v);
      }
      conn.backendPid = result.pid;
      conn.backendSecret = result.secret;
      conn.start(result.rest);
      return conn;
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  private start(rest: Buffer): void {
    this.state = 'ready';
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('close', () => this.onClosed(new PgError(SqlState.ConnectionFailure, `server connection to ${this.endpoint.host}:${this.endpoint.port} closed`, 'FATAL')));
    this.socket.on('error', () => undefined);
    this.socket.on('drain', () => this.owner?.serverBackpressure(false));
    if (rest.length > 0) this.onData(rest);
  }

  private onOutFull(): void {
    this.owner?.serverBackpressure(true);
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** RESET ALL was sent: the settings are as the connection started, which the client's are compared to from now on. */
  settingsReset(): void {
    this.settingsChangedBy = null;
    this.params.clear();
    for (const [k, v] of this.startParams) this.params.set(k, v);
  }

  /** The next response the server owes is for a statement pgtenant sent itself. */
  get runningOwnRequests(): boolean {
    return (this.pending.headFlags() & SKIP) !== 0;
  }

  /** Nothing outstanding, not inside a transaction, nothing sent that awaits a Sync: can go back to the pool. */
  get isIdle(): boolean {
    return this.pending.length === 0 && this.txStatus === TxStatus.Idle && !this.pending.awaitingSync;
  }

  onClose(listener: (err?: Error) => void): void {
    this.closeListeners.push(listener);
  }

  attach(owner: ServerOwner): void {
    this.owner = owner;
    this.pending.currentOwner = owner;
    this.lastUsed = Date.now();
  }

  detach(): void {
    this.owner = null;
    this.shared = false;
    this.pending.currentOwner = undefined;
    this.lastUsed = Date.now();
    if (this.socket.isPaused()) this.socket.resume();
  }

  send(buf: Buffer, start: number, end: number): void {
    this.out.slice(buf, start, end);
  }

  sendOwned(buf: Buffer): void {
    this.out.push(buf);
  }

  /** Write what is queued now (before a pool hands the connection on, for instance). */
  flush(): void {
    this.out.flush();
  }

  /** Stop reading responses while the client cannot take them. */
  pauseInput(): void {
    this.socket.pause();
  }

  resumeInput(): void {
    this.socket.resume();
  }

  /** A request the proxy answers itself; if it is next in line, answer now. */
  pushSynthetic(kind: typeof Request.Parse | typeof Request.Close): void {
    this.pending.push(kind, SYNTHETIC);
    if (this.pending.length === 1) this.drainSynthetic();
  }

  close(): void {
    if (this.state === 'closed') return;
    if (!this.socket.destroyed && this.socket.writable) this.socket.end(TERMINATE);
    this.socket.destroy();
    this.onClosed();
  }

  private onClosed(err?: PgError): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.socket.destroy();
    const owners = this.shared ? (this.pending.pendingOwners() as ServerOwner[]) : this.owner === null ? [] : [this.owner];
    this.owner = null;
    if (err) for (const owner of owners) owner.lost(err);
    for (const l of this.closeListeners) l(err);
    this.closeListeners = [];
  }

  private onData(chunk: Buffer): void {
    try {
      this.framer.push(chunk);
    } catch (err) {
      this.onClosed(err instanceof PgError ? err : new PgError(SqlState.ProtocolViolation, String(err), 'FATAL'));
    }
  }

  // ---- FrameHandler: every server message lands here ----

  /** Who the next response is for. */
  private headOwner(): ServerOwner | null {
    return this.shared ? ((this.pending.headOwner() as ServerOwner | undefined) ?? null) : this.owner;
  }

  message(type: number, buf: Buffer, start: number, end: number): void {
    const owner = this.headOwner();
    if (owner === null) {
      this.idleMessage(type, buf, start, end);
      return;
    }
    const pending = this.pending;
    const head = pending.headKind();
    const skip = (pending.headFlags() & SKIP) !== 0;
    switch (type) {
      case Backend.ParseComplete:
      case Backend.BindComplete:
      case Backend.CloseComplete:
      case Backend.NoData:
        this.complete(owner, skip, buf, start, end);
        return;
      case Backend.RowDescription:
        if (head === Request.Describe) this.complete(owner, skip, buf, start, end);
        else if (!skip) owner.forward(buf, start, end);
        return;
      case Backend.CommandComplete:
      case Backend.EmptyQueryResponse:
      case Backend.PortalSuspended:
        if (head === Request.Execute) this.complete(owner, skip, buf, start, end);
        else if (!skip) owner.forward(buf, start, end);
        return;
      case Backend.ErrorResponse:
        this.errorResponse(owner, head, skip, buf, start, end);
        return;
      case Backend.ReadyForQuery:
        this.txStatus = buf[start + 5];
        if ((pending.headFlags() & BINDING) !== 0) this.bindingsPending.shift();
        this.complete(owner, skip, buf, start, end);
        owner.ready(this.txStatus, skip);
        return;
      case Backend.ParameterStatus: {
        const nameEnd = cstringEnd(buf, start + 5, end);
        if (nameEnd !== -1) {
          const name = buf.toString('utf8', start + 5, nameEnd - 1);
          const value = readCString(buf, nameEnd, end) ?? '';
          // A shared connection's settings are tracked as sent: reports come back after later units were sent.
          if (!this.shared) this.params.set(name, value);
          // Even for the proxy's own SETs: the client adopts the server's normalized spelling.
          owner.parameter(name, value);
        }
        if (!skip) owner.forward(buf, start, end);
        return;
      }
      case Backend.DataRow:
        if (skip) return;
        owner.rowsReceived++;
        owner.forward(buf, start, end);
        return;
      case Backend.NotificationResponse:
        if (this.deliverNotifications) owner.forward(buf, start, end);
        return;
      default:
        if (!skip) owner.forward(buf, start, end);
    }
  }

  largeStart(type: number, _total: number, head: Buffer): void {
    this.largeOwner = this.headOwner();
    if (type === Backend.DataRow && this.largeOwner !== null && (this.pending.headFlags() & SKIP) === 0) this.largeOwner.rowsReceived++;
    this.largeForward = this.largeOwner !== null && (this.pending.headFlags() & SKIP) === 0;
    if (this.largeForward) this.largeOwner!.forward(head, 0, head.length);
  }

  largePart(buf: Buffer, start: number, end: number): void {
    if (this.largeForward && this.largeOwner) this.largeOwner.forward(buf, start, end);
  }

  private complete(owner: ServerOwner, skip: boolean, buf: Buffer, start: number, end: number): void {
    if (!skip) owner.forward(buf, start, end);
    this.pending.shift();
    this.drainSynthetic();
  }

  private errorResponse(owner: ServerOwner, head: number, skip: boolean, buf: Buffer, start: number, end: number): void {
    const flags = this.pending.headFlags();
    if ((flags & BLOCKED) !== 0) {
      owner.inject(this.pending.headPayload()!);
    } else if (skip && !(head === Request.Parse && (flags & BINDING) === 0)) {
      // The proxy's own request failed; an injected Parse of the client's statement is the exception: the client must see why its Bind fails.
      this.reportSwallowed(owner, flags, buf, start, end);
    } else {
      owner.forward(buf, start, end);
      owner.serverError(parseErrorFields(buf, start + 5, end).get('C') ?? SqlState.InternalError);
    }
    if ((flags & SIMPLE) !== 0 || head === Request.Sync || head === 0) return; // ReadyForQuery ends it
    // Extended protocol: the server now ignores everything up to the next Sync, a simple Query or
    // FunctionCall included (they get no answer at all), and creates none of the statements parsed.
    const pending = this.pending;
    while (pending.length > 0 && (pending.headKind() !== Request.Sync || (pending.headFlags() & SIMPLE) !== 0)) {
      const parsed = pending.headKind() === Request.Parse ? pending.headName() : undefined;
      if (parsed !== undefined) this.prepared.delete(parsed);
      pending.shift();
    }
    // What the client sends from now on, up to its Sync, is ignored too.
    if (pending.length === 0) pending.ignoreUntilSync();
  }

  private reportSwallowed(owner: ServerOwner, flags: number, buf: Buffer, start: number, end: number): void {
    const f = parseErrorFields(buf, start + 5, end);
    const code = f.get('C') ?? SqlState.InternalError;
    const message = f.get('M') ?? 'unknown error';
    const what = (flags & BINDING) !== 0 ? 'binding' : (flags & TX_START) !== 0 ? 'begin' : 'settings';
    if (what !== 'binding') {
      if (what === 'settings') this.settingsUnknown = true;
      owner.proxyRequestFailed(code, message, what);
      return;
    }
    // Bindings are answered in order: this is the oldest pending one. Whatever comes next sends its
    // own, and the units that took this one as in place fail with it.
    this.bindingInPlace = null;
    const reliant = this.bindingsPending[0]?.reliant.splice(0) ?? [];
    owner.proxyRequestFailed(code, message, what);
    for (const other of reliant) if (other !== owner) other.proxyRequestFailed(code, message, what);
  }

  /** Answer proxy-made requests that are now at the head of the queue. */
  private drainSynthetic(): void {
    for (let owner = this.headOwner(); owner !== null && this.pending.length > 0 && (this.pending.headFlags() & SYNTHETIC) !== 0; owner = this.headOwner()) {
      owner.inject(this.pending.headKind() === Request.Parse ? PARSE_COMPLETE : CLOSE_COMPLETE);
      this.pending.shift();
    }
  }

  private idleMessage(type: number, buf: Buffer, start: number, end: number): void {
    if (type === Backend.ErrorResponse) {
      const f = parseErrorFields(buf, start + 5, end);
      this.onClosed(new PgError(f.get('C') ?? SqlState.ConnectionFailure, f.get('M') ?? 'server error', 'FATAL'));
    } else if (type === Backend.ParameterStatus) {
      const nameEnd = cstringEnd(buf, start + 5, end);
      if (nameEnd !== -1) this.params.set(buf.toString('utf8', start + 5, nameEnd - 1), readCString(buf, nameEnd, end) ?? '');
    }
  }
}
