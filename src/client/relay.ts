import { Frontend, TxStatus } from '../protocol/codes.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import type { AcquireCallback, Pool } from '../pool/pool.js';
import type { ServerConnection } from '../pool/server-connection.js';
import type { ClientSession } from './session.js';
import type { ShapeStats, UnitClassifier } from '../sql/classify.js';
import { endsUnit, failWithoutServer, HeldMessages, shareableShape, type Held } from './units.js';
import { checkMessage, MessageDispatcher } from './dispatch.js';
import { sendSessionState } from './session-state.js';
import { LocalAnswers } from './local-answers.js';
import { SharedUnits } from './shared-units.js';
import { UnitMeter } from './unit-meter.js';
import { requestConnection } from './connection-request.js';
import { ReplicaUnit } from './replica-unit.js';
import type { ReadTarget } from '../routing/router.js';

/** A unit over the pipelining limit waits for a slot up to this many times pool.shareBelow. */
const SHARED_WAIT_FACTOR = 10;

/**
 * Units of one client in flight on shared connections at most. A shared connection cannot stop
 * for one client that does not read its answers, so those are buffered: beyond this (or while the
 * client's socket is backed up) its units go to a connection of its own, which can wait for it.
 */
const SHARED_UNITS_PER_CLIENT = 8;

/**
 * Carries one client's messages to server connections: checks one out when the client starts
 * something, gives it back at ReadyForQuery 'I' with nothing outstanding (transaction mode), and
 * maps the client's named prepared statements onto pool-wide ones.
 */
export class TransactionRelay {
  private readonly held: HeldMessages;
  private cancelCheckout: (() => void) | null = null;
  /** Parts of a large client message still to come, and whether they go to the server now. */
  private largeRemaining = false;
  /** Times the unit of work on the client's own connection. */
  private readonly meter: UnitMeter;
  /** Rest of a large CopyData for a COPY the server already ended: dropped. */
  private droppingLarge = false;

  /** The client's units on a shared (pipelined) connection. */
  private readonly shared: SharedUnits;
  /** A unit that needs a connection of its own waits until the client's shared units are done. */
  private waitingForShared = false;
  /** Guard, LISTEN refusal and prepared-statement mapping of each message sent. */
  private readonly messages: MessageDispatcher;
  /** Whether a tenant binding may be left in place after units that cannot have changed it. */
  private readonly keepBindings: boolean;
  /** The binding of the exclusive connection's units, kept on it after a unit that stayed pure. */
  private unitBinding: Buffer | null = null;
  /** Pool the exclusive server connection came from: the client's, or a replica's for a read unit. */
  private unitPool: Pool;
  /** DISCARD ALL, DEALLOCATE and plain transaction control answered without a server. */
  private readonly local: LocalAnswers;
  /** The replica running the current unit, if any. */
  private readonly replica = new ReplicaUnit();
  /** A read unit waiting for the client's shared units to finish, and its replica. */
  private waitingTarget: ReadTarget | null = null;

  constructor(
    private readonly session: ClientSession,
    private pool: Pool,
    private readonly transactionMode: boolean,
    statementLimit: number,
    /** Set when fast autocommit units may be pipelined on shared connections (transaction mode only). */
    private readonly classifier: UnitClassifier | null,
    private readonly shareBelowMs: number,
    /** Tells which statements cannot change session state, so a tenant binding may outlive a unit (null: never). */
    purity: UnitClassifier | null,
  ) {
    this.unitPool = pool;
    this.held = new HeldMessages(session);
    this.keepBindings = purity !== null;
    this.messages = new MessageDispatcher(session, transactionMode, statementLimit, purity);
    this.local = new LocalAnswers(session, this.messages.statements, () => this.session.readRouter(this.pool) === null);
    this.shared = new SharedUnits(session, classifier);
    this.meter = new UnitMeter(session, classifier);
  }

  /** A reload moved this client (its backend or its tenant's placement): its pool is no longer the right one. */
  private get moved(): boolean {
    return this.pool.retired || this.session.placementStale;
  }

  /** Session mode: the client holds one server connection for its whole life. */
  start(): void {
    if (!this.transactionMode) this.checkout();
  }

  get isIdle(): boolean {
    return this.session.server === null && this.held.length === 0;
  }

  /** The client is inside a transaction whose BEGIN has not gone to a server yet. */
  get inDeferredTransaction(): boolean {
    return this.local.deferredBegin;
  }

