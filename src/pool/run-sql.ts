import { Backend } from '../protocol/codes.js';
import { query } from '../protocol/messages.js';
import { parseErrorFields } from '../protocol/read.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { Request, SIMPLE } from './pending.js';
import { ServerConnection, type ServerEndpoint } from './server-connection.js';

/**
 * Runs simple-protocol SQL on a fresh connection and returns the text of each row's cells, for
 * setup work and health checks. Not for client traffic. With `timeoutMs`, a server that has not
 * answered by then fails the call and the connection is closed (not left open until it answers).
 */
export async function runSql(endpoint: ServerEndpoint, sql: string, timeoutMs?: number): Promise<(string | null)[][]> {
  const started = Date.now();
  const conn = await ServerConnection.connect(endpoint);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise((resolve, reject) => {
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => reject(new PgError(SqlState.ConnectionFailure, `no answer within ${timeoutMs} ms`)), Math.max(0, timeoutMs - (Date.now() - started)));
      }
      const rows: (string | null)[][] = [];
      let error: PgError | null = null;
      conn.attach({
        rowsReceived: 0,
        forward(buf, start, end) {
          const type = buf[start];
          if (type === Backend.DataRow) rows.push(decodeRow(buf, start, end));
          else if (type === Backend.ErrorResponse && error === null) {
            const f = parseErrorFields(buf, start + 5, end);
            error = new PgError(f.get('C') ?? SqlState.InternalError, f.get('M') ?? 'error');
          }
        },
        inject() {},
        parameter() {},
        serverBackpressure() {},
        proxyRequestFailed() {},
        serverError() {},
        lost: reject,
        ready() {
          if (error) reject(error);
          else resolve(rows);
        },
      });
      conn.pending.push(Request.Sync, SIMPLE);
      conn.sendOwned(query(sql));
    });
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}

function decodeRow(buf: Buffer, start: number, end: number): (string | null)[] {
  const n = buf.readInt16BE(start + 5);
  const cells: (string | null)[] = [];
  let o = start + 7;
  for (let i = 0; i < n && o < end; i++) {
    const len = buf.readInt32BE(o);
    o += 4;
    if (len < 0) cells.push(null);
    else {
      cells.push(buf.toString('utf8', o, o + len));
      o += len;
    }
  }
  return cells;
}
