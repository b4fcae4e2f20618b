import { Frontend, TxStatus } from '../protocol/codes.js';
import { readyForQuery } from '../protocol/messages.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { cstringEnd } from '../protocol/read.js';
import { statementText, type PreparedStatement } from '../pool/prepared.js';
import type { ShapeStats, UnitClassifier } from '../sql/classify.js';

/** A client message held while no server connection is free; views into socket chunks, not copies. */
export interface Held {
  kind: 'message' | 'largeStart' | 'largePart';
  type: number;
  buf: Buffer;
  start: number;
  end: number;
  total: number;
  last: boolean;
}

/** Above this many bytes held while waiting for a server, stop reading the client. */
const HELD_LIMIT = 1 << 20;

/** The client's messages held while it has no server connection; its input pauses while they pile up. */
export class HeldMessages {
  private held: Held[] = [];
  private bytes = 0;
  private paused = false;

  constructor(private readonly client: { pauseInput(): void; resumeInput(): void }) {}

  get list(): readonly Held[] {
    return this.held;
  }

  get length(): number {
    return this.held.length;
  }

  get last(): Held {
    return this.held[this.held.length - 1];
  }

  /** More is held than waits in memory for a unit to end: it goes to a server as it is. */
  get overLimit(): boolean {
    return this.bytes > HELD_LIMIT;
  }

  add(h: Held): void {
    this.held.push(h);
    this.bytes += h.end - h.start;
    if (this.bytes > HELD_LIMIT && !this.paused) {
      this.paused = true;
      this.client.pauseInput();
    }
  }

  /** Takes out the first `count` held (all by default); the rest wait for the next server. */
  take(count = Infinity): Held[] {
    const all = this.held;
    if (count >= all.length) {
      this.held = [];
      this.bytes = 0;
      return all;
    }
    this.held = all.slice(count);
    this.bytes = 0;
    for (const h of this.held) this.bytes += h.end - h.start;
    return all.slice(0, count);
  }

  /** How many held entries the first request answered with ReadyForQuery spans (all of them when none is held whole). */
  firstRequestLength(): number {
    const i = this.held.findIndex((h) => h.kind === 'message' && endsInReadyForQuery(h.type));
    return i === -1 ? this.held.length : i + 1;
  }

  /** What was taken out has gone on: the client may send more. */
  resumeInput(): void {
    if (!this.paused) return;
    this.paused = false;
    this.client.resumeInput();
  }
}

/** Messages that end a unit the server answers: after them the client waits. */
export function endsUnit(type: number): boolean {
  return endsInReadyForQuery(type) || type === Frontend.Flush;
}

/** Requests the server answers with ReadyForQuery. */
export function endsInReadyForQuery(type: number): boolean {
  return type === Frontend.Query || type === Frontend.Sync || type === Frontend.FunctionCall;
}

/** What a client that can get no server connection is told. */
export interface UnservedClient {
  readonly user: string;
  readonly log: { info(fields: object, msg: string): void };
  fail(err: PgError): void;
  send(buf: Buffer): void;
}

/**
 * No server for the client's held requests: the error, then ReadyForQuery for each Query, Sync
 * and FunctionCall, as the server would have answered them. A client in a transaction, or one
 * whose server is gone, is closed instead.
 */
export function failWithoutServer(client: UnservedClient, err: PgError, held: readonly Held[], inTransaction: boolean): void {
  client.log.info({ user: client.user, code: err.code }, err.message);
  const fatal = new PgError(err.code, err.message, 'FATAL', err.detail, err.hint);
  if (inTransaction) {
    // An error and 'I' would let its next statements run outside the transaction it believes it is
    // in: closed instead, as if its server connection had failed.
    client.fail(new PgError(err.code, `the transaction could not get a server connection: ${err.message}`, 'FATAL', err.detail, err.hint));
    return;
  }
  if (err.code === SqlState.ConnectionUnableToConnect || err.code === SqlState.ConnectionFailure || err.code === SqlState.AdminShutdown) {
    client.fail(fatal);
    return;
  }
  let answered = false;
  for (const h of held) {
    if (h.kind === 'message' && endsInReadyForQuery(h.type)) {
      if (!answered) client.fail(err);
      answered = true;
      client.send(readyForQuery(TxStatus.Idle));
    }
  }
  // Nothing to answer (a session-mode client waiting at login, or one idle in the queue): it cannot
  // be left without a server, so it is closed with the reason.
  if (!answered) client.fail(fatal);
}

/**
 * The statement shape a held unit runs, when the unit is a complete autocommit unit that may share
 * a connection: one simple Query, or Parse/Bind/Describe/Execute ending in one Sync with exactly
 * one Execute (all rows). null when it must keep a connection to itself.
 */
export function shareableShape(held: readonly Held[], statements: Map<string, PreparedStatement>, classifier: UnitClassifier): ShapeStats | null {
  if (held.length === 1 && held[0].kind === 'message' && held[0].type === Frontend.Query) {
    const h = held[0];
    const sql = h.buf.toString('utf8', h.start + 5, h.end - 1);
    const shape = classifier.shapeOf(sql, true);
    return shape === undefined ? null : shareable(classifier.stats(shape, sql));
  }
  let unnamed: string | undefined;
  let executed: string | undefined;
  let executes = 0;
  for (let i = 0; i < held.length; i++) {
    const h = held[i];
    if (h.kind !== 'message') return null;
    const { buf, start, end } = h;
    switch (h.type) {
      case Frontend.Parse: {
        const nameEnd = cstringEnd(buf, start + 5, end);
        const textEnd = nameEnd === -1 ? -1 : cstringEnd(buf, nameEnd, end);
        if (textEnd === -1) return null;
        if (nameEnd === start + 6) unnamed = buf.toString('utf8', nameEnd, textEnd - 1);
        break;
      }
      case Frontend.Bind: {
        const portalEnd = cstringEnd(buf, start + 5, end);
        const nameEnd = portalEnd === -1 ? -1 : cstringEnd(buf, portalEnd, end);
        if (nameEnd === -1) return null;
        if (nameEnd === portalEnd + 1) executed = unnamed;
        else {
          const stmt = statements.get(buf.toString('utf8', portalEnd, nameEnd - 1));
          executed = stmt === undefined ? undefined : statementText(stmt);
        }
        if (executed === undefined) return null;
        break;
      }
      case Frontend.Execute: {
        const portalEnd = cstringEnd(buf, start + 5, end);
        if (portalEnd === -1 || portalEnd + 4 > end || buf.readInt32BE(portalEnd) !== 0) return null;
        executes++;
        break;
      }
      case Frontend.Describe:
        break;
      case Frontend.Sync:
        if (i !== held.length - 1) return null;
        break;
      default:
        return null;
    }
  }
  if (executes !== 1 || executed === undefined || held[held.length - 1].type !== Frontend.Sync) return null;
  return shareable(classifier.stats(executed, executed));
}

function shareable(stats: ShapeStats): ShapeStats | null {
  return stats.shareable ? stats : null;
}