  message(type: number, buf: Buffer, start: number, end: number): void {
    checkMessage(type, end - start);
    const server = this.session.server;
    if (this.sendsNow(server)) {
      this.dispatch(server, type, buf, start, end);
      return;
    }
    // A client that leaves with units on shared connections needs no connection of its own to say
    // so: those units are on the server already and run to their end there.
    if (server === null && this.held.length === 0 && type === Frontend.Terminate) {
      this.session.closeQuietly();
      return;
    }
    if (server === null && this.held.length === 0 && this.shared.inFlight === 0) {
      if (type === Frontend.Query && this.transactionMode && this.local.answer(buf, start, end)) return;
      // A COPY the server already failed: the client's remaining data is dropped, as Postgres drops it.
      if (type === Frontend.CopyData || type === Frontend.CopyDone || type === Frontend.CopyFail) return;
    }
    this.hold({ kind: 'message', type, buf, start, end, total: end - start, last: true });
  }

  largeStart(type: number, total: number, head: Buffer): void {
    const server = this.session.server;
    if (server === null && this.held.length === 0 && type === Frontend.CopyData) {
      this.droppingLarge = true;
      return;
    }
    this.largeRemaining = true;
    if (this.sendsNow(server)) this.dispatchLargeStart(server, type, total, head);
    else this.hold({ kind: 'largeStart', type, buf: head, start: 0, end: head.length, total, last: false });
  }

  largePart(buf: Buffer, start: number, end: number, last: boolean): void {
    if (this.droppingLarge) {
      this.droppingLarge = !last;
      return;
    }
    if (last) this.largeRemaining = false;
    const server = this.session.server;
    if (server !== null && this.held.length === 0) server.send(buf, start, end);
    else this.hold({ kind: 'largePart', type: 0, buf, start, end, total: 0, last });
  }

  /** ReadyForQuery went to the client (`proxyOwn`: it ended a request pgtenant made itself). */
  serverReady(status: number, proxyOwn: boolean): void {
    const server = this.session.server;
    if (server === null) {
      if (this.shared.inFlight > 0 && !proxyOwn) this.sharedUnitDone(status);
      return;
    }
    if (status === TxStatus.Idle && this.meter.running && server.pending.length === 0) this.endUnit();
    if (!this.transactionMode) return;
    if (!proxyOwn) this.replica.answered();
    // After autocommit reads or a transaction on a replica, what the client sent meanwhile is routed anew.
    const readsDone = this.replica.done(status);
    if (this.replica.active && !readsDone && !proxyOwn && this.held.length > 0) {
      this.replayHeld(server, this.held.firstRequestLength());
      return;
    }
    if (server.isIdle && (this.held.length === 0 || readsDone) && !this.largeRemaining) {
      this.session.server = null;
      this.replica.use(null);
      if (this.messages.serverStatementsStale) {
        this.messages.serverStatementsStale = false;
        this.unitPool.destroy(server);
      } else this.unitPool.release(server);
      if (this.held.length > 0) this.route(this.held.last);
    }
  }

  /** The server connection under the client's unit was lost (the client is failed next): a replica's unit failed. */
  serverLost(): void {
    this.leaveReplica(true);
  }

  /** A unit still running on a replica ends here (one that ended was counted by endUnit); `failed`: its connection is lost. */
  private leaveReplica(failed: boolean): void {
    if (this.meter.running) this.replica.unitEnded(this.meter.elapsed(), failed);
    this.replica.use(null);
  }

  /** The client disconnected: give the server back if it is clean, else close it. */
  clientGone(): void {
    this.cancelCheckout?.();
    this.cancelCheckout = null;
    this.held.take();
    this.local.abandonDeferredBegin();
    this.shared.dropAll(this.pool);
    const server = this.session.server;
    if (server === null) return;
    this.session.server = null;
    this.leaveReplica(server.isClosed);
    if (server.isIdle && !this.largeRemaining && !this.messages.serverStatementsStale) this.unitPool.release(server, !this.transactionMode);
    else this.unitPool.destroy(server);
  }

  private hold(h: Held): void {
    this.held.add(h);
    if (this.session.server === null && this.cancelCheckout === null && !this.waitingForShared) this.route(h);
  }

