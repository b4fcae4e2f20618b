/**
 * Opening the socket to a server: TCP or its Unix-domain socket, then TLS when the backend's
 * tls.mode asks for it, within the connect timeout.
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { sslRequest } from '../protocol/messages.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { isSocketDirectory } from '../config/schema.js';
import type { ServerEndpoint } from './server-connection.js';

/** A connected socket, encrypted when TLS was negotiated, by `deadline` (Date.now() ms). */
export async function openServerSocket(ep: ServerEndpoint, deadline: number): Promise<net.Socket> {
  const socket = await openSocket(ep, Math.max(0, deadline - Date.now()));
  try {
    return await negotiateTls(socket, ep, deadline);
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** Where to connect: the socket `.s.PGSQL.<port>` in a socket directory, else a TCP host. */
export function socketAddress(host: string, port: number): net.NetConnectOpts {
  return isSocketDirectory(host) ? { path: `${host.replace(/\/+$/, '')}/.s.PGSQL.${port}` } : { host, port };
}

function openSocket(ep: ServerEndpoint, timeout: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketAddress(ep.host, ep.port));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new PgError(SqlState.ConnectionUnableToConnect, `could not connect to server ${ep.host}:${ep.port}: timed out after ${timeout} ms`));
    }, timeout);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new PgError(SqlState.ConnectionUnableToConnect, `could not connect to server ${ep.host}:${ep.port}: ${err.message}`));
    });
  });
}

async function negotiateTls(socket: net.Socket, ep: ServerEndpoint, deadline: number): Promise<net.Socket> {
  // Postgres offers no TLS on its Unix-domain socket (libpq does not ask there either).
  if (ep.tls.mode === 'disable' || isSocketDirectory(ep.host)) return socket;
  socket.write(sslRequest());
  const answer = await readOneByte(socket, deadline);
  if (answer !== 0x53) {
    if (ep.tls.mode === 'prefer') return socket;
    throw new PgError(SqlState.ConnectionUnableToConnect, `server ${ep.host}:${ep.port} does not support TLS but backends.tls.mode is ${ep.tls.mode}`);
  }
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      servername: net.isIP(ep.host) ? undefined : ep.host,
      rejectUnauthorized: ep.tls.mode === 'verify-full',
      ca: ep.tls.ca ? readFileSync(ep.tls.ca) : undefined,
    });
    secure.once('secureConnect', () => {
      secure.removeAllListeners('error');
      secure.on('error', () => undefined);
      resolve(secure);
    });
    secure.once('error', (err) => reject(new PgError(SqlState.ConnectionUnableToConnect, `TLS to server ${ep.host}:${ep.port} failed: ${err.message}`)));
  });
}

function readOneByte(socket: net.Socket, deadline: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new PgError(SqlState.ConnectionUnableToConnect, 'timed out waiting for the server to answer the TLS request'));
    }, Math.max(0, deadline - Date.now()));
    const onData = (chunk: Buffer): void => {
      cleanup();
      if (chunk.length > 1) socket.unshift(chunk.subarray(1));
      resolve(chunk[0]);
    };
    const onClose = (): void => {
      cleanup();
      reject(new PgError(SqlState.ConnectionUnableToConnect, 'server closed the connection during the TLS request'));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}
