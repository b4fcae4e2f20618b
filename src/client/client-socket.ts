import type net from 'node:net';
import tls from 'node:tls';
import { Outbox } from '../protocol/outbox.js';

/** What a client's socket reports to its session. */
export interface ClientSocketEvents {
  data(chunk: Buffer): void;
  /** The socket's write buffer is full: stop reading what goes to it. */
  full(): void;
  drain(): void;
  close(): void;
  error(err: Error): void;
}

const SSL_YES = Buffer.from('S');
const SSL_NO = Buffer.from('N');

/**
 * A client's connection: the socket (upgraded to TLS in place when the client asks for it), the
 * outbox that coalesces what goes to it, and flow control in both directions.
 */
export class ClientSocket {
  private socket: net.Socket;
  /** Everything sent to the client goes through here. */
  readonly out: Outbox;
  private tls = false;

  constructor(
    socket: net.Socket,
    private readonly events: ClientSocketEvents,
  ) {
    this.socket = socket;
    this.out = new Outbox(socket, () => events.full());
    this.listen(socket);
  }

  private listen(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.events.data(chunk));
    socket.on('drain', () => this.events.drain());
    socket.on('close', () => this.events.close());
    socket.on('error', (err) => this.events.error(err));
  }

  /** Answers an SSLRequest: upgrades to TLS with `context`, or says no (no TLS configured, or already on). */
  answerSslRequest(context: tls.SecureContext | null): void {
    if (context === null || this.tls) {
      this.socket.write(SSL_NO);
      return;
    }
    this.socket.write(SSL_YES);
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('drain');
    plain.removeAllListeners('close');
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: context });
    this.tls = true;
    this.socket = secure;
    this.out.retarget(secure);
    this.listen(secure);
  }

  /** Answers a GSSENCRequest: not supported. */
  refuseGssEncryption(): void {
    this.socket.write(SSL_NO);
  }

  get encrypted(): boolean {
    return this.tls;
  }

  get remoteAddress(): string {
    return this.socket.remoteAddress ?? '';
  }

  /** SNI name the client sent in its TLS handshake, if any. */
  get serverName(): string | undefined {
    const name = (this.socket as tls.TLSSocket).servername;
    return typeof name === 'string' ? name : undefined;
  }

  /** Answers wait in memory for the client to read them (its socket's buffer is full). */
  get backedUp(): boolean {
    return this.socket.writableNeedDrain;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Sends what is queued, then closes our side. */
  end(): void {
    this.out.flush();
    this.socket.end();
  }

  /** Cuts off a client that has not closed its side a second after ours. */
  destroyLater(): void {
    if (!this.socket.destroyed) setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}