  /**
   * With multiplexing, a unit is held until it is complete, then sent to a shared connection when
   * it is a fast autocommit unit, else to a connection of its own.
   */
  private route(last: Held): void {
    // Its units go to the new pool once none is left on a shared connection of the old one.
    const moved = this.moved;
    if (moved && this.shared.inFlight === 0) this.pool = this.session.repool();
    const router = this.transactionMode ? this.session.readRouter(this.pool) : null;
    if ((this.classifier === null && router === null) || !this.transactionMode || this.local.deferredBegin) {
      this.checkout();
      return;
    }
    if (last.kind === 'message' && !endsUnit(last.type) && last.type !== Frontend.Terminate && !this.held.overLimit) return;
    const complete = last.kind === 'message' && !this.session.paused;
    const target = complete && router !== null ? router.target(this.held.list, this.messages.statements, this.pool, this.session.readOnlyUser) : null;
    const shape = complete && target === null && this.classifier !== null ? shareableShape(this.held.list, this.messages.statements, this.classifier) : null;
    const inFlight = this.shared.inFlight;
    // Units in flight on a connection no new unit may join: the next waits for them to finish.
    const leaving = inFlight > 0 && (moved || this.shared.conn?.settingsUnknown === true);
    const mayShare = inFlight < SHARED_UNITS_PER_CLIENT && !this.session.outputBackedUp && !leaving;
    if (shape !== null && shape.runs > 0 && shape.latencyMs < this.shareBelowMs && mayShare) {
      if (this.pool.sharedLimit.admits) {
        this.sendShared(shape);
        return;
      }
      if (inFlight === 0) {
        // Over the limit: wait for a slot in the pipeline (a connection of its own would only add
        // load), but not behind a pipeline held up for longer than a few fast statements take.
        this.cancelCheckout = this.pool.waitForShared(
          () => {
            this.cancelCheckout = null;
            if (this.held.length > 0) this.calledBack(() => this.route(this.held.last));
          },
          () => {
            this.cancelCheckout = null;
            this.meter.shape = shape;
            this.calledBack(() => this.checkout());
          },
          SHARED_WAIT_FACTOR * this.shareBelowMs,
        );
        return;
      }
    }
    this.meter.shape = shape;
    if (inFlight > 0) {
      this.waitingForShared = true;
      this.waitingTarget = target;
      return;
    }
    this.checkout(target);
  }

  private sendShared(shape: ShapeStats): void {
    const run = (conn: ServerConnection): void => {
      conn.pending.currentOwner = this.session;
      this.prepareConnection(conn);
      this.shared.started(conn, this.pool, shape);
      for (const h of this.held.take()) this.dispatch(conn, h.type, h.buf, h.start, h.end);
      this.held.resumeInput();
    };
    if (this.shared.conn !== null) {
      run(this.shared.conn);
      return;
    }
    this.acquiring(this.pool, true, (err, conn) => {
      if (err || conn === null) this.checkoutFailed(err ?? new PgError(SqlState.ConnectionUnableToConnect, 'no server connection'));
      else run(conn);
    });
  }

  /** Asks `pool` for a connection; until it answers, cancelCheckout withdraws the request. */
  private acquiring(pool: Pool, shared: boolean, then: AcquireCallback): void {
    const cancel = requestConnection(this.session, pool, shared, (err, conn) => {
      this.cancelCheckout = null;
      then(err, conn);
    });
    if (cancel !== null) this.cancelCheckout = cancel;
  }

  get sharedServer(): { conn: ServerConnection; pool: Pool } | null {
    return this.shared.conn === null ? null : { conn: this.shared.conn, pool: this.pool };
  }

  /** The client's oldest unit on the shared connection is answered. */
  private sharedUnitDone(status: number): void {
    if (!this.shared.finished(status, this.pool)) return;
    if (this.waitingForShared && this.held.length > 0) {
      this.waitingForShared = false;
      const target = this.waitingTarget;
      this.waitingTarget = null;
      this.checkout(target);
    }
  }

  /** Work run when a RESUME or a timer calls back: what it throws fails this client, not the caller. */
  private calledBack(work: () => void): void {
    try {
      work();
    } catch (err) {
      this.session.failOn(err);
    }
  }

