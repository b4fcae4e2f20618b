import { Frontend, Target } from '../protocol/codes.js';
import { errorResponse, msg, query } from '../protocol/messages.js';
import { typeSet } from '../protocol/framer.js';
import { cstringEnd } from '../protocol/read.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { BLOCKED, Request, SIMPLE } from '../pool/pending.js';
import { ensurePrepared, globalizeParse, parseOnServer, renameStatement, statementText, type PreparedStatement } from '../pool/prepared.js';
import type { UnitClassifier } from '../sql/classify.js';
import type { ServerConnection } from '../pool/server-connection.js';
import type { ClientSession } from './session.js';

/** What the server runs in place of a refused statement: it fails at Parse, so nothing runs. */
const REFUSED_SQL = 'pgtenant: statement refused';
const REFUSED_QUERY = query(REFUSED_SQL);
const REFUSED_PARSE = msg(Frontend.Parse).str('').str(REFUSED_SQL).i16(0).done();

/** In transaction mode a LISTEN would stay on a pooled server connection and its notifications reach whoever holds it next. */
const LISTEN_REFUSAL = errorResponse({
  severity: 'ERROR',
  code: SqlState.FeatureNotSupported,
  message: 'LISTEN is not supported in transaction pooling mode',
  hint: 'connect to a pgtenant with pool.mode: session for clients that LISTEN',
});

/** OID of pg_catalog.set_config, which a FunctionCall could invoke without any SQL text. */
const SET_CONFIG_OID = 2078;

/** Messages a logged-in client may send; Postgres closes the connection on any other type. */
const CLIENT_MESSAGES = typeSet(Frontend.Query, Frontend.Parse, Frontend.Bind, Frontend.Describe, Frontend.Execute, Frontend.Close, Frontend.Sync, Frontend.Flush, Frontend.FunctionCall, Frontend.CopyData, Frontend.CopyDone, Frontend.CopyFail, Frontend.Terminate);

/**
 * Refuses, as it arrives, a message Postgres does not take after login: an unknown type (held
 * until a server connection is free, it would fail only then, outside the client's own turn), or
 * a Flush with bytes in it. Postgres fails such a Flush and then ignores everything up to the next
 * Sync, and pgtenant expects no answer to a Flush to learn that from: it would wait for answers to
 * what the server ignored. So pgtenant closes such a client, as Postgres closes one that sends an
 * unknown type.
 */
export function checkMessage(type: number, length: number): void {
  if (CLIENT_MESSAGES[type] !== 1) throw new PgError(SqlState.ProtocolViolation, `invalid frontend message type ${type} ("${String.fromCharCode(type)}")`, 'FATAL');
  if (type === Frontend.Flush && length !== 5) throw new PgError(SqlState.ProtocolViolation, 'invalid message format: a Flush message with bytes in it', 'FATAL');
}

/**
 * Sends one client message to a server connection: the tenant guard's verdict on statement text
 * (a refused statement is replaced by one that fails at Parse), LISTEN refused in transaction mode,
 * and the client's named prepared statements mapped onto pool-wide server-side ones.
 */
export class MessageDispatcher {
  /** The client's prepared statements by its own names. */
  readonly statements = new Map<string, PreparedStatement>();
  /** The server ran DISCARD ALL / DEALLOCATE ALL for this client: its prepared-statement list is stale. */
  serverStatementsStale = false;
  /**
   * Set when a unit starts whose tenant binding may outlive it: stays true while every statement
   * run is one the classifier says cannot change session state, so the binding is still in place.
   */
  pure = false;
  /** Text of the unnamed statement, for the purity of the Bind that runs it. */
  private unnamedText: string | undefined;

  constructor(
    private readonly session: ClientSession,
    private readonly transactionMode: boolean,
    private readonly statementLimit: number,
    private readonly classifier: UnitClassifier | null,
  ) {}

  /** One statement text that cannot change session state (cached per statement shape). */
  private pureStatement(sql: string, simple: boolean): boolean {
    const shape = this.classifier?.shapeOf(sql, simple);
    return shape !== undefined && this.classifier!.stats(shape, sql).pure;
  }

