/**
 * Forwarding a client's CancelRequest to the server its statement runs on, with that server's key.
 * The server stops whatever the connection runs when the signal lands, so pgtenant sends it only
 * when that can be the client's own statement.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { ClientSession } from '../client/session.js';
import { cancelRequest } from '../protocol/messages.js';
import type { ServerConnection } from '../pool/server-connection.js';
import { socketAddress } from '../pool/server-socket.js';

/** Tries (about 1 ms apart) a cancel waits for pgtenant's own statements or other clients' units ahead. */
const ATTEMPTS = 1000;

export function forwardCancel(session: ClientSession, log: Logger, attempt = 0): void {
  const server = session.server;
  if (server === null) {
    forwardToShared(session, log, attempt);
    return;
  }
  // While the server still runs pgtenant's own statements (settings, tenant binding), a cancel
  // could stop the binding and leave the previous tenant's context: wait until they are done.
  if (server.runningOwnRequests && attempt < ATTEMPTS) {
    setTimeout(() => forwardCancel(session, log, attempt + 1), 1);
    return;
  }
  send(server, log);
}

/**
 * A cancel for a client whose units are pipelined on a shared connection: sent only while every
 * request pending there is this client's. From the first try on, no other client's unit is placed
 * there and the connection is not given back until the server has taken the cancel. Other
 * clients' units ahead are waited for; if one is queued behind, the cancel is dropped (it could
 * land on that one).
 */
function forwardToShared(session: ClientSession, log: Logger, attempt: number): void {
  const shared = session.sharedServer;
  if (shared === null) return;
  const { conn, pool } = shared;
  const release = (): void => {
    conn.cancelling = false;
    pool.sharedDrained(conn);
  };
  const standing = conn.pending.standing(session);
  if (standing === 'none' || standing === 'others-behind' || attempt >= ATTEMPTS) {
    if (standing === 'others-behind') log.info({ pid: session.pid, user: session.user }, "cancel request not forwarded: another client's statement is pipelined behind this one on the same server connection");
    if (conn.cancelling) release();
    return;
  }
  conn.cancelling = true;
  if (standing === 'others-ahead' || conn.runningOwnRequests) {
    setTimeout(() => forwardToShared(session, log, attempt + 1), 1);
    return;
  }
  send(conn, log, release);
}

function send(server: ServerConnection, log: Logger, done?: () => void): void {
  const { host, port } = server.endpoint;
  const socket = net.connect(socketAddress(host, port), () => socket.end(cancelRequest(server.backendPid, server.backendSecret)));
  socket.on('error', (err) => log.warn({ err: err.message }, 'forwarding a cancel request failed'));
  socket.setTimeout(5000, () => socket.destroy());
  // The server signals the backend before it closes the cancel connection.
  if (done !== undefined) socket.once('close', done);
}