  /** Queued client messages are replayed once the connection arrives (at once when one is idle). */
  private checkout(target: ReadTarget | null = null): void {
    // An admin PAUSE holds the tenant's new transactions (its messages stay held) until RESUME.
    const tenant = this.session.tenant?.tenant;
    if (tenant !== undefined) {
      const cancelWait = this.session.whenResumed(tenant, () => {
        this.cancelCheckout = null;
        this.calledBack(() => this.checkout(target));
      });
      if (cancelWait !== null) {
        this.cancelCheckout = cancelWait;
        return;
      }
    }
    if (this.moved) {
      this.pool = this.session.repool();
      target = null;
    }
    const pool = target === null ? this.pool : target.router.poolFor(this.pool, target.state);
    this.acquiring(pool, false, (err, conn) => {
      if (target !== null && (err?.code.startsWith('08') === true || err?.code === SqlState.CannotConnectNow)) {
        // The replica is down or starting: nothing was sent yet, so the unit goes to the primary.
        target.router.set.connectFailed(target.state);
        this.checkout(null);
        return;
      }
      if (err || conn === null) {
        this.checkoutFailed(err ?? new PgError(SqlState.ConnectionUnableToConnect, 'no server connection'));
        return;
      }
      this.unitPool = pool;
      this.replica.use(target);
      this.attach(conn);
      this.local.sendDeferredBegin(conn);
      this.replayHeld(conn, target === null ? this.held.length : target.autocommit ? target.length : this.held.firstRequestLength());
    });
  }

  private attach(conn: ServerConnection): void {
    this.session.server = conn;
    conn.attach(this.session);
    this.prepareConnection(conn);
  }

  /** The client's settings and tenant binding, ahead of its messages. */
  private prepareConnection(conn: ServerConnection): void {
    this.unitBinding = sendSessionState(conn, this.session, this.session.settings, this.session.tenant, this.keepBindings);
  }

  /** Sends the first `count` held entries (the rest wait for the next checkout). */
  private replayHeld(conn: ServerConnection, count: number): void {
    const held = this.held.take(count);
    for (let i = 0; i < held.length; i++) {
      const h = held[i];
      if (this.session.server !== conn) {
        // A Terminate in the held messages closed the session.
        return;
      }
      if (h.kind === 'message') {
        if (h.type === Frontend.Terminate) {
          this.session.closeQuietly();
          return;
        }
        this.dispatch(conn, h.type, h.buf, h.start, h.end);
      } else if (h.kind === 'largeStart') this.dispatchLargeStart(conn, h.type, h.total, h.buf);
      else conn.send(h.buf, h.start, h.end);
    }
    this.held.resumeInput();
  }

  /** No server for the client's request: each held Sync/Query is answered with the error. */
  private checkoutFailed(err: PgError): void {
    const held = this.held.take();
    this.held.resumeInput();
    failWithoutServer(this.session, err, held, this.local.abandonDeferredBegin());
  }

  /** Sends a client message; the first one on an exclusive server connection starts a unit of work. */
  private dispatch(server: ServerConnection, type: number, buf: Buffer, start: number, end: number): void {
    if (!this.meter.running && server === this.session.server && type !== Frontend.Terminate) this.beginUnit();
    this.replica.sent(type);
    this.messages.dispatch(server, type, buf, start, end);
  }

  /** Messages go straight to the server: one is attached, nothing waits ahead of them, and no replica unit needs an answer first. */
  private sendsNow(server: ServerConnection | null): server is ServerConnection {
    return server !== null && this.held.length === 0 && !this.replica.holdsMessages;
  }

  private dispatchLargeStart(server: ServerConnection, type: number, total: number, head: Buffer): void {
    this.messages.dispatchLargeStart(server, type, total, head);
  }

  /** A unit of work (transaction, or autocommit statements up to ReadyForQuery 'I') starts on `server`. */
  private beginUnit(): void {
    this.meter.start();
    // Each start on a replica is matched by one end: endUnit, serverLost or clientGone.
    this.replica.unitStarted();
    this.messages.pure = this.unitBinding !== null;
    const server = this.session.server;
    if (server !== null && !server.shared) server.bindingInPlace = null;
  }

  private endUnit(): void {
    const ms = this.meter.end(this.unitPool.backendName);
    this.replica.unitEnded(ms, false);
    const server = this.session.server;
    if (server !== null) {
      // Purity is followed for units whose binding may outlive them (tenant sessions) only; any other
      // unit may have changed settings. Marked with its tenant ('' for none, and without tenancy every
      // client is ''), so that only another tenant's unit resets them.
      if (this.unitBinding !== null && this.messages.pure) server.bindingInPlace = this.unitBinding;
      else server.settingsChangedBy = this.session.tenant?.tenant ?? '';
    }
    this.messages.pure = false;
  }
}