  /** The guard's verdict on a statement text of a tenant client; null when it may run. */
  private refused(sql: string): Buffer | null {
    const guard = this.session.tenant?.guard;
    if (guard == null) return null;
    const blocked = guard.check(sql);
    if (blocked === null) return null;
    this.session.statementBlocked(blocked.reason, blocked.fingerprint);
    return errorResponse({
      severity: 'ERROR',
      code: SqlState.InsufficientPrivilege,
      message: `pgtenant: ${blocked.reason}`,
      hint: 'the tenant context (tenant setting, JWT claims, role, and the schema tenants\' search_path) is set by pgtenant and cannot be changed by clients',
    });
  }

  dispatch(server: ServerConnection, type: number, buf: Buffer, start: number, end: number): void {
    const pending = server.pending;
    if (type === Frontend.Query || type === Frontend.Execute) this.session.usage.queries++;
    switch (type) {
      case Frontend.Query: {
        const listen = this.transactionMode && startsWithListen(buf, start + 5, end);
        const sql = !listen && (this.session.tenant !== null || this.pure) ? buf.toString('utf8', start + 5, end - 1) : undefined;
        const refusal = listen ? LISTEN_REFUSAL : sql === undefined || this.session.tenant === null ? null : this.refused(sql);
        if (refusal !== null) {
          pending.push(Request.Sync, SIMPLE | BLOCKED, refusal);
          server.send(REFUSED_QUERY, 0, REFUSED_QUERY.length);
          return;
        }
        if (this.pure) this.pure = sql !== undefined && this.pureStatement(sql, true);
        if (this.transactionMode && (sql === undefined ? mayDropStatements(buf, start + 5, end) : DROPS_STATEMENTS.test(sql))) this.serverStatementsStale = true;
        pending.push(Request.Sync, SIMPLE);
        server.send(buf, start, end);
        return;
      }
      case Frontend.Sync:
        pending.push(Request.Sync);
        server.send(buf, start, end);
        return;
      case Frontend.Execute:
        pending.push(Request.Execute);
        server.send(buf, start, end);
        return;
      case Frontend.Parse:
        this.parse(server, buf, start, end);
        return;
      case Frontend.Bind:
        this.bind(server, buf, start, end, end - start);
        return;
      case Frontend.Describe:
      case Frontend.Close:
        this.describeOrClose(server, type, buf, start, end);
        return;
      case Frontend.FunctionCall:
        this.pure = false;
        if (this.session.tenant !== null && end - start >= 9 && buf.readInt32BE(start + 5) === SET_CONFIG_OID) {
          const refusal = this.refused("select pg_catalog.set_config($1, $2, $3)");
          pending.push(Request.Sync, SIMPLE | BLOCKED, refusal ?? undefined);
          server.send(refusal === null ? buf : REFUSED_QUERY, refusal === null ? start : 0, refusal === null ? end : REFUSED_QUERY.length);
          return;
        }
        pending.push(Request.Sync, SIMPLE);
        server.send(buf, start, end);
        return;
      case Frontend.Flush:
        server.send(buf, start, end);
        return;
      case Frontend.CopyData:
      case Frontend.CopyDone:
      case Frontend.CopyFail:
        this.pure = false;
        server.send(buf, start, end);
        return;
      case Frontend.Terminate:
        this.session.closeQuietly();
        return;
    }
  }

  dispatchLargeStart(server: ServerConnection, type: number, total: number, head: Buffer): void {
    if (type === Frontend.Bind) this.bind(server, head, 0, head.length, total);
    else {
      this.pure = false;
      server.send(head, 0, head.length);
    }
  }

