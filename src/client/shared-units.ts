import { TxStatus } from '../protocol/codes.js';
import type { Pool } from '../pool/pool.js';
import type { ServerConnection } from '../pool/server-connection.js';
import type { ShapeStats, UnitClassifier } from '../sql/classify.js';
import type { ClientSession } from './session.js';
import { countUnit } from './unit-meter.js';

/**
 * One client's units pipelined on a shared server connection: the connection, and when each unit
 * in flight was sent, so that each answer is timed against its own unit and the connection goes
 * back to the pool once the client's last unit there is answered.
 */
export class SharedUnits {
  /** The shared connection the client's units are on (null: none in flight). */
  conn: ServerConnection | null = null;
  private count = 0;
  private readonly sent: { at: number; shape: ShapeStats; rows: number; inflight: number }[] = [];

  constructor(
    private readonly session: ClientSession,
    private readonly classifier: UnitClassifier | null,
  ) {}

  get inFlight(): number {
    return this.count;
  }

  /** A unit of `shape` goes out on `conn` now. */
  started(conn: ServerConnection, pool: Pool, shape: ShapeStats): void {
    this.conn = conn;
    this.count++;
    this.session.usageRegistry.sharedUnits++;
    pool.sharedStarted();
    this.sent.push({ at: performance.now(), shape, rows: this.session.rowsReceived, inflight: pool.sharedLimit.inflight });
  }

  /**
   * The oldest unit in flight is answered (ReadyForQuery `status`). Returns whether it was the
   * client's last one there; the connection has then gone back to `pool`.
   */
  finished(status: number, pool: Pool): boolean {
    const conn = this.conn!;
    this.count--;
    // None when the client left: its units were dropped from the limit then, and their answers
    // only end them here, so that the connection goes back once the last one is in.
    const sent = this.sent.shift();
    if (sent !== undefined) {
      const now = performance.now();
      const ms = now - sent.at;
      // Whether a statement is fast is judged by its own time on the server, not by the wait behind
      // the units pipelined before it: that wait is the limit's signal, not the statement's.
      this.classifier?.record(sent.shape, now - Math.max(sent.at, conn.lastAnsweredAt));
      conn.lastAnsweredAt = now;
      pool.sharedFinished(ms, sent.inflight);
      countUnit(this.session, ms / 1000, this.session.rowsReceived - sent.rows, pool.backendName);
    }
    if (status !== TxStatus.Idle) {
      // Classification admits no statement that opens a transaction; if one did, nobody may share it.
      this.session.log.error({ user: this.session.user, status: String.fromCharCode(status) }, 'a shared statement left a transaction open; closing that server connection');
      conn.close();
    }
    if (this.count > 0) return false;
    this.conn = null;
    pool.sharedDrained(conn);
    return true;
  }

  /** The client left: its units in flight no longer count against the pool's pipelining limit. */
  dropAll(pool: Pool): void {
    for (const _ of this.sent.splice(0)) pool.sharedDropped();
  }
}
