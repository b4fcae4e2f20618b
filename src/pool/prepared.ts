import { createHash } from 'node:crypto';
import { Frontend } from '../protocol/codes.js';
import { closeStatement } from '../protocol/messages.js';
import { cstringEnd } from '../protocol/read.js';
import { Request, SKIP } from './pending.js';
import type { ServerConnection } from './server-connection.js';

/** Server-side names pgtenant gives prepared statements; clients' own names never reach a pooled server. */
export const GLOBAL_PREFIX = 'pgt_';

/** A client's named statement: the server-side name and the Parse that creates it there. */
export interface PreparedStatement {
  globalName: string;
  parse: Buffer;
  /** Its statement text, decoded when first needed (multiplexing classifies it). */
  sql?: string;
}

/** The statement text inside a prepared statement's Parse. */
export function statementText(stmt: PreparedStatement): string {
  if (stmt.sql === undefined) {
    const from = 6 + stmt.globalName.length;
    stmt.sql = stmt.parse.toString('utf8', from, stmt.parse.indexOf(0, from));
  }
  return stmt.sql;
}

/**
 * Rewrites a client Parse 'P' (name, query, types) to a Parse under the global name derived from
 * (query, parameter types, context). Returns undefined for the unnamed statement.
 */
export function globalizeParse(buf: Buffer, start: number, end: number, context: string): { clientName: string; stmt: PreparedStatement } | undefined {
  const nameEnd = cstringEnd(buf, start + 5, end);
  if (nameEnd === -1 || nameEnd === start + 6) return undefined;
  const clientName = buf.toString('utf8', start + 5, nameEnd - 1);
  const body = buf.subarray(nameEnd, end); // query\0, int16 count, int32 types
  const globalName = GLOBAL_PREFIX + createHash('sha1').update(context).update('\0').update(body).digest('base64url').slice(0, 26);
  const parse = Buffer.allocUnsafe(5 + globalName.length + 1 + body.length);
  parse[0] = Frontend.Parse;
  parse.writeInt32BE(parse.length - 1, 1);
  parse.write(globalName, 5, 'latin1');
  parse[5 + globalName.length] = 0;
  body.copy(parse, 6 + globalName.length);
  return { clientName, stmt: { globalName, parse } };
}

/**
 * Makes sure `server` has `stmt`: marks it used, or sends its Parse (responses swallowed, errors
 * still reach the client) and closes the least recently used one beyond `limit`.
 */
export function ensurePrepared(server: ServerConnection, stmt: PreparedStatement, limit: number): void {
  const prepared = server.prepared;
  if (prepared.delete(stmt.globalName)) {
    prepared.set(stmt.globalName, true);
    return;
  }
  server.sendOwned(stmt.parse);
  markPrepared(server, stmt, SKIP, limit);
}

/** After its Parse went out: the server has the statement now, unless it ignores the Parse after an error. */
function markPrepared(server: ServerConnection, stmt: PreparedStatement, flags: number, limit: number): void {
  if (!server.pending.push(Request.Parse, flags, stmt.globalName)) return;
  server.prepared.set(stmt.globalName, true);
  if (server.prepared.size > limit) evictOldest(server);
}

/** Send the client's Parse itself (the client asked for a ParseComplete), unless the server has it already. */
export function parseOnServer(server: ServerConnection, stmt: PreparedStatement, limit: number): void {
  const prepared = server.prepared;
  if (prepared.delete(stmt.globalName)) {
    prepared.set(stmt.globalName, true);
    server.pushSynthetic(Request.Parse);
    return;
  }
  server.sendOwned(stmt.parse);
  markPrepared(server, stmt, 0, limit);
}

function evictOldest(server: ServerConnection): void {
  const oldest = server.prepared.keys().next().value;
  if (oldest === undefined) return;
  server.prepared.delete(oldest);
  server.sendOwned(closeStatement(oldest));
  server.pending.push(Request.Close, SKIP);
}

/**
 * Rewrites the statement name inside Bind ('B': portal, statement, …) or Describe/Close of a
 * statement ('D'/'C': 'S', statement). `nameStart` is where the statement name begins; the result
 * replaces buf[start, end) (for a Bind head, `end` may stop short of the message's real end: `totalLength` is used).
 */
export function renameStatement(buf: Buffer, start: number, end: number, nameStart: number, nameEnd: number, globalName: string, totalLength = end - start): Buffer {
  const oldLen = nameEnd - 1 - nameStart;
  const out = Buffer.allocUnsafe(end - start - oldLen + globalName.length);
  buf.copy(out, 0, start, nameStart);
  let o = nameStart - start;
  o += out.write(globalName, o, 'latin1');
  buf.copy(out, o, nameEnd - 1, end);
  out.writeInt32BE(totalLength - 1 - oldLen + globalName.length, 1);
  return out;
}