  private parse(server: ServerConnection, buf: Buffer, start: number, end: number): void {
    const textStart = cstringEnd(buf, start + 5, end);
    if (this.pure && textStart === start + 6) {
      const textEnd = cstringEnd(buf, textStart, end);
      this.unnamedText = textEnd === -1 ? undefined : buf.toString('utf8', textStart, textEnd - 1);
    }
    if (textStart !== -1) {
      const tenant = this.session.tenant;
      const listen = this.transactionMode && startsWithListen(buf, textStart, end);
      if (tenant !== null || listen) {
        const textEnd = cstringEnd(buf, textStart, end);
        const refusal = listen ? LISTEN_REFUSAL : textEnd === -1 ? null : this.refused(buf.toString('utf8', textStart, textEnd - 1));
        if (refusal !== null) {
          server.pending.push(Request.Parse, BLOCKED, refusal);
          server.send(REFUSED_PARSE, 0, REFUSED_PARSE.length);
          return;
        }
      }
      if (this.transactionMode && mayDropStatements(buf, textStart, end)) this.serverStatementsStale = true;
    }
    const named = this.transactionMode ? globalizeParse(buf, start, end, this.session.tenant?.binding.statementContext ?? '') : undefined;
    if (named === undefined) {
      server.pending.push(Request.Parse);
      server.send(buf, start, end);
      return;
    }
    this.statements.set(named.clientName, named.stmt);
    parseOnServer(server, named.stmt, this.statementLimit);
  }

  /** Bind: portal name, then statement name. `total` is the whole message's length when `buf` holds only its head. */
  private bind(server: ServerConnection, buf: Buffer, start: number, end: number, total: number): void {
    const portalEnd = cstringEnd(buf, start + 5, end);
    const nameEnd = portalEnd === -1 ? -1 : cstringEnd(buf, portalEnd, end);
    const unnamed = nameEnd === portalEnd + 1;
    const stmt = nameEnd === -1 || unnamed || !this.transactionMode ? undefined : this.statements.get(buf.toString('utf8', portalEnd, nameEnd - 1));
    if (this.pure) {
      const text = unnamed ? this.unnamedText : stmt === undefined ? undefined : statementText(stmt);
      this.pure = text !== undefined && this.pureStatement(text, false);
    }
    if (stmt === undefined) {
      server.pending.push(Request.Bind);
      server.send(buf, start, end);
      return;
    }
    ensurePrepared(server, stmt, this.statementLimit);
    server.pending.push(Request.Bind);
    server.sendOwned(renameStatement(buf, start, end, portalEnd, nameEnd, stmt.globalName, total));
  }

  private describeOrClose(server: ServerConnection, type: number, buf: Buffer, start: number, end: number): void {
    const kind = type === Frontend.Describe ? Request.Describe : Request.Close;
    const isStatement = buf[start + 5] === Target.Statement;
    const nameEnd = cstringEnd(buf, start + 6, end);
    const name = isStatement && nameEnd > start + 7 && this.transactionMode ? buf.toString('utf8', start + 6, nameEnd - 1) : '';
    const stmt = name === '' ? undefined : this.statements.get(name);
    if (kind === Request.Close && name !== '') {
      // The server-side statement stays for other clients; the client's name goes.
      this.statements.delete(name);
      server.pushSynthetic(Request.Close);
      return;
    }
    if (stmt === undefined) {
      server.pending.push(kind);
      server.send(buf, start, end);
      return;
    }
    ensurePrepared(server, stmt, this.statementLimit);
    server.pending.push(kind);
    server.sendOwned(renameStatement(buf, start, end, start + 6, nameEnd, stmt.globalName));
  }
}

/** Statement text that may drop server-side prepared statements (DISCARD / DEALLOCATE). */
const DROPS_STATEMENTS = /\b(discard|deallocate)\b/i;

/** Whether statement text from `start` may drop server-side prepared statements, without decoding it as UTF-8. */
function mayDropStatements(buf: Buffer, start: number, end: number): boolean {
  return DROPS_STATEMENTS.test(buf.toString('latin1', start, end));
}

/** Whether statement text at `start` begins with the LISTEN keyword (after whitespace). */
function startsWithListen(buf: Buffer, start: number, end: number): boolean {
  let i = start;
  while (i < end && (buf[i] === 0x20 || (buf[i] >= 0x09 && buf[i] <= 0x0d))) i++;
  if (i + 6 > end || (buf[i] | 0x20) !== 0x6c /* l */) return false;
  return /^listen\b/i.test(buf.toString('latin1', i, Math.min(end, i + 7)));
}
