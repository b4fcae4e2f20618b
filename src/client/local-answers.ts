/**
 * Statements pgtenant answers itself for a transaction-mode client that holds no server
 * connection: a plain BEGIN (sent to the server later, ahead of the next statement), COMMIT or
 * ROLLBACK right after it, DISCARD ALL, and DEALLOCATE of a protocol-level statement.
 */
import { TxStatus } from '../protocol/codes.js';
import { commandComplete, query, readyForQuery } from '../protocol/messages.js';
import { Request, SIMPLE, SKIP, TX_START } from '../pool/pending.js';
import type { PreparedStatement } from '../pool/prepared.js';
import type { ServerConnection } from '../pool/server-connection.js';
import type { ClientSession } from './session.js';
import { transactionControl } from './transaction-control.js';

/** DISCARD ALL / DEALLOCATE … that pgtenant answers itself when the client holds no server. */
const LOCAL_STATEMENT = /^\s*(discard\s+all|deallocate\s+(?:prepare\s+)?(all|"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*))\s*;?\s*$/i;

const BEGIN_QUERY = query('BEGIN');
const BEGIN_ANSWER = Buffer.concat([commandComplete('BEGIN'), readyForQuery(TxStatus.InTransaction)]);
const COMMIT_ANSWER = Buffer.concat([commandComplete('COMMIT'), readyForQuery(TxStatus.Idle)]);
const ROLLBACK_ANSWER = Buffer.concat([commandComplete('ROLLBACK'), readyForQuery(TxStatus.Idle)]);

export class LocalAnswers {
  /**
   * The client sent a plain BEGIN that pgtenant answered itself: the server gets it ahead of the
   * client's next statement, so no connection is held (nor a round trip spent) for BEGIN alone.
   */
  private deferred = false;

  constructor(
    private readonly session: ClientSession,
    /** The client's prepared statements by its own names (DEALLOCATE removes from them). */
    private readonly statements: Map<string, PreparedStatement>,
    /** Whether BEGIN may be deferred now (not with read routing, which routes statement by statement). */
    private readonly mayDeferBegin: () => boolean,
  ) {}

  /** Answers the Query message when it can (true), else leaves it to a server (false). */
  answer(buf: Buffer, start: number, end: number): boolean {
    return this.transactionControl(buf, start, end) || (!this.deferred && this.discardOrDeallocate(buf, start, end));
  }

  get deferredBegin(): boolean {
    return this.deferred;
  }

  /** The deferred BEGIN will never reach a server (client gone, or no server for it); whether there was one. */
  abandonDeferredBegin(): boolean {
    const was = this.deferred;
    this.deferred = false;
    return was;
  }

  /** The deferred BEGIN goes to `conn` now, ahead of the client's messages; its answer is swallowed. */
  sendDeferredBegin(conn: ServerConnection): void {
    if (!this.deferred) return;
    this.deferred = false;
    conn.pending.push(Request.Sync, SKIP | SIMPLE | TX_START);
    conn.sendOwned(BEGIN_QUERY);
  }

  private transactionControl(buf: Buffer, start: number, end: number): boolean {
    const control = transactionControl(buf, start, end);
    if (control === null) return false;
    if (this.deferred) {
      if (control === 'begin') return false;
      this.deferred = false;
      this.session.send(control === 'commit' ? COMMIT_ANSWER : ROLLBACK_ANSWER);
    } else {
      if (control !== 'begin' || !this.mayDeferBegin()) return false;
      this.deferred = true;
      this.session.send(BEGIN_ANSWER);
    }
    this.session.usage.queries++;
    return true;
  }

  private discardOrDeallocate(buf: Buffer, start: number, end: number): boolean {
    if (end - start > 200) return false;
    const first = buf[start + 5] | 0x20;
    if (first !== 0x64 /* d */ && buf[start + 5] !== 0x20) return false;
    const m = LOCAL_STATEMENT.exec(buf.toString('utf8', start + 5, end - 1));
    if (m === null) return false;
    if (/^discard/i.test(m[1])) {
      this.statements.clear();
      this.session.resetSettings();
      this.session.send(commandComplete('DISCARD ALL'));
    } else if (m[2].toLowerCase() === 'all') {
      this.statements.clear();
      this.session.send(commandComplete('DEALLOCATE ALL'));
    } else {
      const name = m[2].startsWith('"') ? m[2].slice(1, -1).replace(/""/g, '"') : m[2].toLowerCase();
      if (!this.statements.delete(name)) return false;
      this.session.send(commandComplete('DEALLOCATE'));
    }
    this.session.send(readyForQuery(TxStatus.Idle));
    return true;
  }
}
